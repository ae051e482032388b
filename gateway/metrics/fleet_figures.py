"""The console's figures for the whole fleet, from a Prometheus that scrapes every instance.

With `GATEWAY_CONSOLE_PROMETHEUS_URL`, the console's report is the advisor's
over `GATEWAY_CONSOLE_WINDOW_SECONDS`, each counter's `rate()` summed over
every instance (`gateway.metrics.advisor.prometheus_queries`), and its
latency lines are range queries over the last `HISTORY_SECONDS`, each point a
rate over `LINE_RATE`. Prometheus is asked only when a console asks, and its
answer is kept for one sample period, however many consoles are open. When it
does not answer, `recent` returns None and the console shows the instance's
own history, saying so.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any

import anyio
import httpx

from gateway.metrics.advisor import (
    REQUESTS,
    Series,
    add_results,
    build_report,
    prometheus_queries,
)
from gateway.metrics.history import FIGURES, HISTORY_SECONDS, Lines, Recent

logger = logging.getLogger(__name__)

LINE_RATE = "1m"
SHORTEST_STEP_SECONDS = 10.0
TIMEOUT_SECONDS = 5.0
API_ROUTES = '{impl!="none"}'
LINE_QUERIES = {
    "rps": f"sum by (route, impl) (rate({REQUESTS}_count{API_ROUTES}[{LINE_RATE}]))",
    **{
        name: f"histogram_quantile({q}, sum by (route, impl, le) "
        f"(rate({REQUESTS}_bucket{API_ROUTES}[{LINE_RATE}]))) * 1000"
        for name, q in (("p50", 0.5), ("p95", 0.95))
    },
}
INSTANCES = "count(count by (instance) (gateway_route_implementations))"


class FleetFigures:
    """Prometheus' answers for the console, kept for `every` seconds."""

    def __init__(self, url: str, *, every: float, window: float) -> None:
        self.url = url
        self.every = every
        self.window = window
        self.step = max(every, SHORTEST_STEP_SECONDS)
        self.lock = anyio.Lock()
        self.kept: tuple[float, Recent, int] | None = None

    async def recent(self, known_routes: Mapping[str, set[str]]) -> tuple[Recent, int] | None:
        """The fleet's report and lines, and how many instances Prometheus scrapes; None if
        it did not answer."""
        async with self.lock:
            if self.kept is not None and time.monotonic() - self.kept[0] < self.every:
                return self.kept[1], self.kept[2]
            try:
                recent, instances = await self._ask(known_routes)
            except (httpx.HTTPError, KeyError, ValueError) as error:
                logger.warning("Prometheus at %s did not answer the console: %r", self.url, error)
                return None
            self.kept = (time.monotonic(), recent, instances)
            return recent, instances

    async def _ask(self, known_routes: Mapping[str, set[str]]) -> tuple[Recent, int]:
        series: Series = {}
        end = math.floor(time.time() / self.step) * self.step
        start = end - HISTORY_SECONDS
        times = [start + index * self.step for index in range(int(HISTORY_SECONDS / self.step) + 1)]
        lines: Lines = {}
        async with httpx.AsyncClient(base_url=self.url, timeout=TIMEOUT_SECONDS) as client:
            for name, query in prometheus_queries(self.window).items():
                add_results(series, name, await instant(client, query))
            for figure, query in LINE_QUERIES.items():
                answer = await ranged(client, query, start, end, self.step)
                add_line(lines, figure, answer, times)
            counted = (await instant(client, INSTANCES))["data"]["result"]
        report = build_report(series, self.window, known_routes=known_routes)
        instances = int(float(counted[0]["value"][1])) if counted else 0
        return Recent(report, times, lines), instances


async def instant(client: httpx.AsyncClient, query: str) -> dict[str, Any]:
    response = await client.get("/api/v1/query", params={"query": query})
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


async def ranged(
    client: httpx.AsyncClient, query: str, start: float, end: float, step: float
) -> dict[str, Any]:
    params: dict[str, str | float] = {"query": query, "start": start, "end": end, "step": step}
    response = await client.get("/api/v1/query_range", params=params)
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


def add_line(lines: Lines, figure: str, answer: Mapping[str, Any], times: list[float]) -> None:
    """A range query's series into `lines`, on the grid `times` (None where it has no value)."""
    position = {round(at): index for index, at in enumerate(times)}
    for result in answer["data"]["result"]:
        route, impl = result["metric"].get("route"), result["metric"].get("impl")
        if route is None or impl is None:
            continue
        line = lines.setdefault(route, {}).setdefault(
            impl, {name: [None] * len(times) for name in FIGURES}
        )
        for at, value in result["values"]:
            index = position.get(round(float(at)))
            number = float(value)
            if index is not None and math.isfinite(number):
                line[figure][index] = round(number, 3)
