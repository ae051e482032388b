"""Route modes in PostgreSQL: the shared truth every worker loads, and every change as an event.

A change writes the route's row, appends an event (who, when, why, old and
new mode) and sends `NOTIFY gateway_routes` in one transaction, so listeners
hear of it only once it is committed; the event's id becomes the row's
`version`, so the highest version names the table every worker should hold.
The tables are described in `gateway.routing.schema`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.routing.modes import RouteMode
from gateway.routing.schema import events_table, routes_table

CHANNEL = "gateway_routes"
PLACEHOLDER_ACTOR = "gateway"  # the row a first change inserts, and overwrites, in one transaction
SELECT_MODES = (
    "SELECT route, mode, percent, primary_impl, changed_by, reason, changed_at, version, "
    "sample_percent, calibrating FROM gateway_routes"
)


@dataclass(frozen=True)
class StoredMode:
    mode: RouteMode
    changed_by: str
    reason: str
    changed_at: datetime
    version: int = 0


def _stored(row: Mapping[str, Any]) -> StoredMode:
    mode = RouteMode(
        mode=row["mode"],
        percent=row["percent"],
        primary=row["primary_impl"],
        sample=row.get("sample_percent", 100),
        calibrating=bool(row.get("calibrating", False)),
    )
    return StoredMode(
        mode, row["changed_by"], row["reason"], row["changed_at"], row.get("version") or 0
    )


def table_version(stored: Mapping[str, StoredMode]) -> int:
    """The version of a loaded table: its newest change's event id (0 before any change)."""
    return max((mode.version for mode in stored.values()), default=0)


def stored_modes(rows: Iterable[Mapping[str, Any]]) -> dict[str, StoredMode]:
    return {row["route"]: _stored(row) for row in rows}


async def load_modes(engine: AsyncEngine) -> dict[str, StoredMode]:
    async with engine.connect() as connection:
        rows = await connection.execute(select(routes_table))
        return stored_modes(dict(row._mapping) for row in rows)


class ModeChanged(Exception):
    """The route's mode is no longer the one the change expected (someone else moved it)."""


async def _locked_current(connection: AsyncConnection, key: str, default: RouteMode) -> RouteMode:
    """The route's stored mode (its default if none), with its row locked to this transaction.

    A route never changed before has no row to lock, and `SELECT ... FOR UPDATE`
    locks nothing that is absent: two first changes would both read the default.
    So the row is first inserted, holding the default; a concurrent first change
    waits on the primary key until this transaction ends, then finds the row.
    """
    placeholder = (
        insert(routes_table)
        .values(
            route=key,
            mode=default.mode,
            percent=default.percent,
            primary_impl=default.primary,
            sample_percent=default.sample,
            calibrating=default.calibrating,
            changed_by=PLACEHOLDER_ACTOR,
            reason="",
        )
        .on_conflict_do_nothing(index_elements=[routes_table.c.route])
    )
    await connection.execute(placeholder)
    query = select(routes_table).where(routes_table.c.route == key).with_for_update()
    return _stored(dict((await connection.execute(query)).one()._mapping)).mode


async def save_mode(
    engine: AsyncEngine,
    key: str,
    new: RouteMode,
    *,
    actor: str,
    reason: str,
    default: RouteMode,
    expect: str | None = None,
) -> dict[str, Any]:
    """Store `new` for `key`, record the event, notify every instance; return the event.

    With `expect`, the change applies only while the route is still in that
    mode (an automatic rollback must not undo a person's newer decision).
    """
    async with engine.begin() as connection:
        event = await record_change(connection, key, new, actor, reason, default, expect)
        await notify(connection, key)
        return event


async def save_modes(
    engine: AsyncEngine,
    changes: Mapping[str, tuple[RouteMode, RouteMode]],
    *,
    actor: str,
    reason: str,
    also: Callable[[AsyncConnection], Awaitable[None]] | None = None,
) -> list[dict[str, Any]]:
    """Store every `key: (new mode, default)` of `changes` in one transaction, with one NOTIFY.

    `also` runs in the same transaction, after the changes.
    """
    async with engine.begin() as connection:
        events = [
            await record_change(connection, key, new, actor, reason, default, None)
            for key, (new, default) in sorted(changes.items())
        ]
        if also is not None:
            await also(connection)
        if events:
            await notify(connection, "*")
        return events


async def notify(connection: AsyncConnection, key: str) -> None:
    """Tell every listening worker, once the transaction commits, that `key` ("*": all) changed."""
    await connection.execute(select(func.pg_notify(CHANNEL, key)))


async def record_change(
    connection: AsyncConnection,
    key: str,
    new: RouteMode,
    actor: str,
    reason: str,
    default: RouteMode,
    expect: str | None,
) -> dict[str, Any]:
    old = await _locked_current(connection, key, default)
    if expect is not None and old.mode != expect:
        raise ModeChanged(f"{key} is in mode {old.mode!r}, not {expect!r}")
    event = {
        "route": key,
        "old_mode": old.mode,
        "old_percent": old.percent,
        "new_mode": new.mode,
        "percent": new.percent,
        "primary_impl": new.primary,
        "actor": actor,
        "reason": reason,
    }
    inserted = await connection.execute(
        insert(events_table).values(**event).returning(events_table)
    )
    recorded = dict(inserted.one()._mapping)
    values = {
        "mode": new.mode,
        "percent": new.percent,
        "primary_impl": new.primary,
        "sample_percent": new.sample,
        "calibrating": new.calibrating,
        "changed_by": actor,
        "reason": reason,
        "changed_at": func.now(),
        "version": recorded["id"],
    }
    upsert = insert(routes_table).values(route=key, **values)
    await connection.execute(
        upsert.on_conflict_do_update(index_elements=[routes_table.c.route], set_=values)
    )
    return recorded


async def list_events(
    engine: AsyncEngine, *, route: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    query = select(events_table).order_by(events_table.c.id.desc()).limit(limit)
    if route is not None:
        query = query.where(events_table.c.route == route)
    async with engine.connect() as connection:
        return [dict(row._mapping) for row in await connection.execute(query)]
