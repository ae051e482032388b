"""Shadow runs: the other implementation answers the same request in the background, to compare.

Invariants: the client gets the primary's response, sent in full before the
shadow starts, so a shadow never delays, changes or fails it. Shadows run
read-only (their sessions always roll back), at most `max_concurrent` at once
(beyond that a shadow is skipped and counted as dropped) and for at most
`timeout` seconds. A comparison looks at the status code and the JSON body,
ignoring key order and the fields configured for the route; a mismatch is
stored in PostgreSQL with a readable diff (`gateway.routing.mismatches`, the
newest per route kept, shared by every instance), in which the values of the
configured redacted fields read `[redacted <tag>]` (equal values, equal tags)
and those of redacted query parameters `[redacted]`. Comparison counts are
per worker; the metrics add them up across workers and instances.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.database.sessions import SCOPE_SESSIONS, SCOPE_SHADOW
from gateway.routing.compare import Redactor, compared, readable_diff, redacted_query
from gateway.routing.mismatches import Mismatch, MismatchStore

logger = logging.getLogger(__name__)

RESULTS = ("match", "mismatch", "error", "dropped")


@dataclass
class Captured:
    status: int = 0
    body: bytearray = field(default_factory=bytearray)


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replay(body: bytes) -> Receive:
    """A `receive` that hands over `body` once, then waits like a client that stays connected."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    return receive


def capturing(captured: Captured, send: Send | None = None) -> Send:
    async def capture(message: Message) -> None:
        if message["type"] == "http.response.start":
            captured.status = message["status"]
        elif message["type"] == "http.response.body":
            captured.body.extend(message.get("body", b""))
        if send is not None:
            await send(message)

    return capture


class ShadowRunner:
    """Runs shadows in the app's task group and keeps what they found."""

    def __init__(
        self,
        *,
        max_concurrent: int,
        timeout: float,
        ignore_fields: Mapping[str, Sequence[str]],
        redact_fields: Iterable[str] = (),
        on_result: Callable[[str, str], None] = lambda key, result: None,
    ) -> None:
        self.on_result = on_result
        self.redact = Redactor(redact_fields)
        self.max_concurrent = max_concurrent
        self.timeout = timeout
        self.ignore_fields = {key: frozenset(names) for key, names in ignore_fields.items()}
        self.store: MismatchStore | None = None  # given when the app's database is open
        self.results: Counter[tuple[str, str]] = Counter()
        self.in_flight = 0
        self.task_group: TaskGroup | None = None

    async def serve(
        self,
        key: str,
        primary: tuple[str, ASGIApp],
        shadow: tuple[str, ASGIApp],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        body = await read_body(receive)
        answer = Captured()
        await primary[1](scope, replay(body), capturing(answer, send))
        if self.task_group is None or self.in_flight >= self.max_concurrent:
            self._count(key, "dropped")
            return
        self.in_flight += 1
        self.task_group.start_soon(self._run, key, primary[0], shadow[1], scope, body, answer)

    async def _run(
        self, key: str, primary: str, app: ASGIApp, scope: Scope, body: bytes, answer: Captured
    ) -> None:
        try:
            shadow_answer = Captured()
            with anyio.fail_after(self.timeout):
                async with AsyncExitStack() as stack:
                    copied = await shadow_scope(scope, stack)
                    await app(copied, replay(body), capturing(shadow_answer))
            mismatch = self._compare(key, primary, scope, answer, shadow_answer)
        except Exception as error:
            self._count(key, "error")
            logger.info("shadow of %s failed: %s", key, type(error).__name__)
            return
        finally:
            self.in_flight -= 1
        if mismatch is not None:
            await self._keep(mismatch)  # before it is counted: a count means it can be read
        self._count(key, "match" if mismatch is None else "mismatch")

    async def _keep(self, mismatch: Mismatch) -> None:
        if self.store is None:
            return
        try:
            with anyio.fail_after(self.timeout):
                await self.store.record(mismatch)
        except Exception as error:
            logger.warning("shadow mismatch of %s not stored: %s", mismatch.route, error)

    def _count(self, key: str, result: str) -> None:
        self.results[key, result] += 1
        self.on_result(key, result)

    def _compare(
        self, key: str, primary: str, scope: Scope, answer: Captured, shadow: Captured
    ) -> Mismatch | None:
        ignored = self.ignore_fields.get(key, frozenset())
        left = compared(answer.status, bytes(answer.body), ignored)
        right = compared(shadow.status, bytes(shadow.body), ignored)
        if left == right:
            return None
        other = "async" if primary == "legacy" else "legacy"
        labels = (f"{primary} (primary)", f"{other} (shadow)")
        return Mismatch(
            route=key,
            path=scope.get("path", ""),
            query=redacted_query(scope.get("query_string", b""), self.redact.fields),
            primary=primary,
            status=(answer.status, shadow.status),
            diff=readable_diff(self.redact(left), self.redact(right), labels),
        )

    async def report(self, route: str | None = None) -> dict[str, Any]:
        """This worker's comparison counts, and the mismatches every instance stored."""
        stored = {} if self.store is None else await self.store.latest(route)
        keys = sorted({key for key, _ in self.results} | set(stored))
        chosen = [key for key in keys if route is None or key == route]
        return {
            "routes": [
                {
                    "route": key,
                    "counts": {result: self.results[key, result] for result in RESULTS},
                    "mismatches": stored.get(key, []),
                }
                for key in chosen
            ]
        }


async def shadow_scope(scope: Scope, stack: AsyncExitStack) -> Scope:
    """A copy of the primary's scope for the shadow: marked read-only, with exit stacks of its own.

    The primary's exit stacks were closed when its response ended.
    """
    copied: dict[str, Any] = {}
    for name, value in scope.items():
        if name == SCOPE_SESSIONS:
            continue  # the shadow opens sessions of its own
        if isinstance(value, AsyncExitStack):
            value = await stack.enter_async_context(AsyncExitStack())
        copied[name] = value
    copied[SCOPE_SHADOW] = True
    copied["state"] = dict(scope.get("state", {}))
    return copied
