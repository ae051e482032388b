"""Learned shadow noise in PostgreSQL: per route, the field paths where one implementation's two
answers to the same request differ (a timestamp, a request id), shared by every instance.

A calibration run (shadow mode with `calibrating`) compares the primary with
itself; each path where the two answers differ is upserted into
`gateway_shadow_noise` (`seen` + 1; `learned_at`: first seen), so any worker
of any instance that compares the route with its other implementation later
leaves those paths out. A worker keeps each route's paths in memory and reads
them again once they are older than `refresh` seconds, at once after it learns
or forgets some, and after each reload of the route table (`expire`). Only a
shadow's background task ever waits on that read, never a request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.routing.schema import noise_table

REFRESH_SECONDS = 5.0


class NoiseStore:
    """Learns, reads (through a short-lived cache) and forgets the noise of routes."""

    def __init__(
        self,
        sessions: Callable[[], AsyncSession],
        refresh: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        self.refresh = refresh
        self.clock = clock
        self.cached: dict[str, tuple[float, frozenset[str]]] = {}
        self.changes = 0  # a read that began before a change must not be cached after it

    async def learned(self, route: str) -> frozenset[str]:
        """The route's noise, as read at most `refresh` seconds ago."""
        cached = self.cached.get(route)
        if cached is not None and self.clock() - cached[0] < self.refresh:
            return cached[1]
        read_at, changes = self.clock(), self.changes
        query = select(noise_table.c.field).where(noise_table.c.route == route)
        async with self.sessions() as session:
            paths = frozenset((await session.scalars(query)).all())
        if changes == self.changes:
            self.cached[route] = (read_at, paths)
        return paths

    async def learn(self, route: str, paths: Iterable[str]) -> None:
        rows = [{"route": route, "field": path} for path in sorted(set(paths))]
        if not rows:
            return
        upsert = insert(noise_table).values(rows)
        seen_again = upsert.on_conflict_do_update(
            index_elements=[noise_table.c.route, noise_table.c.field],
            set_={"seen": noise_table.c.seen + 1},
        )
        async with self.sessions() as session, session.begin():
            await session.execute(seen_again)
        self.expire()

    async def forget(self, route: str) -> int:
        """Forget everything learned of the route; how many paths that was."""
        query = delete(noise_table).where(noise_table.c.route == route)
        async with self.sessions() as session, session.begin():
            forgotten = (await session.execute(query.returning(noise_table.c.field))).all()
        self.expire()
        return len(forgotten)

    def expire(self) -> None:
        self.cached.clear()
        self.changes += 1

    async def report(self, route: str | None = None) -> list[dict[str, Any]]:
        """Each route's learned paths (of one route, with `route`), as all instances stored them."""
        query = select(noise_table).order_by(noise_table.c.route, noise_table.c.field)
        if route is not None:
            query = query.where(noise_table.c.route == route)
        async with self.sessions() as session:
            rows = (await session.execute(query)).mappings().all()
        found: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            learned_at: datetime = row["learned_at"]
            field = {
                "field": row["field"],
                "seen": row["seen"],
                "learned_at": learned_at.timestamp(),
            }
            found.setdefault(row["route"], []).append(field)
        return [{"route": key, "fields": fields} for key, fields in found.items()]
