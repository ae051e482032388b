"""Judging a step on the fleet's evidence: pass, fail, inconclusive, or not yet.

    canary     fails when async's 5xx rate exceeds legacy's by more than the
               error margin, or async's p95 exceeds legacy's by the latency
               ratio and by the floor; needs `min_requests` of each
    shadow     fails when the share of comparisons that matched (errors count
               against) is below the minimum match rate; needs `min_requests`
               comparisons
    calibrate  never fails (differences are what it learns); needs
               `min_requests` runs

A failure is reported as soon as the evidence suffices, whatever the time; a
pass only once the step is due. A due step without enough evidence is
inconclusive, and the verdict says how much is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gateway.rollout.evidence import Evidence
from gateway.rollout.plans import Analysis, Step
from gateway.settings import Settings

Outcome = Literal["pass", "fail", "inconclusive", "pending"]


@dataclass(frozen=True)
class Thresholds:
    error_margin: float
    latency_ratio: float
    latency_floor: float  # seconds
    min_match_rate: float


def thresholds_for(analysis: Analysis, settings: Settings) -> Thresholds:
    """A plan's thresholds: its own, else the GATEWAY_ROLLBACK_* settings."""

    def pick(value: float | None, default: float) -> float:
        return default if value is None else value

    return Thresholds(
        error_margin=pick(analysis.error_margin, settings.rollback_error_margin),
        latency_ratio=pick(analysis.latency_ratio, settings.rollback_latency_ratio),
        latency_floor=pick(analysis.latency_floor_ms, settings.rollback_latency_floor_ms) / 1000,
        min_match_rate=analysis.min_match_rate,
    )


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: str
    missing: dict[str, int]


def judge(step: Step, evidence: Evidence, limits: Thresholds, *, due: bool) -> Verdict:
    """The step's verdict now; `due`: its duration (and any extension) is over."""
    missing = shortfall(step, evidence)
    if not missing:
        failure = failed(step, evidence, limits)
        if failure is not None:
            return Verdict("fail", failure, {})
    if not due:
        return Verdict("pending", "the step's duration is not over", missing)
    if missing:
        needs = ", ".join(f"{count} more {kind}" for kind, count in missing.items())
        return Verdict("inconclusive", f"too little traffic to judge: needs {needs}", missing)
    return Verdict("pass", passed(step, evidence), {})


def shortfall(step: Step, evidence: Evidence) -> dict[str, int]:
    """What the step still lacks to be judged: kind (or comparisons) -> requests."""
    if step.mode == "canary":
        counts = {kind: evidence.of(kind).requests for kind in ("legacy", "async")}
    elif step.mode == "shadow":
        counts = {"comparisons": evidence.comparisons}
    elif step.mode == "calibrate":
        counts = {"calibration runs": evidence.of("calibration").requests}
    else:
        counts = {}
    return {kind: step.min_requests - n for kind, n in counts.items() if n < step.min_requests}


def failed(step: Step, evidence: Evidence, limits: Thresholds) -> str | None:
    if step.mode == "canary":
        return canary_failure(evidence, limits)
    if step.mode == "shadow":
        rate = match_rate(evidence)
        if rate < limits.min_match_rate:
            return (
                f"shadow match rate {rate:.1%} is below {limits.min_match_rate:.1%} "
                f"({evidence.of('mismatch').requests} mismatches, "
                f"{evidence.of('error').requests} errors in {evidence.comparisons} comparisons)"
            )
    return None


def match_rate(evidence: Evidence) -> float:
    return evidence.of("match").requests / evidence.comparisons if evidence.comparisons else 0.0


def canary_failure(evidence: Evidence, limits: Thresholds) -> str | None:
    legacy, migrated = evidence.of("legacy"), evidence.of("async")
    counts = f"({migrated.requests} async / {legacy.requests} legacy requests, fleet-wide)"
    if migrated.error_rate - legacy.error_rate > limits.error_margin:
        return (
            f"async 5xx rate {migrated.error_rate:.1%} exceeds legacy's "
            f"{legacy.error_rate:.1%} by more than {limits.error_margin:.1%} {counts}"
        )
    legacy_p95, async_p95 = legacy.percentile(0.95), migrated.percentile(0.95)
    if (
        async_p95 - legacy_p95 > limits.latency_floor
        and async_p95 > limits.latency_ratio * legacy_p95
    ):
        return (
            f"async p95 {async_p95 * 1000:.1f} ms exceeds {limits.latency_ratio:g} x legacy's "
            f"{legacy_p95 * 1000:.1f} ms {counts}"
        )
    return None


def passed(step: Step, evidence: Evidence) -> str:
    if step.mode == "canary":
        legacy, migrated = evidence.of("legacy"), evidence.of("async")
        return (
            f"async {migrated.error_rate:.1%} 5xx, p95 {migrated.percentile(0.95) * 1000:.1f} ms "
            f"against legacy {legacy.error_rate:.1%}, {legacy.percentile(0.95) * 1000:.1f} ms "
            f"({migrated.requests} async / {legacy.requests} legacy requests)"
        )
    if step.mode == "shadow":
        return (
            f"shadow match rate {match_rate(evidence):.1%} over {evidence.comparisons} comparisons"
        )
    if step.mode == "calibrate":
        return f"{evidence.of('calibration').requests} calibration runs"
    return "reached"
