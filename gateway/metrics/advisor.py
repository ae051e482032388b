"""The advisor: from two readings of the metrics, which route to move to async next, and why.

Both sources give the same thing, the increase of every counter and histogram
over a window plus the current gauges:

- a running gateway: /metrics read twice, `window` seconds apart;
- a Prometheus server: `rate(metric[window]) * window`, summed by route over
  every instance (and worker) it scrapes.

Every series names its route by the route key (`route="GET /users/{user_id}"`),
request and routing metrics alike; requests no route took (`UNMATCHED`) are
left out.

Routes are ranked by the threadpool time their legacy implementation holds
(thread-seconds per second): moving the biggest holder frees the most threads.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

Labels = tuple[tuple[str, str], ...]
Series = dict[tuple[str, Labels], float]

REQUESTS = "gateway_request_duration_seconds"
COUNTERS = (
    f"{REQUESTS}_bucket",
    f"{REQUESTS}_count",
    f"{REQUESTS}_sum",
    "gateway_threadpool_wait_seconds_count",
    "gateway_threadpool_wait_seconds_sum",
    "gateway_threadpool_seconds_total",
    "gateway_db_query_duration_seconds_sum",
    "gateway_event_loop_blocked_total",
    "gateway_shadow_comparisons_total",
)
GAUGES = ("gateway_route_mode", "gateway_route_implementations")
# Read per implementation; the other counters are read per route, whatever their labels.
BY_IMPL = (f"{REQUESTS}_count", f"{REQUESTS}_sum", "gateway_db_query_duration_seconds_sum")
GROUPING = "route, impl, status, le, result, mode"


def kept(samples: Iterable[Sample]) -> Series:
    """The samples the advisor reads, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for sample in samples
        if sample.name in COUNTERS or sample.name in GAUGES
    }


def parse(text: str) -> Series:
    return kept(
        sample for family in text_string_to_metric_families(text) for sample in family.samples
    )


def sampled(registry: CollectorRegistry) -> Series:
    """What `parse` reads from a scrape, read from the registry itself."""
    return kept(sample for family in registry.collect() for sample in family.samples)


def increase(before: Series, after: Series) -> Series:
    """Counters as their increase (a restarted process counts from zero); gauges as they are."""
    changed: Series = {}
    for key, value in after.items():
        if key[0] in GAUGES:
            changed[key] = value
        else:
            earlier = before.get(key, 0.0)
            changed[key] = value - earlier if value >= earlier else value
    return changed


def from_gateway(url: str, window: float) -> Series:
    with httpx.Client(base_url=url.rstrip("/"), timeout=30) as client:
        first = client.get("/metrics")
        first.raise_for_status()
        time.sleep(window)
        second = client.get("/metrics")
        second.raise_for_status()
    return increase(parse(first.text), parse(second.text))


def prometheus_queries(window: float) -> dict[str, str]:
    """Per series name, the PromQL giving its increase over `window` summed over the fleet."""
    seconds = max(1, round(window))
    queries = {
        name: f"sum by ({GROUPING}) (rate({name}[{seconds}s])) * {window:g}" for name in COUNTERS
    }
    queries.update({name: f"max by (route, impl, mode) ({name})" for name in GAUGES})
    return queries


def add_results(series: Series, name: str, answer: Mapping[str, Any]) -> None:
    """An instant query's answer (Prometheus' JSON) into `series`, under `name`."""
    for result in answer["data"]["result"]:
        labels = tuple(sorted(result["metric"].items()))
        value = float(result["value"][1])
        if not math.isnan(value):
            series[name, labels] = value


def from_prometheus(url: str, window: float) -> Series:
    series: Series = {}
    with httpx.Client(base_url=url.rstrip("/"), timeout=30) as client:
        for name, query in prometheus_queries(window).items():
            response = client.get("/api/v1/query", params={"query": query})
            response.raise_for_status()
            add_results(series, name, response.json())
    return series


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative bucket counts."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            width = count - lower_count
            return lower_bound + (bound - lower_bound) * (
                (rank - lower_count) / width if width else 0
            )
        lower_bound, lower_count = bound, count
    return lower_bound


@dataclass
class ImplStats:
    requests_per_second: float = 0.0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None


@dataclass
class RouteReport:
    route: str
    implementations: list[str]
    mode: str
    requests_per_second: float
    by_impl: dict[str, ImplStats] = field(default_factory=dict)
    thread_seconds_per_second: float = 0.0
    threadpool_share: float = 0.0
    mean_thread_wait_ms: float | None = None
    database_share: float | None = None
    event_loop_blocked: int = 0
    shadow_match_rate: float | None = None
    why: str = ""


@dataclass
class Report:
    window_seconds: float
    routes: list[RouteReport]
    routes_with_async: int
    routes_total: int
    async_request_share: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Index:
    """The window's series, grouped by route key."""

    def __init__(self, series: Series) -> None:
        self.sums: dict[tuple[str, str, str], float] = defaultdict(float)
        self.buckets: dict[tuple[str, str], dict[float, float]] = defaultdict(dict)
        self.implementations: dict[str, set[str]] = defaultdict(set)
        self.modes: dict[str, str] = {}
        for (name, labels), value in series.items():
            self._add(name, dict(labels), value)

    def _add(self, name: str, labels: dict[str, str], value: float) -> None:
        key = labels.get("route", "")
        if name == "gateway_route_implementations" and value:
            self.implementations[key].add(labels["impl"])
        elif name == "gateway_route_mode" and value:
            self.modes[key] = labels["mode"]
        elif name == "gateway_shadow_comparisons_total":
            self.sums[key, name, labels["result"]] += value
        elif name == f"{REQUESTS}_bucket":
            bucket = self.buckets[key, labels["impl"]]
            bound = float(labels["le"])
            bucket[bound] = bucket.get(bound, 0.0) + value
        else:
            self.sums[key, name, labels.get("impl", "") if name in BY_IMPL else ""] += value

    def total(self, key: str, name: str, impl: str = "") -> float:
        return self.sums.get((key, name, impl), 0.0)


