"""Per-request sessions whose whole life is the endpoint call, for both worlds.

`SyncDB` gives a legacy `def` endpoint a `Session` (psycopg); `AsyncDB` gives an
`async def` endpoint an `AsyncSession` (asyncpg). `bind_sessions` wraps the
endpoint: it fills the endpoint's own `SyncDB`/`AsyncDB` parameters itself (a
dependency asking for one gets the same session through FastAPI), and commit
(on success) or rollback (on any exception) and close happen in the same call
that ran the endpoint:

- a legacy session is opened, used, finished and closed inside the one worker
  thread that runs the endpoint, so a connection is only ever held by a running
  thread. A `yield` dependency instead keeps the connection, idle in
  transaction, until a second thread is free to close it; under load every
  thread then waits for a connection that only a queued request could return,
  and the app serves nothing.
- an async session returns its connection when the endpoint returns, not after
  the response has been sent, so waiting requests get it sooner.

Loaded attributes do not expire on commit, so the response model can read the
returned objects after their session is closed.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, get_origin

import anyio
from fastapi import Depends, Request, params
from sqlalchemy import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from gateway.database.state import GatewayState, gateway_state
from gateway.database.timing import add_thread_time

logger = logging.getLogger(__name__)

SESSIONS_PARAMETER = "gateway_request"  # the hidden endpoint parameter: the Request itself
SCOPE_SESSIONS = "gateway.database.sessions"  # where a request keeps its RequestSessions
SCOPE_SHADOW = "gateway.routing.shadow"  # set on a shadow run's scope: its writes are discarded


class DiscardingSession(Session):
    """A session whose work never lasts: for shadow runs, which must not write.

    On first use it binds itself to a connection of its own inside an outer
    transaction and joins it through savepoints, so even an endpoint that
    commits by itself only releases a savepoint; closing the session rolls the
    outer transaction back. Binding on first use, rather than when the session
    is made, covers sessions a dependency opens and queries with before the
    endpoint runs. Under an `AsyncSession` it runs in the greenlet that drives
    the async driver, like any sync session there.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, join_transaction_mode="create_savepoint", **kwargs)
        self.outer: Connection | None = None

    def get_bind(self, *args: Any, **kwargs: Any) -> Any:
        if self.outer is None:
            engine = super().get_bind(*args, **kwargs)
            if not isinstance(engine, Engine):
                raise TypeError(f"a discarding session is made with an engine, not {engine!r}")
            self.outer = engine.connect()
            self.outer.begin()
        return self.outer

    def close(self) -> None:
        try:
            super().close()
        finally:
            outer, self.outer = self.outer, None
            if outer is not None:
                outer.close()  # rolls the outer transaction back


class RequestSessions:
    """The sessions one request opened; at most one of each kind.

    A shadow request's sessions are `discarding` (see `DiscardingSession`).
    """

    __slots__ = (
        "_database",
        "async_session",
        "connections",
        "discarding",
        "sync_session",
        "threads",
    )

    def __init__(self, state: GatewayState, *, discarding: bool = False) -> None:
        self._database = state.database
        self.threads = state.threads
        self.connections = state.connections
        self.discarding = discarding
        self.sync_session: Session | None = None
        self.async_session: AsyncSession | None = None

    def open_sync(self) -> Session:
        if self.sync_session is None:
            self.sync_session = (
                DiscardingSession(self._database.sync_engine, expire_on_commit=False)
                if self.discarding
                else self._database.sync_sessions()
            )
        return self.sync_session

    def open_async(self) -> AsyncSession:
        if self.async_session is None:
            self.async_session = (
                AsyncSession(
                    self._database.async_engine,
                    sync_session_class=DiscardingSession,
                    expire_on_commit=False,
                )
                if self.discarding
                else self._database.async_sessions()
            )
        return self.async_session

    @property
    def unfinished(self) -> bool:
        return self.sync_session is not None or self.async_session is not None

    def finish_sync(self, *, commit: bool) -> None:
        session, self.sync_session = self.sync_session, None
        if session is not None:
            with session:  # close() rolls back whatever is still open
                if commit:
                    session.commit()

    async def finish_async(self, *, commit: bool) -> None:
        session, self.async_session = self.async_session, None
        if session is None or not (session.in_transaction() or session.new or self.discarding):
            return  # never used, or used only by lean reads: nothing to commit or release
        async with session:
            if commit:
                await session.commit()


