"""Which dependencies give an endpoint a session the gateway manages, and which give it others.

The gateway's own `SyncDB` and `AsyncDB` always do. An adopted app declares
its own session dependencies (its `get_db`, say) with
`adopt(app, sync_session_dependencies=[get_db])`: wherever a route depends on
one, FastAPI resolves it to the gateway's session for the request (through
dependency overrides the app's own overrides still take precedence over, so
the app's tests keep theirs), and the route gets the gateway's session
lifetime and its database metrics.

A parameter annotated `Session` or `AsyncSession` whose value comes from any
other dependency is a session the gateway cannot see: `unmanaged_sessions`
names them so the start-up can say which routes they are in and what to do.
"""

from __future__ import annotations

import inspect
from collections import ChainMap
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Annotated, Any, get_args, get_origin

from fastapi import params
from fastapi.dependencies.models import Dependant
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from gateway.database.sessions import (
    SESSION_PROVIDERS,
    provide_async_session,
    provide_sync_session,
)

SESSION_TYPES = (Session, AsyncSession)


class SessionProviders:
    """The session dependencies of one app: the gateway's own and those the app declared."""

    def __init__(
        self,
        sync: Iterable[Callable[..., Any]] = (),
        async_: Iterable[Callable[..., Any]] = (),
    ) -> None:
        self.aliases: dict[Callable[..., Any], Callable[..., Any]] = {
            **{dependency: provide_sync_session for dependency in sync},
            **{dependency: provide_async_session for dependency in async_},
        }
        self.kinds: dict[Any, str] = {
            **SESSION_PROVIDERS,
            **{alias: SESSION_PROVIDERS[gateway] for alias, gateway in self.aliases.items()},
        }

    def kinds_used(self, dependant: Dependant) -> set[str]:
        """Which session kinds ('sync', 'async') the dependency tree uses."""
        return {self.kinds[call] for call in calls(dependant) if call in self.kinds}

    def uses_alias(self, dependant: Dependant) -> bool:
        """Whether the tree depends on one of the app's own session dependencies."""
        return any(call in self.aliases for call in calls(dependant))

    def sync_dependencies_using_session(self, dependant: Dependant) -> list[str]:
        """Sync dependencies using the sync session (another thread than the endpoint)."""
        found = []
        for sub in dependant.dependencies:
            is_sync = sub.call is not None and not inspect.iscoroutinefunction(sub.call)
            if is_sync and "sync" in self.kinds_used(sub):
                found.append(getattr(sub.call, "__name__", repr(sub.call)))
            found.extend(self.sync_dependencies_using_session(sub))
        return found

    def unmanaged_sessions(self, endpoint: Callable[..., Any], dependant: Dependant) -> list[str]:
        """`parameter <- dependency` for each session the tree gets from an unmanaged dependency."""
        found = []
        for call in [endpoint, *calls(dependant)]:
            for name, provider in session_parameters_of(call):
                if provider not in self.kinds:
                    found.append(f"{name} <- {qualified_name(provider)}")
        return sorted(set(found))


class AliasedOverrides:
    """A `dependency_overrides_provider`: the app's own overrides, then the gateway's aliases."""

    def __init__(self, app: Any, aliases: Mapping[Callable[..., Any], Callable[..., Any]]) -> None:
        self.app = app
        self.aliases = dict(aliases)

    @property
    def dependency_overrides(self) -> Mapping[Any, Any]:
        return ChainMap(self.app.dependency_overrides, self.aliases)


def calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from calls(sub)


def session_parameters_of(call: Any) -> Iterator[tuple[str, Any]]:
    """(parameter name, dependency) of each parameter of `call` typed as a session."""
    try:
        signature = inspect.signature(call, eval_str=True)
    except (TypeError, ValueError, NameError):
        return
    for parameter in signature.parameters.values():
        annotation = unwrapped(parameter)[0]
        if isinstance(annotation, type) and issubclass(annotation, SESSION_TYPES):
            yield from ((parameter.name, dependency) for dependency in dependencies_of(parameter))


def dependencies_of(parameter: inspect.Parameter) -> Iterator[Callable[..., Any]]:
    """Each `Depends(...)` given to `parameter`, in `Annotated` or as its default."""
    for marker in unwrapped(parameter)[1]:
        if isinstance(marker, params.Depends) and marker.dependency is not None:
            yield marker.dependency


def unwrapped(parameter: inspect.Parameter) -> tuple[Any, list[Any]]:
    """A parameter's type and its markers (`Depends(...)` in `Annotated` or as default)."""
    annotation, markers = parameter.annotation, [parameter.default]
    if get_origin(annotation) is Annotated:
        annotation, *metadata = get_args(annotation)
        markers.extend(metadata)
    return annotation, markers


def qualified_name(call: Any) -> str:
    return f"{getattr(call, '__module__', '?')}.{getattr(call, '__qualname__', repr(call))}"