def route_report(index: _Index, key: str, window: float) -> RouteReport:
    impls = sorted(index.implementations.get(key, set()))
    report = RouteReport(key, impls, index.modes.get(key, "?"), 0.0)
    latency_sum = 0.0
    for impl in ("legacy", "async"):
        count = index.total(key, f"{REQUESTS}_count", impl)
        latency_sum += index.total(key, f"{REQUESTS}_sum", impl)
        if count:
            buckets = index.buckets.get((key, impl), {})
            report.by_impl[impl] = ImplStats(
                count / window, *(_ms(quantile(q, buckets)) for q in (0.5, 0.95, 0.99))
            )
    report.requests_per_second = sum(stats.requests_per_second for stats in report.by_impl.values())
    report.thread_seconds_per_second = index.total(key, "gateway_threadpool_seconds_total") / window
    waits = index.total(key, "gateway_threadpool_wait_seconds_count")
    if waits:
        report.mean_thread_wait_ms = (
            1000 * index.total(key, "gateway_threadpool_wait_seconds_sum") / waits
        )
    db_time = sum(
        index.total(key, "gateway_db_query_duration_seconds_sum", impl)
        for impl in ("legacy", "async")
    )
    report.database_share = db_time / latency_sum if latency_sum else None
    report.event_loop_blocked = int(index.total(key, "gateway_event_loop_blocked_total"))
    compared = {
        r: index.sums.get((key, "gateway_shadow_comparisons_total", r), 0.0)
        for r in ("match", "mismatch", "error")
    }
    if sum(compared.values()):
        report.shadow_match_rate = compared["match"] / sum(compared.values())
    return report


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000 * seconds, 2)


def explain(route: RouteReport) -> str:
    if route.event_loop_blocked:
        return f"blocks the event loop ({route.event_loop_blocked} sync queries): fix that first"
    if route.thread_seconds_per_second <= 0:
        return "holds no threadpool time in this window"
    held = (
        f"holds {route.threadpool_share:.0%} of threadpool time "
        f"({route.thread_seconds_per_second:.2f} thread-s/s)"
    )
    if "async" not in route.implementations:
        return f"{held}; no async twin yet: write one"
    if route.mode == "shadow" and route.shadow_match_rate is not None:
        return f"{held}; shadow matches {route.shadow_match_rate:.0%}: canary it when that is 100%"
    return f"{held}; async twin ready: shadow or canary it"


def build_report(
    series: Series, window: float, *, known_routes: Mapping[str, set[str]] | None = None
) -> Report:
    """The routes ranked; with `known_routes` (key: implementations), idle routes listed too."""
    index = _Index(series)
    for key, impls in (known_routes or {}).items():
        index.implementations[key].update(impls)
    keys = sorted(index.implementations)
    routes = [route_report(index, key, window) for key in keys]
    busy = sum(route.thread_seconds_per_second for route in routes)
    for route in routes:
        route.threadpool_share = route.thread_seconds_per_second / busy if busy else 0.0
        route.why = explain(route)
    routes.sort(
        key=lambda r: (-r.event_loop_blocked, -r.thread_seconds_per_second, -r.requests_per_second)
    )
    total = sum(route.requests_per_second for route in routes)
    served_async = sum(
        route.by_impl["async"].requests_per_second for route in routes if "async" in route.by_impl
    )
    return Report(
        window_seconds=window,
        routes=routes,
        routes_with_async=sum("async" in route.implementations for route in routes),
        routes_total=len(routes),
        async_request_share=served_async / total if total else None,
    )


def rows(report: Report) -> Iterable[list[str]]:
    def num(value: float | None, unit: str = "") -> str:
        return "-" if value is None else f"{value:.1f}{unit}"

    for rank, route in enumerate(report.routes, 1):
        legacy, migrated = (
            route.by_impl.get("legacy", ImplStats()),
            route.by_impl.get("async", ImplStats()),
        )
        yield [
            str(rank),
            route.route,
            route.mode,
            num(route.requests_per_second),
            f"{num(legacy.p50_ms)}/{num(legacy.p95_ms)}/{num(legacy.p99_ms)}",
            f"{num(migrated.p50_ms)}/{num(migrated.p95_ms)}/{num(migrated.p99_ms)}",
            f"{route.threadpool_share:.0%}",
            num(route.mean_thread_wait_ms),
            "-" if route.database_share is None else f"{route.database_share:.0%}",
            str(route.event_loop_blocked),
            "-" if route.shadow_match_rate is None else f"{route.shadow_match_rate:.0%}",
            route.why,
        ]


HEADERS = [
    "#", "route", "mode", "req/s", "legacy p50/p95/p99 ms", "async p50/p95/p99 ms",
    "thread share", "thread wait ms", "db share", "loop blocks", "shadow match", "why",
]  # fmt: skip
