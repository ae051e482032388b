"""Hooks that feed the metrics: database time per request, pool waits, loop lag, blocking calls.

The blocking detector: a statement run by the sync engine on the event-loop
thread, during an API request, is an `async def` route using a sync Session.
It is counted against that route (its key) and implementation, and logged
once per route; with `GATEWAY_RAISE_ON_BLOCKING` it raises `BlockingCall`
instead, failing the request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
from sqlalchemy import Engine, event
from sqlalchemy.pool import Pool

from gateway.database.engines import Database
from gateway.database.timing import add_database_time, current_times
from gateway.metrics.middleware import MeasuredRequest
from gateway.metrics.registry import GatewayMetrics

logger = logging.getLogger(__name__)

STARTED_KEY = "gateway_query_started"
SAMPLE_EVERY_SECONDS = 0.25


class BlockingCall(RuntimeError):
    """A sync database call ran on the event loop thread."""


Undo = Callable[[], None]


def listen(engine: Engine, name: str, listener: Callable[..., None]) -> Undo:
    event.listen(engine, name, listener)
    return lambda: event.remove(engine, name, listener)


def time_queries(engine: Engine) -> list[Undo]:
    """Add each statement's duration to the current request's database time."""

    def started(conn: Any, *_: Any) -> None:
        conn.info[STARTED_KEY] = time.perf_counter()

    def finished(conn: Any, *_: Any) -> None:
        began = conn.info.pop(STARTED_KEY, None)
        if began is not None:
            add_database_time(time.perf_counter() - began)

    return [
        listen(engine, "before_cursor_execute", started),
        listen(engine, "after_cursor_execute", finished),
    ]


def detect_blocking(
    engine: Engine, metrics: GatewayMetrics, loop_thread: int, *, raise_error: bool
) -> Undo:
    warned: set[str] = set()

    def check(*_: Any) -> None:
        request = current_times.get()
        if not isinstance(request, MeasuredRequest) or threading.get_ident() != loop_thread:
            return
        method, route, impl = request.labels()
        metrics.loop_blocked.labels(method, route, impl).inc()
        message = (
            f"{route} ({impl}): a sync Session ran a query on the event loop thread; "
            "every other request waited for it. Use AsyncDB in `async def` endpoints, "
            "or make the endpoint a plain `def`."
        )
        if raise_error:
            raise BlockingCall(message)
        if route not in warned:
            warned.add(route)
            logger.warning(message)

    return listen(engine, "before_cursor_execute", check)


def time_checkouts(pool: Pool, observe: Callable[[float], None]) -> Undo:
    """Time every checkout of `pool` (including the wait for a free connection)."""
    original = pool._do_get

    def timed_get() -> Any:
        began = time.perf_counter()
        try:
            return original()
        finally:
            observe(time.perf_counter() - began)

    pool._do_get = timed_get  # type: ignore[method-assign]

    def undo() -> None:
        pool._do_get = original  # type: ignore[method-assign]

    return undo


def instrument(database: Database, metrics: GatewayMetrics, *, raise_on_blocking: bool) -> Undo:
    """Attach every hook; the returned function detaches them (engines may outlive the app)."""
    loop_thread = threading.get_ident()
    undos: list[Undo] = []
    for engine in (database.sync_engine, database.async_engine.sync_engine):
        undos.extend(time_queries(engine))
    undos.append(
        detect_blocking(database.sync_engine, metrics, loop_thread, raise_error=raise_on_blocking)
    )
    for name, pool in pools(database).items():
        undos.append(time_checkouts(pool, metrics.pool_wait.labels(name).observe))

    def undo_all() -> None:
        for undo in reversed(undos):
            undo()

    return undo_all


def pools(database: Database) -> dict[str, Pool]:
    return {"sync": database.sync_engine.pool, "async": database.async_engine.pool}


def sample(database: Database, metrics: GatewayMetrics, limiter: anyio.CapacityLimiter) -> None:
    metrics.threadpool_capacity.set(limiter.total_tokens)
    metrics.threadpool_in_use.set(limiter.borrowed_tokens)
    for name, pool in pools(database).items():
        size = getattr(pool, "size", None)
        if size is None:
            continue
        metrics.pool_size.labels(name).set(pool.size())  # type: ignore[attr-defined]
        metrics.pool_in_use.labels(name).set(pool.checkedout())  # type: ignore[attr-defined]
        metrics.pool_idle.labels(name).set(pool.checkedin())  # type: ignore[attr-defined]
        metrics.pool_overflow.labels(name).set(max(pool.overflow(), 0))  # type: ignore[attr-defined]


async def watch_loop(
    database: Database, metrics: GatewayMetrics, limiter: anyio.CapacityLimiter
) -> None:
    """Until cancelled: measure how late each tick fires, and sample the gauges."""
    while True:
        began = time.perf_counter()
        await anyio.sleep(SAMPLE_EVERY_SECONDS)
        metrics.loop_lag.observe(max(0.0, time.perf_counter() - began - SAMPLE_EVERY_SECONDS))
        sample(database, metrics, limiter)
