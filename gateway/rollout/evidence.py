"""The fleet's evidence on a route over a step: every worker's flushed samples, summed.

One query sums the rows of `gateway_route_samples` written since the step
began, per kind, histograms element by element. A latency percentile is the
upper bound of the bucket it falls in (at most 20 % above the true value).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.routing.samples import BOUNDS

SUMMED = text(
    "SELECT kind, sum(requests)::bigint AS requests, sum(errors)::bigint AS errors, "
    "(SELECT array_agg(total ORDER BY position) FROM ("
    "  SELECT position, sum(count)::bigint AS total"
    "  FROM gateway_route_samples inner_samples,"
    "       unnest(inner_samples.latency) WITH ORDINALITY AS bucket(count, position)"
    "  WHERE inner_samples.route = :route AND inner_samples.at >= :since"
    "    AND inner_samples.kind = outer_samples.kind"
    "  GROUP BY position) buckets) AS latency "
    "FROM gateway_route_samples outer_samples "
    "WHERE route = :route AND at >= :since GROUP BY kind"
)


@dataclass(frozen=True)
class Counted:
    requests: int = 0
    errors: int = 0
    latency: tuple[int, ...] = field(default=())

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def percentile(self, share: float) -> float:
        """Seconds under which `share` of the requests finished (the bucket's upper bound)."""
        wanted = max(1, math.ceil(share * sum(self.latency)))
        running = 0
        for index, count in enumerate(self.latency):
            running += count
            if running >= wanted:
                return BOUNDS[index] if index < len(BOUNDS) else math.inf
        return 0.0


@dataclass(frozen=True)
class Evidence:
    """Per kind: legacy, async, match, mismatch, error, calibration."""

    kinds: dict[str, Counted]

    def of(self, kind: str) -> Counted:
        return self.kinds.get(kind, Counted())

    @property
    def comparisons(self) -> int:
        return sum(self.of(kind).requests for kind in ("match", "mismatch", "error"))

    def as_dict(self) -> dict[str, dict[str, float | int]]:
        shown: dict[str, dict[str, float | int]] = {}
        for kind, counted in sorted(self.kinds.items()):
            shown[kind] = {"requests": counted.requests, "errors": counted.errors}
            if kind in ("legacy", "async") and counted.requests:
                shown[kind]["p95_ms"] = round(counted.percentile(0.95) * 1000, 2)
        return shown


async def gather(connection: AsyncConnection, route: str, since: datetime) -> Evidence:
    rows = await connection.execute(SUMMED, {"route": route, "since": since})
    return Evidence(
        {
            row.kind: Counted(int(row.requests), int(row.errors), tuple(row.latency or ()))
            for row in rows
        }
    )
