"""The lean path: Core statements compiled once per shape and run straight on asyncpg.

A migrated route spends most of its time in the ORM, not in the database:
building the statement and its cache key, opening a transaction (BEGIN and
COMMIT are two more round trips), loading objects into the identity map.
`fetch_rows` runs a Core statement (a SELECT, or an INSERT/UPDATE/DELETE with
RETURNING) without any of it:

- the statement is compiled once per shape (SQLAlchemy's cache key, so the same
  query with other values reuses the compiled SQL) and its values pass through
  the column types' bind processors, the results through their result
  processors, as they would through SQLAlchemy;
- when the request's session has not begun a transaction, the statement runs on
  its own on a pooled asyncpg connection: one round trip, and a write commits
  when it returns (PostgreSQL runs a lone statement as its own transaction);
- when the session is in a transaction (the request wrote through it, has
  pending objects, or is a shadow run whose writes are rolled back), the same
  statement runs through the session, so it sees and joins the transaction;
- driver errors are raised as SQLAlchemy raises them on a session (an
  `IntegrityError` names its constraint), so the gateway answers them like any
  other database error, and a connection left in an unknown state is discarded.

Named prepared statements come from asyncpg's statement cache; with
`GATEWAY_PREPARED_STATEMENTS=false` the engine turns the cache off and each
statement is parsed unnamed (one more round trip, no server-side state).
Behind a pooler in transaction mode (`GATEWAY_TRANSACTION_POOLING`), a lone
statement runs in a transaction of its own instead, begun together with the
transaction's setup (`SET LOCAL statement_timeout`): Parse and Bind of an
unnamed statement must reach the same server connection.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
from asyncpg import PostgresError
from sqlalchemy import Dialect
from sqlalchemy import types as sqltypes
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.selectable import Select
from sqlalchemy.util import LRUCache, greenlet_spawn

from gateway.database.engines import pooled_setup
from gateway.database.sessions import DiscardingSession
from gateway.database.timing import add_database_time

Processor = Callable[[Any], Any]
LeanStatement = Select[*tuple[Any, ...]] | UpdateBase
Row = dict[str, Any]

CONNECTION_LOST_STATES = ("08", "57P")
SHAPES_KEPT = 500
# The server's type for columns whose SQLAlchemy type converts by it (asyncpg's numerics):
# what a column of that type returns, as the cursor's description would say.
FLOAT_OID, NUMERIC_OID, BIGINT_OID = 701, 1700, 20


class NotLean(TypeError):
    """The statement cannot take the lean path (it needs SQLAlchemy's own execution)."""


@dataclass(frozen=True)
class Shape:
    """One statement shape compiled for asyncpg: its SQL, parameters and result conversions."""

    compiled: Any
    parameter_names: tuple[str, ...]
    binders: tuple[Processor | None, ...]
    keys: tuple[str, ...]
    converters: tuple[tuple[str, Processor], ...]
    defaults: tuple[tuple[str, Any], ...]  # Python-side column defaults SQLAlchemy would fill in

    @property
    def sql(self) -> str:
        return str(self.compiled.string)

    def arguments(self, cache_key: Any, given: Mapping[str, Any] | None) -> list[Any]:
        """The positional values of a statement of this shape: its own, or `given` by name."""
        values = self.compiled.construct_params(given, extracted_parameters=cache_key.bindparams)
        values.update(self.defaults)
        return [
            value if binder is None else binder(value)
            for binder, value in zip(
                self.binders, (values[name] for name in self.parameter_names), strict=True
            )
        ]

    def row(self, record: Any) -> Row:
        row = dict(zip(self.keys, record, strict=True))
        for key, converter in self.converters:
            row[key] = converter(row[key])
        return row


_shapes: LRUCache[Any, Shape] = LRUCache(SHAPES_KEPT)
_not_lean: LRUCache[Any, bool] = LRUCache(SHAPES_KEPT)  # shapes found to need the session


class Recipe(Protocol, Hashable):
    """Builds the statement to run from the one a route wrote (a page from a query).

    Equal recipes build equal statements from statements of one shape, so what
    they build is compiled once per shape of what they are given.
    """

    def __call__(self, statement: Select[Any]) -> LeanStatement: ...


def compiled_shape(
    statement: LeanStatement,
    dialect: Dialect,
    given: Mapping[str, Any] | None = None,
    recipe: Recipe | None = None,
) -> tuple[Shape, list[Any]]:
    """The shape of `statement` (or of what `recipe` makes of it), compiled on first use,
    and the positional values: `statement`'s own, or `given` by name.
    """
    cache_key = statement._generate_cache_key()
    if cache_key is None or cache_key.params:
        raise NotLean("the statement has no stable cache key")
    key = (dialect.name, recipe, cache_key.key)
    shape = _shapes.get(key)
    if shape is None:
        if key in _not_lean:
            raise NotLean("this statement shape needs SQLAlchemy's own execution")
        try:
            shape = _shapes[key] = _shape(_built(statement, recipe), dialect, cache_key)
        except NotLean:
            _not_lean[key] = True
            raise
    return shape, shape.arguments(cache_key, given)


def _shape(statement: LeanStatement, dialect: Dialect, cache_key: Any) -> Shape:
    compiled: Any = statement.compile(dialect=dialect, cache_key=cache_key)
    if "POSTCOMPILE" in compiled.string or compiled.positiontup is None:
        raise NotLean("the statement expands its parameters when it runs (IN lists)")
    binders = tuple(
        compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
        for name in compiled.positiontup
    )
    defaults = tuple(
        (column.key, _scalar(column.default)) for column in compiled.insert_prefetch
    ) + tuple((column.key, _scalar(column.onupdate)) for column in compiled.update_prefetch)
    columns = [(str(key), column) for key, column in statement.exported_columns.items()]
    converters = []
    for key, column in columns:
        converter = _result_processor(column.type, dialect)
        if converter is not None:
            converters.append((key, converter))
    return Shape(
        compiled=compiled,
        parameter_names=tuple(compiled.positiontup),
        binders=binders,
        keys=tuple(key for key, _ in columns),
        converters=tuple(converters),
        defaults=defaults,
    )


def _scalar(default: Any) -> Any:
    """A column default's fixed value; a computed one needs SQLAlchemy's execution context."""
    if default is None or not default.is_scalar:
        raise NotLean("a column default is computed in Python when the statement runs")
    return default.arg


def _result_processor(column_type: Any, dialect: Dialect) -> Processor | None:
    implementation = column_type.dialect_impl(dialect)
    processor: Processor | None = implementation.result_processor(
        dialect, _server_type(column_type)
    )
    return processor


def _server_type(column_type: Any) -> int | None:
    if isinstance(column_type, sqltypes.Float):
        return FLOAT_OID
    if isinstance(column_type, sqltypes.Numeric):
        return NUMERIC_OID
    if isinstance(column_type, sqltypes.Integer):
        return BIGINT_OID
    return None


def runs_alone(db: AsyncSession, *, writes: bool) -> bool:
    """Whether a lean statement may run on a connection of its own rather than the session's.

    Not once the session holds a transaction or pending objects; and a write
    never does in a shadow run, whose writes must be rolled back.
    """
    if not isinstance(db.bind, AsyncEngine) or db.in_transaction():
        return False
    if db.new or db.dirty or db.deleted:
        return False
    return not (writes and issubclass(db.sync_session_class, DiscardingSession))


async def fetch_rows(
    db: AsyncSession,
    statement: LeanStatement,
    values: Mapping[str, Any] | None = None,
    *,
    writes: bool,
    recipe: Recipe | None = None,
) -> list[Row]:
    """The rows `statement` (or what `recipe` makes of it) returns, as dicts.

    `values` fill the statement's named parameters (`bindparam("name")`).
    """
    engine = db.bind
    if not (runs_alone(db, writes=writes) and isinstance(engine, AsyncEngine)):
        return await _through_session(db, _built(statement, recipe), values)
    try:
        shape, arguments = compiled_shape(statement, engine.dialect, values, recipe)
    except NotLean:
        async with db.begin():  # as if alone: finished, and a write committed, on return
            return await _through_session(db, _built(statement, recipe), values)
    return await _fetch_alone(engine, shape, arguments)


def _built(statement: LeanStatement, recipe: Recipe | None) -> LeanStatement:
    return statement if recipe is None else recipe(statement)  # type: ignore[arg-type]


async def _through_session(
    db: AsyncSession, statement: LeanStatement, values: Mapping[str, Any] | None
) -> list[Row]:
    result = await db.execute(statement, dict(values) if values else None)
    return [dict(row) for row in result.mappings()]


async def _fetch_alone(engine: AsyncEngine, shape: Shape, arguments: Sequence[Any]) -> list[Row]:
    """Run `shape` on a pooled connection of its own, outside any transaction."""
    connection = await _checked_out(engine, shape.sql)
    setup = pooled_setup(engine.sync_engine)
    started = time.perf_counter()
    try:
        driver: Any = connection.driver_connection
        if setup is None:
            records = await driver.fetch(shape.sql, *arguments)
        else:
            records = await _fetch_in_transaction(driver, setup, shape.sql, arguments)
    except BaseException as error:
        discarded = _discard_if_unsure(connection, error)
        with anyio.CancelScope(shield=True):  # a cancelled request still returns its connection
            await greenlet_spawn(connection.close)
        if isinstance(error, Exception):
            raise _as_sqlalchemy_error(engine, shape.sql, arguments, error, discarded) from error
        raise
    finally:
        add_database_time(time.perf_counter() - started)
    await greenlet_spawn(connection.close)  # back to the pool (it closes only overflow ones)
    return [shape.row(record) for record in records]


async def _fetch_in_transaction(
    driver: Any, setup: str, sql: str, arguments: Sequence[Any]
) -> list[Any]:
    """Behind a transaction pooler: a statement's Parse and Bind must reach the same server
    connection, which only a transaction guarantees; BEGIN travels with the setup."""
    await driver.execute(f"BEGIN; {setup}" if setup else "BEGIN")
    try:
        records = await driver.fetch(sql, *arguments)
    except PostgresError as error:  # the connection answers: end the failed transaction
        if not str(getattr(error, "sqlstate", "") or "").startswith(CONNECTION_LOST_STATES):
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await driver.execute("ROLLBACK")
        raise
    await driver.execute("COMMIT")
    return list(records)


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


def _as_sqlalchemy_error(
    engine: AsyncEngine, sql: str, arguments: Sequence[Any], error: Exception, discarded: bool
) -> Exception:
    """`error` as a session would have raised it: asyncpg's class -> DBAPI's -> SQLAlchemy's."""
    dbapi = engine.dialect.loaded_dbapi
    translations: Mapping[type, Any] = getattr(dbapi, "_asyncpg_error_translate", {})
    translated: Exception = error
    for kind in type(error).__mro__:
        if kind in translations:
            translated = translations[kind](error.args[0] if error.args else str(error), error)
            translated.__cause__ = error
            break
    return DBAPIError.instance(
        sql, tuple(arguments), translated, dbapi.Error, connection_invalidated=discarded
    )


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