async def release_unfinished(sessions: RequestSessions) -> None:
    """Roll back and close the sessions a request opened but whose endpoint never finished them.

    A dependency may open the request's session and query with it, and the
    request then fail before the endpoint runs (the dependency raises, or a
    parameter is invalid): the wrapper that finishes sessions never ran, and
    the connection must still go back to the pool. Shielded, like the
    wrapper's own cleanup.
    """
    with anyio.CancelScope(shield=True):
        try:
            await sessions.finish_async(commit=False)
        finally:
            if sessions.sync_session is not None:
                await anyio.to_thread.run_sync(
                    functools.partial(sessions.finish_sync, commit=False),
                    limiter=sessions.threads.cleanup,
                )


def sessions_of(request: Request) -> RequestSessions:
    """The request's sessions, created on first use and kept in its scope.

    Kept in the scope rather than behind a dependency of their own: the
    session dependencies and the endpoint wrapper then need only the request,
    which FastAPI hands over without resolving anything.
    """
    sessions: RequestSessions | None = request.scope.get(SCOPE_SESSIONS)
    if sessions is None:
        discarding = bool(request.scope.get(SCOPE_SHADOW, False))
        sessions = RequestSessions(gateway_state(request.app), discarding=discarding)
        request.scope[SCOPE_SESSIONS] = sessions
    return sessions


async def provide_sync_session(request: Request) -> Session:
    return sessions_of(request).open_sync()


async def provide_async_session(request: Request) -> AsyncSession:
    return sessions_of(request).open_async()


SyncDB = Annotated[Session, Depends(provide_sync_session)]
AsyncDB = Annotated[AsyncSession, Depends(provide_async_session)]

SESSION_PROVIDERS = {provide_sync_session: "sync", provide_async_session: "async"}


class SessionMisuse(TypeError):
    """An endpoint asks for a session it cannot finish safely."""


def session_parameters(signature: inspect.Signature) -> dict[str, str]:
    """The endpoint's own `SyncDB`/`AsyncDB` parameters and their kind ('sync', 'async').

    The wrapper fills these itself instead of leaving them to FastAPI: a
    dependency level costs every request about 8 % of its time (py-spy), and the
    gateway creates and finishes the sessions anyway. Sub-dependencies that ask
    for a session still get it through FastAPI, and it is the same session.
    """
    found = {}
    for parameter in signature.parameters.values():
        provider = _provider_of(parameter)
        if provider is not None:
            found[parameter.name] = SESSION_PROVIDERS[provider]
    return found


def _provider_of(parameter: inspect.Parameter) -> Any:
    markers = [parameter.default]
    if get_origin(parameter.annotation) is Annotated:
        markers.extend(parameter.annotation.__metadata__)
    for marker in markers:
        call = getattr(marker, "dependency", None)
        if isinstance(marker, params.Depends) and call in SESSION_PROVIDERS:
            return call
    return None


def refuse_overridden_providers(request: Request) -> None:
    overrides = request.app.dependency_overrides
    if overrides and any(provider in overrides for provider in SESSION_PROVIDERS):
        raise SessionMisuse(
            "the gateway's session providers cannot be overridden: build the app with "
            "adopt(..., database=...) or create_app(database=...) to give it other engines, "
            "or use gateway.testing"
        )


@dataclass(frozen=True)
class RequestArgument:
    """Where the wrapper finds the Request among the endpoint's arguments."""

    name: str
    hidden: bool  # added by the gateway, not passed on to the endpoint

    def peek(self, kwargs: dict[str, Any]) -> Request:
        request: Request = kwargs[self.name]
        return request

    def take(self, kwargs: dict[str, Any]) -> Request:
        request: Request = kwargs.pop(self.name) if self.hidden else kwargs[self.name]
        return request


def request_argument(signature: inspect.Signature) -> RequestArgument:
    """The endpoint's own Request parameter, or a hidden one (FastAPI fills only one)."""
    for parameter in signature.parameters.values():
        annotation = parameter.annotation
        if isinstance(annotation, type) and issubclass(annotation, Request):
            return RequestArgument(parameter.name, hidden=False)
    return RequestArgument(SESSIONS_PARAMETER, hidden=True)


