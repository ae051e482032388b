"""One row per measured run, and the median and spread of a configuration's rounds."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.load import Load

OK = "ok"
SERVED_NOTHING = "deadlock/served nothing"
FAILED = "failed"


@dataclass
class RunResult:
    configuration: str
    connections: int
    round: int
    status: str
    detail: str = ""
    load: Load | None = None
    background: Load | None = None
    db_busy: int | None = None
    db_open: int | None = None
    peak_rss_mb: float | None = None

    @property
    def errors(self) -> int:
        if self.load is None:
            return 0
        return self.load.non2xx + self.load.socket_errors + self.load.timeouts

    def as_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row["errors"] = self.errors
        return row


def judged(result: RunResult) -> RunResult:
    """Flag a run whose server answered nothing in the measured window."""
    if result.status == OK and result.load is not None and result.load.answers == 0:
        result.status = SERVED_NOTHING
    return result


def median(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


@dataclass
class OperationSummary:
    """One operation of a router workload, over the rounds: medians."""

    rps: float | None
    answers: float | None
    non2xx: float | None
    empty_pages: float | None
    p50_ms: float | None
    p99_ms: float | None


@dataclass
class Summary:
    """A configuration at one connection count, over its rounds."""

    configuration: str
    connections: int
    rounds: int
    statuses: list[str]
    rps: float | None
    rps_min: float | None
    rps_max: float | None
    p50_ms: float | None
    p99_ms: float | None
    p99_min: float | None
    p99_max: float | None
    errors: float | None
    unanswered: float | None
    slow_share: float | None
    db_busy: float | None
    db_open: float | None
    peak_rss_mb: float | None
    background_rps: float | None
    impl_share: dict[str, float] = field(default_factory=dict)
    details: list[str] = field(default_factory=list)
    operations: dict[str, OperationSummary] = field(default_factory=dict)

    @property
    def served_nothing(self) -> bool:
        return SERVED_NOTHING in self.statuses

    @property
    def failed(self) -> bool:
        return bool(self.statuses) and all(status == FAILED for status in self.statuses)


def summarise(runs: list[RunResult]) -> Summary:
    """Median of the rounds of one configuration at one connection count, with min-max spreads."""
    first = runs[0]
    loads = [run.load for run in runs if run.load is not None]
    rps = [load.rps for load in loads]
    p99 = [load.p99_ms for load in loads if load.p99_ms is not None]
    return Summary(
        configuration=first.configuration,
        connections=first.connections,
        rounds=len(runs),
        statuses=[run.status for run in runs],
        rps=median(list(rps)),
        rps_min=min(rps, default=None),
        rps_max=max(rps, default=None),
        p50_ms=median([load.p50_ms for load in loads]),
        p99_ms=median(list(p99)),
        p99_min=min(p99, default=None),
        p99_max=max(p99, default=None),
        errors=median([float(run.errors) for run in runs if run.load is not None]),
        unanswered=median([float(load.unanswered) for load in loads]),
        slow_share=median([slow_share(load) for load in loads]),
        db_busy=median([None if run.db_busy is None else float(run.db_busy) for run in runs]),
        db_open=median([None if run.db_open is None else float(run.db_open) for run in runs]),
        peak_rss_mb=median([run.peak_rss_mb for run in runs]),
        background_rps=median([run.background.rps for run in runs if run.background]),
        impl_share=impl_share(loads),
        details=sorted({run.detail for run in runs if run.detail}),
        operations=operations(loads),
    )


def slow_share(load: Load) -> float | None:
    timed = load.answers - load.unmatched
    return load.slow_answers / timed if timed > 0 else None


def impl_share(loads: list[Load]) -> dict[str, float]:
    totals: dict[str, int] = {}
    for load in loads:
        for impl, count in load.impls.items():
            totals[impl] = totals.get(impl, 0) + count
    answered = sum(totals.values())
    return {impl: count / answered for impl, count in sorted(totals.items())} if answered else {}


def operations(loads: list[Load]) -> dict[str, OperationSummary]:
    """Each operation's medians over the rounds that measured it."""
    names = sorted({name for load in loads for name in load.operations})
    summaries = {}
    for name in names:
        found = [load.operations[name] for load in loads if name in load.operations]
        summaries[name] = OperationSummary(
            rps=median([operation.rps for operation in found]),
            answers=median([float(operation.answers) for operation in found]),
            non2xx=median([float(operation.non2xx) for operation in found]),
            empty_pages=median([float(operation.empty_pages) for operation in found]),
            p50_ms=median([operation.p50_ms for operation in found]),
            p99_ms=median([operation.p99_ms for operation in found]),
        )
    return summaries


def summarise_all(runs: list[RunResult]) -> dict[tuple[str, int], Summary]:
    groups: dict[tuple[str, int], list[RunResult]] = {}
    for run in runs:
        groups.setdefault((run.configuration, run.connections), []).append(run)
    return {key: summarise(group) for key, group in groups.items()}
