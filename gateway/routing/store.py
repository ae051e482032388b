"""The gateway's tables in PostgreSQL: route modes, the shared truth every worker loads.

A change writes the route's row, appends an event (who, when, why, old and
new mode) and sends `NOTIFY gateway_routes` in one transaction, so listeners
hear of it only once it is committed; the event's id becomes the row's
`version`, so the highest version names the table every worker should hold.
Beside them: each worker's report of the version it holds (`gateway_workers`,
kept by `gateway.routing.fleet`) and the latest shadow mismatches of every
instance (`gateway_shadow_mismatches`, `gateway.routing.mismatches`). The
tables belong to the gateway, not to the app: `metadata` is what the gateway's own migrations create
(`gateway.ops.migrations`), beside whatever schema the app has.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    Text,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.routing.modes import RouteMode

CHANNEL = "gateway_routes"
PLACEHOLDER_ACTOR = "gateway"  # the row a first change inserts, and overwrites, in one transaction
SELECT_MODES = (
    "SELECT route, mode, percent, primary_impl, changed_by, reason, changed_at, version "
    "FROM gateway_routes"
)

MODES = "'legacy', 'async', 'canary', 'shadow'"
IMPLS = "'legacy', 'async'"

metadata = MetaData(
    naming_convention={
        "pk": "%(table_name)s_pkey",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    }
)
routes_table = Table(
    "gateway_routes",
    metadata,
    Column("route", Text, primary_key=True),
    Column("mode", Text, nullable=False),
    Column("percent", SmallInteger, nullable=False, server_default="0"),
    Column("primary_impl", Text, nullable=False, server_default="legacy"),
    Column("changed_by", Text, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("changed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # the id of the event that set the row: the highest is the version of the whole table
    Column("version", BigInteger, nullable=False, server_default="0"),
    CheckConstraint(f"mode IN ({MODES})", name="mode"),
    CheckConstraint("percent BETWEEN 0 AND 100", name="percent"),
    CheckConstraint(f"primary_impl IN ({IMPLS})", name="primary"),
)
events_table = Table(
    "gateway_route_events",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("route", Text, nullable=False),
    Column("old_mode", Text),
    Column("old_percent", SmallInteger),
    Column("new_mode", Text, nullable=False),
    Column("percent", SmallInteger, nullable=False),
    Column("primary_impl", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index(None, "route", "id"),
)


workers_table = Table(
    "gateway_workers",
    metadata,
    Column("worker", Text, primary_key=True),  # instance/pid
    Column("instance", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("version", BigInteger, nullable=False),  # of the route table the worker holds
    Column("listening", Boolean, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("seen_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
mismatches_table = Table(
    "gateway_shadow_mismatches",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("route", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("query", Text, nullable=False),
    Column("primary_impl", Text, nullable=False),
    Column("primary_status", SmallInteger, nullable=False),
    Column("shadow_status", SmallInteger, nullable=False),
    Column("diff", Text, nullable=False),
    Column("worker", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index(None, "route", "id"),
)


@dataclass(frozen=True)
class StoredMode:
    mode: RouteMode
    changed_by: str
    reason: str
    changed_at: datetime
    version: int = 0


def _stored(row: Mapping[str, Any]) -> StoredMode:
    mode = RouteMode(mode=row["mode"], percent=row["percent"], primary=row["primary_impl"])
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
        event = await _store(connection, key, new, actor, reason, default, expect)
        await connection.execute(select(func.pg_notify(CHANNEL, key)))
        return event


async def save_modes(
    engine: AsyncEngine,
    changes: Mapping[str, tuple[RouteMode, RouteMode]],
    *,
    actor: str,
    reason: str,
) -> list[dict[str, Any]]:
    """Store every `key: (new mode, default)` of `changes` in one transaction, with one NOTIFY."""
    async with engine.begin() as connection:
        events = [
            await _store(connection, key, new, actor, reason, default, None)
            for key, (new, default) in sorted(changes.items())
        ]
        await connection.execute(select(func.pg_notify(CHANNEL, "*")))
        return events


async def _store(
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