def bind_sessions(endpoint: Callable[..., Any], kinds: set[str], where: str) -> Callable[..., Any]:
    """Wrap `endpoint` so the request's sessions are finished inside the endpoint call.

    A `def` endpoint becomes an `async def` that runs it, with its session's
    whole life, in one worker thread: FastAPI then validates the response on
    the event loop instead of queueing it for a second thread behind every
    request still waiting for its first.
    """
    is_async = inspect.iscoroutinefunction(endpoint)
    if not is_async and "async" in kinds:
        raise SessionMisuse(f"{where}: a `def` endpoint cannot use an AsyncSession (AsyncDB)")
    signature = inspect.signature(endpoint, eval_str=True)
    argument = request_argument(signature)
    injected = session_parameters(signature)
    wrapper: Any = (
        _async_wrapper(endpoint, argument, injected, admitted="async" in kinds)
        if is_async
        else _threaded_wrapper(endpoint, argument, injected)
    )
    functools.update_wrapper(wrapper, endpoint)
    del wrapper.__wrapped__  # FastAPI must read the signature below, not the endpoint's
    wrapper.__signature__ = _with_request(_without(signature, injected), argument)
    return wrapper  # type: ignore[no-any-return]


def _open_injected(
    sessions: RequestSessions, kwargs: dict[str, Any], injected: dict[str, str]
) -> None:
    for name, kind in injected.items():
        kwargs[name] = sessions.open_async() if kind == "async" else sessions.open_sync()


def _threaded_wrapper(
    endpoint: Callable[..., Any], argument: RequestArgument, injected: dict[str, str]
) -> Callable[..., Awaitable[Any]]:
    def run_with_session(kwargs: dict[str, Any], queued_at: float) -> Any:
        started = time.perf_counter()
        sessions = sessions_of(argument.take(kwargs))
        try:
            _open_injected(sessions, kwargs, injected)
            result = endpoint(**kwargs)
        except BaseException:
            sessions.finish_sync(commit=False)
            raise
        finally:
            add_thread_time(started - queued_at, time.perf_counter() - started)
        sessions.finish_sync(commit=True)
        return result

    async def run_in_thread(**kwargs: Any) -> Any:
        request = argument.peek(kwargs)
        refuse_overridden_providers(request)
        gate = sessions_of(request).threads
        return await gate.run(run_with_session, kwargs, time.perf_counter())

    return run_in_thread


def _async_wrapper(
    endpoint: Callable[..., Awaitable[Any]],
    argument: RequestArgument,
    injected: dict[str, str],
    *,
    admitted: bool,
) -> Callable[..., Awaitable[Any]]:
    async def run_with_session(**kwargs: Any) -> Any:
        request = argument.take(kwargs)
        refuse_overridden_providers(request)
        sessions = sessions_of(request)
        try:
            _open_injected(sessions, kwargs, injected)
            result = await endpoint(**kwargs)
        except BaseException:
            # Shielded: a cancelled request (the client went away) still rolls back
            # and returns its connection before the cancellation goes on.
            with anyio.CancelScope(shield=True):
                await _finish_both(sessions, commit=False)
            raise
        await _finish_both(sessions, commit=True)
        return result

    async def run_admitted(**kwargs: Any) -> Any:
        async with sessions_of(argument.peek(kwargs)).connections.admitted():
            return await run_with_session(**kwargs)

    return run_admitted if admitted else run_with_session


async def _finish_both(sessions: RequestSessions, *, commit: bool) -> None:
    try:
        await sessions.finish_async(commit=commit)
    finally:
        # Only an `async def` endpoint misusing a sync Session gets here with one:
        # finishing it blocks the loop, as every call it made already did.
        sessions.finish_sync(commit=commit)


def _without(signature: inspect.Signature, names: dict[str, str]) -> inspect.Signature:
    kept = [p for p in signature.parameters.values() if p.name not in names]
    return signature.replace(parameters=kept)


def _with_request(signature: inspect.Signature, argument: RequestArgument) -> inspect.Signature:
    if not argument.hidden:
        return signature
    extra = inspect.Parameter(argument.name, inspect.Parameter.KEYWORD_ONLY, annotation=Request)
    parameters = list(signature.parameters.values())
    variadic = [p for p in parameters if p.kind is inspect.Parameter.VAR_KEYWORD]
    fixed = [p for p in parameters if p.kind is not inspect.Parameter.VAR_KEYWORD]
    return signature.replace(parameters=[*fixed, extra, *variadic])
