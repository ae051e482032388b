"""Shadow runs: the other implementation answers the same request in the background, to compare.

Invariants: the client gets the primary's response, sent in full before the
shadow starts, so a shadow never delays, changes or fails it. Shadows run
read-only (their sessions always roll back), at most `max_concurrent` at once
(beyond that a shadow is skipped and counted as dropped) and for at most
`timeout` seconds. Only a route's `sample` percent of requests, drawn at
random, are run twice; the others are served as by the primary alone and
counted nowhere.

A comparison looks at the status code and the JSON body, ignoring key order,
the fields configured for the route and its rules (`gateway.routing.compare`),
and the noise learned for it (`gateway.routing.noise`). Answers that differ
are compared again under those rules in a thread, one at a time, so that a
large answer's comparison never holds the event loop. A mismatch is stored in
PostgreSQL with the seconds both sides took and a readable diff
(`gateway.routing.mismatches`, the newest per route kept, shared by every
instance), in which the values of the configured redacted fields read
`[redacted <tag>]` (equal values, equal tags) and those of redacted query
parameters `[redacted]`.

A shadow of the primary's own implementation is a calibration run: what
differs between two answers of one implementation is noise, so its paths are
learned for the route, nothing is stored as a mismatch, and the comparison
counts as `calibration`. Comparison counts are per worker; the metrics add
them up across workers and instances.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.database.sessions import SCOPE_SESSIONS, SCOPE_SHADOW
from gateway.routing.compare import (
    BodyRules,
    Redactor,
    compared,
    differing,
    readable_diff,
    redacted_query,
    shown,
)
from gateway.routing.keys import normalized
from gateway.routing.mismatches import Mismatch, MismatchStore
from gateway.routing.noise import NoiseStore
from gateway.settings import ShadowRule

logger = logging.getLogger(__name__)

RESULTS = ("match", "mismatch", "error", "dropped", "calibration")


@dataclass
class Captured:
    status: int = 0
    body: bytearray = field(default_factory=bytearray)
    seconds: float = 0.0


@dataclass(frozen=True)
class Verdict:
    result: str  # match, mismatch or calibration
    mismatch: Mismatch | None = None
    noise: tuple[str, ...] = ()  # the paths a calibration run found differing


def noise_between(
    first: dict[str, Any], second: dict[str, Any], rules: BodyRules
) -> tuple[str, ...]:
    """Where two answers of one implementation differ: noise, under `rules`.

    Answers with different statuses teach nothing (a failure is not noise),
    and neither does a body that differs as a whole.
    """
    if first["status"] != second["status"]:
        return ()
    return tuple(path for path in differing(first["body"], second["body"], rules) if path)


def sampled(percent: int) -> bool:
    """Whether this request is one of the `percent` % to run twice."""
    return percent >= 100 or random.randrange(100) < percent


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
        rules: Mapping[str, ShadowRule] | None = None,
        redact_fields: Iterable[str] = (),
        on_result: Callable[[str, str], None] = lambda key, result: None,
    ) -> None:
        self.on_result = on_result
        self.redact = Redactor(redact_fields)
        self.max_concurrent = max_concurrent
        self.timeout = timeout
        self.ignore_fields = {
            normalized(key): frozenset(names) for key, names in ignore_fields.items()
        }
        self.rules = {normalized(key): BodyRules.of(rule) for key, rule in (rules or {}).items()}
        self.store: MismatchStore | None = None  # given when the app's database is open
        self.noise: NoiseStore | None = None  # likewise
        self.results: Counter[tuple[str, str]] = Counter()
        self.in_flight = 0
        self.task_group: TaskGroup | None = None
        self.comparing = anyio.CapacityLimiter(1)

    async def serve(
        self,
        key: str,
        primary: tuple[str, ASGIApp],
        shadow: tuple[str, ASGIApp],
        scope: Scope,
        receive: Receive,
        send: Send,
        sample: int = 100,
    ) -> None:
        if not sampled(sample):
            await primary[1](scope, receive, send)
            return
        body = await read_body(receive)
        answer = Captured()
        started = time.perf_counter()
        await primary[1](scope, replay(body), capturing(answer, send))
        answer.seconds = time.perf_counter() - started
        if self.task_group is None or self.in_flight >= self.max_concurrent:
            self._count(key, "dropped")
            return
        self.in_flight += 1
        impls = (primary[0], shadow[0])
        self.task_group.start_soon(self._run, key, impls, shadow[1], scope, body, answer)

    async def _run(
        self,
        key: str,
        impls: tuple[str, str],
        app: ASGIApp,
        scope: Scope,
        body: bytes,
        answer: Captured,
    ) -> None:
        try:
            shadow_answer = await self._shadow_answer(app, scope, body)
            verdict = await self._judge(key, impls, scope, (answer, shadow_answer))
        except Exception as error:
            self._count(key, "error")
            logger.info("shadow of %s failed: %s", key, type(error).__name__)
            return
        finally:
            self.in_flight -= 1
        await self._keep(key, verdict)  # before it is counted: a count means it can be read
        self._count(key, verdict.result)

    async def _shadow_answer(self, app: ASGIApp, scope: Scope, body: bytes) -> Captured:
        answer = Captured()
        started = time.perf_counter()
        with anyio.fail_after(self.timeout):
            async with AsyncExitStack() as stack:
                copied = await shadow_scope(scope, stack)
                await app(copied, replay(body), capturing(answer))
        answer.seconds = time.perf_counter() - started
        return answer

    async def _judge(
        self, key: str, impls: tuple[str, str], scope: Scope, answers: tuple[Captured, Captured]
    ) -> Verdict:
        left, right = (self._comparable(key, answer) for answer in answers)
        calibrating = impls[0] == impls[1]
        if left == right:  # the common case needs neither the rules nor a thread
            return Verdict("calibration" if calibrating else "match")
        rules = self.rules.get(key, BodyRules())
        if calibrating:
            noise = await anyio.to_thread.run_sync(
                noise_between, left, right, rules, limiter=self.comparing
            )
            return Verdict("calibration", noise=noise)
        if self.noise is not None:
            with anyio.fail_after(self.timeout):
                rules = rules.ignoring(await self.noise.learned(key))
        seconds = (answers[0].seconds, answers[1].seconds)
        mismatch = await anyio.to_thread.run_sync(
            self._mismatch, key, impls, scope, (left, right), seconds, rules, limiter=self.comparing
        )
        return Verdict("match" if mismatch is None else "mismatch", mismatch)

    def _comparable(self, key: str, answer: Captured) -> dict[str, Any]:
        return compared(answer.status, bytes(answer.body), self.ignore_fields.get(key, frozenset()))

    def _mismatch(
        self,
        key: str,
        impls: tuple[str, str],
        scope: Scope,
        answers: tuple[dict[str, Any], dict[str, Any]],
        seconds: tuple[float, float],
        rules: BodyRules,
    ) -> Mismatch | None:
        """The mismatch between two compared answers, None if `rules` let them match."""
        left, right = answers
        if left["status"] == right["status"] and not differing(left["body"], right["body"], rules):
            return None
        left_body, right_body = shown(left["body"], right["body"], rules)
        primary, other = impls
        labels = (f"{primary} (primary)", f"{other} (shadow)")
        diff = readable_diff(
            self.redact({**left, "body": left_body}),
            self.redact({**right, "body": right_body}),
            labels,
        )
        return Mismatch(
            route=key,
            path=scope.get("path", ""),
            query=redacted_query(scope.get("query_string", b""), self.redact.fields),
            primary=primary,
            status=(left["status"], right["status"]),
            diff=diff,
            seconds=seconds,
        )

    async def _keep(self, key: str, verdict: Verdict) -> None:
        """Store what the comparison found: its mismatch, or the noise it learned."""
        try:
            with anyio.fail_after(self.timeout):
                if verdict.mismatch is not None and self.store is not None:
                    await self.store.record(verdict.mismatch)
                if verdict.noise and self.noise is not None:
                    await self.noise.learn(key, verdict.noise)
        except Exception as error:
            logger.warning("shadow %s of %s not stored: %s", verdict.result, key, error)

    def _count(self, key: str, result: str) -> None:
        self.results[key, result] += 1
        self.on_result(key, result)

    def expire_noise(self) -> None:
        """Read every route's learned noise again before its next comparison."""
        if self.noise is not None:
            self.noise.expire()

    async def report(self, route: str | None = None) -> dict[str, Any]:
        """This worker's comparison counts, and the mismatches every instance stored."""
        counts = self.results.copy()  # before the read: every mismatch counted is then in it
        stored = {} if self.store is None else await self.store.latest(route)
        keys = sorted({key for key, _ in counts} | set(stored))
        chosen = [key for key in keys if route is None or key == route]
        return {
            "routes": [
                {
                    "route": key,
                    "counts": {result: counts[key, result] for result in RESULTS},
                    "mismatches": stored.get(key, []),
                }
                for key in chosen
            ]
        }

    async def noise_report(self, route: str | None = None) -> dict[str, Any]:
        """The noise every instance learned, per route."""
        return {"routes": [] if self.noise is None else await self.noise.report(route)}

    async def forget_noise(self, route: str) -> int:
        return 0 if self.noise is None else await self.noise.forget(route)


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
