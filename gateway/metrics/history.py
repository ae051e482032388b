"""Each worker's recent history of its instance's metrics: what the console at /admin charts.

Every `GATEWAY_CONSOLE_SAMPLE_SECONDS` a background task of the worker reads
the registry /metrics serves (with `gateway serve --workers N`, every
worker's values, so any worker answers for the whole instance) and keeps, in
memory and bounded whatever the traffic:

- a point per sample for the last `HISTORY_SECONDS`: per route and
  implementation, requests/s, p50 and p95 since the previous sample;
- readings spaced `GATEWAY_CONSOLE_WINDOW_SECONDS / READINGS_PER_WINDOW`
  apart over the last window, from which the advisor's report over that
  window is built when the console asks (`gateway.metrics.advisor`).

Readings keep only the labels the advisor reads (method and status are
summed away). Sampling reads memory (or the workers' small files) and never
the database; a worker that restarts starts an empty history.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from prometheus_client import CollectorRegistry

from gateway.impl import IMPLS
from gateway.metrics.advisor import REQUESTS, Report, Series, build_report, increase, sampled
from gateway.metrics.exposition import instance_registry

logger = logging.getLogger(__name__)

HISTORY_SECONDS = 600.0
READINGS_PER_WINDOW = 12
MOST_POINTS_SHOWN = 300
KEPT_LABELS = frozenset({"route", "impl", "le", "result", "mode"})
FIGURES = ("rps", "p50", "p95")

Figures = tuple[float, float | None, float | None]  # requests/s, p50 ms, p95 ms
Lines = dict[str, dict[str, dict[str, list[float | None]]]]  # route -> impl -> figure -> values


@dataclass(frozen=True)
class Reading:
    at: float  # seconds since the epoch
    series: Series


@dataclass(frozen=True)
class Point:
    at: float
    figures: dict[tuple[str, str], Figures]  # (route, impl) -> what it did since the last point


@dataclass
class Recent:
    """What the console shows of the metrics: a report over the window, and latency lines."""

    report: Report
    times: list[float] = field(default_factory=list)
    lines: Lines = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"report": self.report.as_dict(), "times": self.times, "lines": self.lines}


def reduced(series: Series) -> Series:
    """`series` with only the labels the advisor reads, values summed over the others."""
    kept: Series = defaultdict(float)
    for (name, labels), value in series.items():
        kept[name, tuple(pair for pair in labels if pair[0] in KEPT_LABELS)] += value
    return dict(kept)


def served(series: Series) -> dict[str, set[str]]:
    """Route key -> the implementations that answered requests in `series`."""
    found: dict[str, set[str]] = defaultdict(set)
    for (name, labels), value in series.items():
        named = dict(labels)  # requests no route took (impl "none") have no line
        if name == f"{REQUESTS}_count" and value and named.get("impl") in IMPLS:
            found[named["route"]].add(named["impl"])
    return found


def point_between(before: Reading, after: Reading) -> Point:
    changed = increase(before.series, after.series)
    report = build_report(changed, after.at - before.at, known_routes=served(changed))
    return Point(
        after.at,
        {
            (route.route, impl): (round(stats.requests_per_second, 3), stats.p50_ms, stats.p95_ms)
            for route in report.routes
            for impl, stats in route.by_impl.items()
        },
    )


def lines_of(points: list[Point]) -> Lines:
    """One list per route, implementation and figure, aligned with `points` (None: no request)."""
    lines: Lines = {}
    for index, point in enumerate(points):
        for (route, impl), figures in point.figures.items():
            line = lines.setdefault(route, {}).setdefault(
                impl, {name: [None] * len(points) for name in FIGURES}
            )
            for name, value in zip(FIGURES, figures, strict=True):
                line[name][index] = value
    return lines


def thinned(points: list[Point], most: int) -> list[Point]:
    """At most `most` points, evenly spaced, the newest always kept."""
    if len(points) <= most:
        return points
    step = math.ceil(len(points) / most)
    return points[::-1][::step][::-1]


class MetricsHistory:
    """The bounded history; `sample` adds a reading, `recent` answers the console."""

    def __init__(
        self, own: CollectorRegistry, metrics_dir: Path | None, *, every: float, window: float
    ) -> None:
        self.own = own
        self.metrics_dir = metrics_dir
        self.every = every
        self.window = window
        self.registry: CollectorRegistry | None = None  # built at the first sample, not at import
        self.latest: Reading | None = None
        self.marks: deque[Reading] = deque()
        self.points: deque[Point] = deque(maxlen=max(1, math.ceil(HISTORY_SECONDS / every)))

    def sample(self, now: float) -> None:
        if self.registry is None:
            self.registry = instance_registry(self.metrics_dir, self.own)
        reading = Reading(now, reduced(sampled(self.registry)))
        if self.latest is not None and now > self.latest.at:
            self.points.append(point_between(self.latest, reading))
        self.latest = reading
        self._mark(reading)

    def _mark(self, reading: Reading) -> None:
        """Keep readings spaced over the window, the oldest at or before its start."""
        spacing = self.window / READINGS_PER_WINDOW
        if not self.marks or reading.at - self.marks[-1].at >= spacing:
            self.marks.append(reading)
        while len(self.marks) > 1 and self.marks[1].at <= reading.at - self.window:
            self.marks.popleft()

    def recent(self, known_routes: Mapping[str, set[str]]) -> Recent:
        """The report since the oldest reading of the window (every known route listed)."""
        covered = 0.0 if self.latest is None else self.latest.at - self.marks[0].at
        if self.latest is None or covered <= 0:
            report = build_report({}, self.window, known_routes=known_routes)
            report.window_seconds = 0.0
        else:
            changed = increase(self.marks[0].series, self.latest.series)
            report = build_report(changed, covered, known_routes=known_routes)
        shown = thinned(list(self.points), MOST_POINTS_SHOWN)
        return Recent(report, [round(point.at, 3) for point in shown], lines_of(shown))


async def keep_sampling(history: MetricsHistory) -> None:
    """Sample every `history.every` seconds until cancelled; a failed reading is skipped."""
    failing = False
    while True:
        try:
            history.sample(time.time())
            failing = False
        except Exception:
            if not failing:
                logger.exception("the console's metrics sample failed (retried every sample)")
            failing = True
        await anyio.sleep(history.every)
