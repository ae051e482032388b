"""This worker's outcomes on routes under a rollout plan, counted in memory, flushed to PostgreSQL.

Per route and kind (`legacy`, `async`: requests served in a canary; `match`,
`mismatch`, `error`, `calibration`: shadow comparisons) a worker counts
requests, 5xx answers and a latency histogram on fixed buckets (0.5 ms
growing by 20 % to about a minute), and writes what it counted since its last
flush as one row per route and kind (`gateway_route_samples`). Summing the
rows of every worker over a step is the fleet's evidence
(`gateway.rollout.evidence`). Counting costs a dict lookup and an increment;
a flush that fails keeps its counts for the next one, so nothing is lost while
the database is away.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.routing.schema import samples_table

logger = logging.getLogger(__name__)

FIRST_BOUND = 0.0005
GROWTH = 1.2
BOUNDS: tuple[float, ...] = tuple(FIRST_BOUND * GROWTH**i for i in range(62))  # up to ~40 s


def bucket_of(seconds: float) -> int:
    """The histogram bucket of a latency (the last one takes everything slower)."""
    return min(bisect.bisect_left(BOUNDS, seconds), len(BOUNDS))


@dataclass
class Tally:
    requests: int = 0
    errors: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS) + 1))

    def add(self, failed: bool, seconds: float) -> None:
        self.requests += 1
        self.errors += failed
        self.latency[bucket_of(seconds)] += 1

    def merge(self, other: Tally) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.latency = [
            mine + theirs for mine, theirs in zip(self.latency, other.latency, strict=True)
        ]


class Samples:
    """Counts outcomes of the routes in `watched`; `flush` writes and forgets them."""

    def __init__(self) -> None:
        self.watched: frozenset[str] = frozenset()
        self.tallies: dict[tuple[str, str], Tally] = {}

    def record(self, key: str, kind: str, failed: bool = False, seconds: float = 0.0) -> None:
        if key not in self.watched:
            return
        tally = self.tallies.get((key, kind))
        if tally is None:
            tally = self.tallies[key, kind] = Tally()
        tally.add(failed, seconds)

    def watch(self, keys: Iterable[str]) -> None:
        self.watched = frozenset(keys)

    async def flush(self, engine: AsyncEngine, worker: str) -> int:
        """Write the counts since the last flush (kept for the next if it fails); rows written."""
        taken, self.tallies = self.tallies, {}
        if not taken:
            return 0
        rows = [
            {
                "route": key,
                "worker": worker,
                "kind": kind,
                "requests": tally.requests,
                "errors": tally.errors,
                "latency": tally.latency,
            }
            for (key, kind), tally in taken.items()
        ]
        try:
            async with engine.begin() as connection:
                await connection.execute(insert(samples_table), rows)
        except Exception as error:
            logger.warning("route samples not flushed (kept for the next flush): %r", error)
            self._put_back(taken)
            return 0
        return len(rows)

    def _put_back(self, taken: dict[tuple[str, str], Tally]) -> None:
        for slot, tally in taken.items():
            current = self.tallies.get(slot)
            if current is None:
                self.tallies[slot] = tally
            else:
                current.merge(tally)
