"""Shadow mismatches in PostgreSQL: every instance's, the newest `keep` per route, each with the
seconds both sides took.

A worker that finds a mismatch writes it (with its own name) and trims the
route's oldest beyond `keep` in the same statement, so every instance reads the
same list and the table stays bounded. Two workers writing at once may leave
one more row for a moment; the next write trims it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.routing.schema import mismatches_table

# the new row is not in the DELETE's snapshot: it trims the old rows to keep - 1
RECORD = (
    "WITH added AS ("
    " INSERT INTO gateway_shadow_mismatches"
    " (route, path, query, primary_impl, primary_status, shadow_status, diff, worker,"
    "  primary_seconds, shadow_seconds)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id)"
    " DELETE FROM gateway_shadow_mismatches WHERE route = $1 AND id <= ("
    "  SELECT id FROM gateway_shadow_mismatches WHERE route = $1"
    "  ORDER BY id DESC OFFSET $11 LIMIT 1)"
)


@dataclass(frozen=True)
class Mismatch:
    route: str
    path: str
    query: str
    primary: str
    status: tuple[int, int]
    diff: str
    seconds: tuple[float, float]  # the primary's, the shadow's


class MismatchStore:
    """Writes and reads the shared mismatches through the app's async sessions."""

    def __init__(self, sessions: Callable[[], AsyncSession], worker: str, keep: int) -> None:
        self.sessions = sessions
        self.worker = worker
        self.keep = keep

    async def record(self, mismatch: Mismatch) -> None:
        values = (
            mismatch.route,
            mismatch.path,
            mismatch.query,
            mismatch.primary,
            *mismatch.status,
            mismatch.diff,
            self.worker,
            *mismatch.seconds,
            self.keep - 1,
        )
        async with self.sessions() as session, session.begin():
            connection = await session.connection()
            await connection.exec_driver_sql(RECORD, values)

    async def latest(self, route: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """The kept mismatches per route, newest first (of one route, with `route`)."""
        query = select(mismatches_table).order_by(mismatches_table.c.id.desc())
        if route is not None:
            query = query.where(mismatches_table.c.route == route)
        async with self.sessions() as session:
            rows = [dict(row) for row in (await session.execute(query)).mappings()]
        return grouped(rows)


def grouped(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        found.setdefault(row["route"], []).append(as_dict(row))
    return found


def as_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    at: datetime = row["at"]
    return {
        "route": row["route"],
        "path": row["path"],
        "query": row["query"],
        "primary": row["primary_impl"],
        "primary_status": row["primary_status"],
        "shadow_status": row["shadow_status"],
        "diff": row["diff"],
        "primary_seconds": row["primary_seconds"],
        "shadow_seconds": row["shadow_seconds"],
        "worker": row["worker"],
        "at": at.timestamp(),
    }
