"""Every Prometheus metric the gateway exports, and the pure ASGI middleware that records requests.

    gateway_request_duration_seconds      histogram  method, route, impl, status
    gateway_requests_in_progress          gauge      method, route, impl
    gateway_threadpool_capacity           gauge      threads that run legacy `def` endpoints
    gateway_threadpool_in_use             gauge      of those, busy
    gateway_threadpool_wait_seconds       histogram  method, route: wait for a thread
    gateway_threadpool_seconds_total      counter    method, route: thread-seconds running the route
    gateway_db_pool_size                  gauge      engine (sync|async): connections the pool keeps
    gateway_db_pool_in_use                gauge      engine: checked out
    gateway_db_pool_idle                  gauge      engine: open and waiting in the pool
    gateway_db_pool_overflow              gauge      engine: open beyond the pool size
    gateway_db_pool_wait_seconds          histogram  engine: time to check a connection out
    gateway_db_query_duration_seconds     histogram  method, route, impl: database time of a request
    gateway_event_loop_lag_seconds        histogram  how late a periodic tick fires
    gateway_event_loop_blocked_total      counter    method, route: sync database calls on the loop
    gateway_route_implementations         gauge      route, impl: 1 for each implementation it has
    gateway_route_mode                    gauge      route, mode: 1 for the current mode
    gateway_route_canary_percent          gauge      route
    gateway_shadow_comparisons_total      counter    route, result (match|mismatch|error|dropped)
    gateway_route_rollbacks_total         counter    route

Request metrics name a route by `method` and `route` (its path template);
routing metrics by `route` = the route key, `METHOD /path/template`.
Labels are bounded by construction: `route` is a route template (unmatched
paths share `UNMATCHED`), `method` one of the standard methods or `OTHER`,
`status` a status code. /metrics, /healthz, /readyz, /docs and /admin are not
API routes and are not measured. Label children are cached, so a request
allocates no label set after the first of its kind.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.asgi import StatusRecorder
from gateway.modes import MODES, RouteMode

UNMATCHED = "UNMATCHED"
UNROUTED = frozenset({404, 405})  # no API route took the request
NOT_API = ("/admin", "/metrics", "/healthz", "/readyz", "/docs", "/openapi.json", "/redoc")
STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
SCOPE_IMPL = "gateway.impl"
WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


@dataclass
class RequestStats:
    """What one API request spent where; filled in by the session and database hooks."""

    method: str = "OTHER"
    route: str = UNMATCHED
    db_seconds: float = 0.0
    thread_wait: float | None = None
    thread_seconds: float = 0.0


current_request: ContextVar[RequestStats | None] = ContextVar("gateway_request", default=None)


def add_database_time(seconds: float) -> None:
    """Count `seconds` of database work against the current API request, if any."""
    stats = current_request.get()
    if stats is not None:
        stats.db_seconds += seconds


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry, buckets: Sequence[float]) -> None:
        def histogram(name: str, doc: str, labels: Sequence[str], b: Sequence[float]) -> Histogram:
            return Histogram(name, doc, labels, buckets=b, registry=registry)

        def gauge(name: str, doc: str, labels: Sequence[str], mode: str = "livesum") -> Gauge:
            return Gauge(name, doc, labels, registry=registry, multiprocess_mode=mode)  # type: ignore[arg-type]

        def counter(name: str, doc: str, labels: Sequence[str]) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        self.request_duration = histogram(
            "gateway_request_duration_seconds",
            "API request latency",
            ("method", "route", "impl", "status"),
            buckets,
        )
        self.in_progress = gauge(
            "gateway_requests_in_progress", "API requests being served", ("method", "route", "impl")
        )
        self.threadpool_capacity = gauge("gateway_threadpool_capacity", "threads for `def`", ())
        self.threadpool_in_use = gauge("gateway_threadpool_in_use", "threads busy", ())
        self.threadpool_wait = histogram(
            "gateway_threadpool_wait_seconds",
            "wait for a thread",
            ("method", "route"),
            WAIT_BUCKETS,
        )
        self.threadpool_seconds = counter(
            "gateway_threadpool_seconds", "thread-seconds spent in the route", ("method", "route")
        )
        self.pool_size = gauge("gateway_db_pool_size", "pool size", ("engine",))
        self.pool_in_use = gauge("gateway_db_pool_in_use", "connections checked out", ("engine",))
        self.pool_idle = gauge("gateway_db_pool_idle", "connections idle in the pool", ("engine",))
        self.pool_overflow = gauge("gateway_db_pool_overflow", "connections over size", ("engine",))
        self.pool_wait = histogram(
            "gateway_db_pool_wait_seconds", "wait to check out", ("engine",), WAIT_BUCKETS
        )
        self.db_query = histogram(
            "gateway_db_query_duration_seconds",
            "database time of one request",
            ("method", "route", "impl"),
            buckets,
        )
        self.loop_lag = histogram(
            "gateway_event_loop_lag_seconds", "tick lateness", (), LAG_BUCKETS
        )
        self.loop_blocked = counter(
            "gateway_event_loop_blocked",
            "sync database calls on the event loop",
            ("method", "route"),
        )
        self.route_implementations = gauge(
            "gateway_route_implementations", "1 per implementation", ("route", "impl"), "livemax"
        )
        self.route_mode = gauge(
            "gateway_route_mode", "1 for the mode", ("route", "mode"), "livemax"
        )
        self.canary_percent = gauge(
            "gateway_route_canary_percent", "canary share to async", ("route",), "livemax"
        )
        self.shadow_comparisons = counter(
            "gateway_shadow_comparisons", "shadow results", ("route", "result")
        )
        self.rollbacks = counter("gateway_route_rollbacks", "automatic rollbacks", ("route",))
        self._durations: dict[tuple[str, str, str, int], Histogram] = {}
        self._db_times: dict[tuple[str, str, str], Histogram] = {}
        self._threads: dict[tuple[str, str], tuple[Histogram, Counter]] = {}

    def observe_request(
        self, method: str, route: str, impl: str, status: int, seconds: float, stats: RequestStats
    ) -> None:
        key = (method, route, impl, status)
        child = self._durations.get(key)
        if child is None:
            child = self._durations[key] = self.request_duration.labels(
                method, route, impl, str(status)
            )
        child.observe(seconds)
        if impl == "none":
            return
        db_child = self._db_times.get((method, route, impl))
        if db_child is None:
            db_child = self._db_times[method, route, impl] = self.db_query.labels(
                method, route, impl
            )
        db_child.observe(stats.db_seconds)
        if stats.thread_wait is not None:
            wait, busy = self._thread_children(method, route)
            wait.observe(stats.thread_wait)
            busy.inc(stats.thread_seconds)

    def _thread_children(self, method: str, route: str) -> tuple[Histogram, Counter]:
        children = self._threads.get((method, route))
        if children is None:
            children = self._threads[method, route] = (
                self.threadpool_wait.labels(method, route),
                self.threadpool_seconds.labels(method, route),
            )
        return children

    def show_implementations(self, implementations: dict[str, set[str]]) -> None:
        for route, impls in implementations.items():
            for impl in impls:
                self.route_implementations.labels(route, impl).set(1)

    def show_modes(self, modes: dict[str, RouteMode]) -> None:
        for route, mode in modes.items():
            for name in MODES:
                self.route_mode.labels(route, name).set(1 if mode.mode == name else 0)
            self.canary_percent.labels(route).set(mode.percent if mode.mode == "canary" else 0)


def measured_method(method: str) -> str:
    return method if method in STANDARD_METHODS else "OTHER"


class MetricsMiddleware:
    """Times every request; records those that reached an API route, or no route at all.

    A pure ASGI middleware: it wraps `send` to see the status and records in
    `finally`, so a failing request is measured too.
    """

    def __init__(self, app: ASGIApp, metrics: Callable[[], GatewayMetrics | None]) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = self.metrics() if scope["type"] == "http" else None
        if metrics is None:
            await self.app(scope, receive, send)
            return
        stats = RequestStats()
        token = current_request.set(stats)
        recorder = StatusRecorder(send)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, recorder)
        finally:
            current_request.reset(token)
            self._record(metrics, scope, recorder.status, time.perf_counter() - started, stats)

    @staticmethod
    def _record(
        metrics: GatewayMetrics, scope: Scope, status: int, seconds: float, stats: RequestStats
    ) -> None:
        impl = scope.get(SCOPE_IMPL)
        if impl is None and (status not in UNROUTED or scope["path"].startswith(NOT_API)):
            return  # health, metrics, docs, admin: not API routes
        template = UNMATCHED if impl is None else stats.route
        metrics.observe_request(
            measured_method(scope["method"]), template, impl or "none", status, seconds, stats
        )
