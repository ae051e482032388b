"""Lean reads: fetch one row by primary key into a response schema, without the ORM.

A migrated read route spends most of its time in the ORM, not in the database:
building the statement and its cache key, opening a transaction (BEGIN and
COMMIT are two more round trips), loading an object into the identity map.
`read_one` skips all of it:

- the statement selects exactly the schema's fields from the model's table; it
  is built and compiled once per (model, schema, dialect) and reused;
- when the request's session has not begun a transaction, the statement runs
  on its own on a pooled asyncpg connection (one round trip, autocommit), which
  goes straight back to the pool. Under READ COMMITTED, PostgreSQL's default,
  a lone SELECT sees exactly what the first statement of a transaction would;
- when the session is already in a transaction (the request wrote something,
  or it is a shadow run bound to a transaction that is rolled back), the same
  statement runs through the session, so it sees the transaction's own writes;
- values pass through the column types' result processors, as they would
  through SQLAlchemy, and the row is validated into the schema.

Errors raised by the driver are wrapped as SQLAlchemy's `DBAPIError`, so the
gateway's error handlers answer them as they answer any other database error,
and a connection left in an unknown state is discarded, not returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from asyncpg import PostgresError
from pydantic import BaseModel
from sqlalchemy import ColumnElement, Dialect, Select, bindparam, inspect, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from gateway.database.timing import add_database_time

S = TypeVar("S", bound=BaseModel)
KEY_PARAMETER = "ident"
CONNECTION_LOST_STATES = ("08", "57P")

Processor = Callable[[Any], Any]


class UnreadableSchema(TypeError):
    """A schema asks for a field that is not a column of the model."""


@dataclass
class KeyedRead:
    """A by-primary-key SELECT of a schema's fields, ready for both ways of running it."""

    statement: Select[Any]
    sql: str  # compiled for the async engine's dialect; one positional parameter
    key_processor: Processor | None
    columns: tuple[tuple[str, ColumnElement[Any]], ...]
    # Which columns need converting, learnt from the types of the first result, as
    # SQLAlchemy learns them from a cursor's description.
    processors: tuple[tuple[str, Processor], ...] | None = None

    async def learn_processors(self, driver: Any, dialect: Dialect) -> None:
        attributes = (await driver.prepare(self.sql)).get_attributes()
        found = []
        for (name, column), attribute in zip(self.columns, attributes, strict=True):
            processor = column.type.dialect_impl(dialect).result_processor(
                dialect, attribute.type.oid
            )
            if processor is not None:
                found.append((name, processor))
        self.processors = tuple(found)

    def values(self, row: Mapping[str, Any]) -> dict[str, Any]:
        values = dict(row)
        for key, processor in self.processors or ():
            values[key] = processor(values[key])
        return values


_reads: dict[tuple[type[DeclarativeBase], type[BaseModel], str], KeyedRead] = {}


def keyed_read(
    model: type[DeclarativeBase], schema: type[BaseModel], dialect: Dialect
) -> KeyedRead:
    """The read of `schema`'s fields from `model` by primary key, built on first use."""
    cache_key = (model, schema, dialect.name)
    read = _reads.get(cache_key)
    if read is None:
        read = _reads[cache_key] = _build(model, schema, dialect)
    return read


def _build(model: type[DeclarativeBase], schema: type[BaseModel], dialect: Dialect) -> KeyedRead:
    mapper = inspect(model)
    if len(mapper.primary_key) != 1:
        raise UnreadableSchema(f"{model.__name__}: read_one needs a single-column primary key")
    key_column = mapper.primary_key[0]
    columns = {prop.key: prop.columns[0] for prop in mapper.column_attrs}
    missing = [name for name in schema.model_fields if name not in columns]
    if missing:
        raise UnreadableSchema(
            f"{schema.__name__} needs {', '.join(missing)}, which {model.__name__} has no "
            "column for: load the object with get_or_404 instead"
        )
    chosen = {name: columns[name] for name in schema.model_fields}
    statement = select(*(column.label(name) for name, column in chosen.items())).where(
        key_column == bindparam(KEY_PARAMETER, type_=key_column.type)
    )
    return KeyedRead(
        statement=statement,
        sql=str(statement.compile(dialect=dialect)),
        key_processor=key_column.type.dialect_impl(dialect).bind_processor(dialect),
        columns=tuple(chosen.items()),
    )


async def read_one(
    db: AsyncSession, model: type[DeclarativeBase], ident: Any, schema: type[S]
) -> S | None:
    """`schema` filled from the row of `model` whose primary key is `ident`, or None."""
    engine = db.bind
    if db.in_transaction() or not isinstance(engine, AsyncEngine):
        read = keyed_read(model, schema, db.get_bind().dialect)
        row = (await db.execute(read.statement, {KEY_PARAMETER: ident})).mappings().first()
    else:
        read = keyed_read(model, schema, engine.dialect)
        row = await _fetch_alone(engine, read, ident)
    return None if row is None else schema.model_validate(row)


async def _fetch_alone(
    engine: AsyncEngine, read: KeyedRead, ident: Any
) -> Mapping[str, Any] | None:
    """Run `read` on a pooled connection of its own, outside any transaction."""
    key = ident if read.key_processor is None else read.key_processor(ident)
    connection = await _checked_out(engine, read.sql)
    started = time.perf_counter()
    try:
        driver: Any = connection.driver_connection
        if read.processors is None:
            await read.learn_processors(driver, engine.dialect)
        row: Mapping[str, Any] | None = await driver.fetchrow(read.sql, key)
    except BaseException as error:
        discarded = _discard_if_unsure(connection, error)
        with anyio.CancelScope(shield=True):  # a cancelled request still returns its connection
            await greenlet_spawn(connection.close)
        if isinstance(error, Exception):
            raise DBAPIError.instance(
                read.sql, (key,), error, Exception, connection_invalidated=discarded
            ) from error
        raise
    finally:
        add_database_time(time.perf_counter() - started)
    await greenlet_spawn(connection.close)  # back to the pool (it closes only overflow ones)
    return None if row is None else read.values(row)


async def _checked_out(engine: AsyncEngine, sql: str) -> PoolProxiedConnection:
    """A pooled connection; a failure to get one raised as SQLAlchemy raises it elsewhere.

    The pool hands out raw driver errors (a refused or failed connect); wrapping
    them as `DBAPIError` lets the error handlers answer them as they answer the
    same failure on a session.
    """
    try:
        return await engine.raw_connection()
    except engine.dialect.loaded_dbapi.Error as error:
        raise DBAPIError.instance(
            sql, None, error, engine.dialect.loaded_dbapi.Error, connection_invalidated=True
        ) from error


def _discard_if_unsure(connection: PoolProxiedConnection, error: BaseException) -> bool:
    """Invalidate the connection unless PostgreSQL answered with an ordinary error.

    A cancelled fetch, a broken socket or an admin shutdown leave the
    connection in a state the pool must not hand out again.
    """
    state = str(getattr(error, "sqlstate", "") or "")
    if isinstance(error, PostgresError) and not state.startswith(CONNECTION_LOST_STATES):
        return False
    connection.invalidate(error if isinstance(error, Exception) else None)
    return True
