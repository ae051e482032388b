"""Every Prometheus metric the gateway exports, with the label caches that keep recording cheap.

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
    gateway_event_loop_blocked_total      counter    method, route, impl: sync queries on the loop
    gateway_route_implementations         gauge      route, impl: 1 for each implementation it has
    gateway_route_mode                    gauge      route, mode: 1 for the current mode
    gateway_route_canary_percent          gauge      route
    gateway_shadow_comparisons_total      counter    route, result (match|mismatch|error|dropped|
                                                     calibration: the primary against itself)
    gateway_route_rollbacks_total         counter    route
    gateway_connections_closed_total      counter    reason
    gateway_rollout_step                  gauge      route: the plan's step (1-based; 0: none)
    gateway_rollout_state                 gauge      route, state: 1 for the plan's state
    gateway_rollout_step_seconds          gauge      route: time the plan has been in its step
    gateway_rollout_verdicts_total        counter    route, verdict (pass|fail|inconclusive)

`route` means one thing on every metric: the route key, `METHOD /path/template`
(`GET /users/{user_id}`), so one selector such as `{route="GET /users/{user_id}"}`
picks a route out of any of them. `method` is kept on the request metrics as
the method of the request (for a matched route, the key's); `impl` is the
implementation that served (`legacy`, `async`, or `none` when no route did).
Labels are bounded by construction: `route` is one of the app's route keys
(requests no route took share `UNMATCHED`), `method` one of the standard
methods or `OTHER`, `status` a status code. Only API routes (those the gateway
dispatches) are measured (see `gateway.metrics.middleware`). Label children
are cached, so a request allocates no label set after the first of its kind.
Counters a route can only grow once it has two implementations (shadow
results, rollbacks) start at zero for those routes, so that `increase()` and
`changes()` see their first event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.database.timing import RequestTimes

UNMATCHED = "UNMATCHED"
SHADOW_RESULTS = ("match", "mismatch", "error", "dropped", "calibration")
STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MODES = ("legacy", "async", "canary", "shadow")
PLAN_STATES = ("running", "paused", "completed", "aborted", "failed")
VERDICTS = ("pass", "fail", "inconclusive")
WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


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
            ("method", "route", "impl"),
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
        self.connections_closed = counter(
            "gateway_connections_closed",
            "connections the server closed before a request reached the app",
            ("reason",),
        )
        self.rollout_step = gauge(
            "gateway_rollout_step", "current step of the route's plan", ("route",), "livemax"
        )
        self.rollout_state = gauge(
            "gateway_rollout_state", "1 for the plan's state", ("route", "state"), "livemax"
        )
        self.rollout_step_seconds = gauge(
            "gateway_rollout_step_seconds", "time in the current step", ("route",), "livemax"
        )
        self.rollout_verdicts = counter(
            "gateway_rollout_verdicts", "verdicts on plan steps", ("route", "verdict")
        )
        self._durations: dict[tuple[str, str, str, int], Histogram] = {}
        self._db_times: dict[tuple[str, str, str], Histogram] = {}
        self._threads: dict[tuple[str, str], tuple[Histogram, Counter]] = {}

    def connection_closed(self, reason: str) -> None:
        self.connections_closed.labels(reason).inc()

    def observe_request(
        self, method: str, route: str, impl: str, status: int, seconds: float, times: RequestTimes
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
        db_child.observe(times.db_seconds)
        if times.thread_wait is not None:
            wait, busy = self._thread_children(method, route)
            wait.observe(times.thread_wait)
            busy.inc(times.thread_seconds)

    def _thread_children(self, method: str, route: str) -> tuple[Histogram, Counter]:
        children = self._threads.get((method, route))
        if children is None:
            children = self._threads[method, route] = (
                self.threadpool_wait.labels(method, route),
                self.threadpool_seconds.labels(method, route),
            )
        return children

    def show_implementations(self, implementations: Mapping[str, set[str]]) -> None:
        """Each route's implementations; a route with both gets its shadow, rollback and verdict
        counters at zero."""
        for route, impls in implementations.items():
            for impl in impls:
                self.route_implementations.labels(route, impl).set(1)
            if {"legacy", "async"} <= impls:
                self.rollbacks.labels(route)
                for result in SHADOW_RESULTS:
                    self.shadow_comparisons.labels(route, result)
                for verdict in VERDICTS:
                    self.rollout_verdicts.labels(route, verdict)

    def show_plan(self, route: str, state: str, step: int, seconds: float) -> None:
        """A route's latest plan: its state, its step (1-based) and the time spent in it."""
        for name in PLAN_STATES:
            self.rollout_state.labels(route, name).set(1 if state == name else 0)
        active = state in ("running", "paused")
        self.rollout_step.labels(route).set(step if active else 0)
        self.rollout_step_seconds.labels(route).set(seconds if active else 0)
        for verdict in VERDICTS:
            self.rollout_verdicts.labels(route, verdict)

    def show_modes(self, modes: Mapping[str, tuple[str, int]]) -> None:
        """Each route's current mode and canary percent (0 unless in canary)."""
        for route, (mode, percent) in modes.items():
            for name in MODES:
                self.route_mode.labels(route, name).set(1 if mode == name else 0)
            self.canary_percent.labels(route).set(percent)


def measured_method(method: str) -> str:
    return method if method in STANDARD_METHODS else "OTHER"
