"""The pure ASGI middleware that times every API request and records it once it has ended.

It wraps `send` to see the status and records in `finally`, so a failing
request is measured too. Labels come from the scope, where the routing layer
puts them when it hands a request to an implementation: `scope[SCOPE_ROUTE]`,
the route key (`GET /users/{user_id}`, a string made once per route, not per
request), and `scope[SCOPE_IMPL]`, the implementation. A request no API route
took is recorded as `UNMATCHED` when it was refused before reaching one (404
and 405 from the router; 413, 414 and 431 from the gateway's request limits),
and not at all otherwise (health, metrics, docs, admin and the app's other
routes).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.asgi import StatusRecorder
from gateway.database.timing import RequestTimes, current_times
from gateway.metrics.registry import UNMATCHED, GatewayMetrics, measured_method

SCOPE_IMPL = "gateway.impl"  # set by the routing layer: the implementation that serves
SCOPE_ROUTE = "gateway.route"  # set with it: the route key, the `route` label
UNROUTED = frozenset({404, 405, 413, 414, 431})  # refused before any API route took it
NOT_API = ("/admin", "/metrics", "/healthz", "/readyz")


class MeasuredRequest(RequestTimes):
    """A request's times, and its scope, for hooks that label what they see while it runs."""

    __slots__ = ("scope",)

    def __init__(self, scope: Scope) -> None:
        super().__init__()
        self.scope = scope

    def labels(self) -> tuple[str, str, str]:
        """(method, route key, impl) of the request; `UNMATCHED`, `none` before a route took it."""
        scope = self.scope
        return (
            measured_method(scope["method"]),
            scope.get(SCOPE_ROUTE, UNMATCHED),
            scope.get(SCOPE_IMPL, "none"),
        )


class MetricsMiddleware:
    """Times every HTTP request; records those that reached an API route, or no route at all."""

    def __init__(self, app: ASGIApp, metrics: Callable[[], GatewayMetrics | None]) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = self.metrics() if scope["type"] == "http" else None
        if metrics is None:
            await self.app(scope, receive, send)
            return
        measured = MeasuredRequest(scope)
        token = current_times.set(measured)
        recorder = StatusRecorder(send)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, recorder)
        finally:
            current_times.reset(token)
            self._record(metrics, scope, recorder.status, time.perf_counter() - started, measured)

    @staticmethod
    def _record(
        metrics: GatewayMetrics, scope: Scope, status: int, seconds: float, times: RequestTimes
    ) -> None:
        impl = scope.get(SCOPE_IMPL)
        if impl is not None:
            route = scope.get(SCOPE_ROUTE, UNMATCHED)
        elif status in UNROUTED and not scope["path"].startswith(NOT_API):
            route, impl = UNMATCHED, "none"
        else:
            return  # not an API route: health, metrics, docs, admin, the app's other routes
        metrics.observe_request(
            measured_method(scope["method"]), route, impl, status, seconds, times
        )
