"""Automatic rollback: a canary whose async side does worse than legacy goes back to legacy.

For each route in canary mode the guard keeps the outcomes of the last
`window` seconds per implementation. Once both implementations have at least
`min_requests` outcomes, the route is rolled back when

- async's share of 5xx answers exceeds legacy's by more than `error_margin`
  (0.05 = five percentage points), or
- async's p95 latency exceeds `latency_ratio` times legacy's, and by more
  than `latency_floor` seconds (so noise on a fast route cannot trigger it).

A route under a rollout plan is judged on the whole fleet's traffic instead
(`gateway.rollout`); for it, and for every canary, only the fast trip stays
here: `consecutive_errors` 5xx answers from async in a row roll the route back
at once, on the word of this process alone (0 turns it off).

The guard only decides; the route table stores the rollback (on every
instance, with the reason as the event's why).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

CHECK_EVERY_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class Outcome:
    at: float
    failed: bool
    seconds: float


def p95(outcomes: deque[Outcome]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(outcome.seconds for outcome in outcomes)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def error_rate(outcomes: deque[Outcome]) -> float:
    return sum(outcome.failed for outcome in outcomes) / len(outcomes)


class CanaryGuard:
    def __init__(
        self,
        *,
        window: float,
        min_requests: int,
        error_margin: float,
        latency_ratio: float,
        latency_floor: float,
        roll_back: Callable[[str, str], None],
        consecutive_errors: int = 0,
        judged_elsewhere: Callable[[str], bool] = lambda key: False,
    ) -> None:
        self.consecutive_errors = consecutive_errors
        self.judged_elsewhere = judged_elsewhere
        self.failing: dict[str, int] = {}
        self.latency_floor = latency_floor
        self.window = window
        self.min_requests = min_requests
        self.error_margin = error_margin
        self.latency_ratio = latency_ratio
        self.roll_back = roll_back
        self.outcomes: dict[tuple[str, str], deque[Outcome]] = {}
        self.checked_at: dict[str, float] = {}

    def record(self, key: str, impl: str, status: int, seconds: float) -> None:
        if impl == "async" and self._tripped(key, status >= 500):
            return
        if self.judged_elsewhere(key):
            return
        now = time.monotonic()
        outcomes = self.outcomes.setdefault((key, impl), deque())
        outcomes.append(Outcome(now, status >= 500, seconds))
        while outcomes and outcomes[0].at < now - self.window:
            outcomes.popleft()
        if now - self.checked_at.get(key, 0.0) >= CHECK_EVERY_SECONDS:
            self.checked_at[key] = now
            reason = self.verdict(key)
            if reason is not None:
                self.forget(key)
                self.roll_back(key, reason)

    def _tripped(self, key: str, failed: bool) -> bool:
        """Count async's 5xx in a row; roll back once there are `consecutive_errors`."""
        if not failed:
            self.failing.pop(key, None)
            return False
        failing = self.failing[key] = self.failing.get(key, 0) + 1
        if not self.consecutive_errors or failing < self.consecutive_errors:
            return False
        self.forget(key)
        self.roll_back(
            key, f"automatic rollback: {failing} consecutive 5xx answers from async on this process"
        )
        return True

    def verdict(self, key: str) -> str | None:
        """Why `key` must go back to legacy, or None while async holds up (or data is short)."""
        legacy = self.outcomes.get((key, "legacy"), deque())
        migrated = self.outcomes.get((key, "async"), deque())
        if len(legacy) < self.min_requests or len(migrated) < self.min_requests:
            return None
        legacy_errors, async_errors = error_rate(legacy), error_rate(migrated)
        if async_errors - legacy_errors > self.error_margin:
            return (
                f"automatic rollback: async 5xx rate {async_errors:.1%} exceeds legacy's "
                f"{legacy_errors:.1%} by more than {self.error_margin:.1%} "
                f"({len(migrated)} async / {len(legacy)} legacy requests in {self.window:g} s)"
            )
        legacy_p95, async_p95 = p95(legacy), p95(migrated)
        slower = async_p95 - legacy_p95 > self.latency_floor
        if slower and async_p95 > self.latency_ratio * legacy_p95:
            return (
                f"automatic rollback: async p95 {async_p95 * 1000:.1f} ms exceeds "
                f"{self.latency_ratio:g} x legacy's {legacy_p95 * 1000:.1f} ms "
                f"({len(migrated)} async / {len(legacy)} legacy requests in {self.window:g} s)"
            )
        return None

    def forget(self, key: str) -> None:
        self.failing.pop(key, None)
        for impl in ("legacy", "async"):
            self.outcomes.pop((key, impl), None)
