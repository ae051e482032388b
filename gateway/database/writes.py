"""Lean writes: one INSERT, UPDATE or DELETE with RETURNING, answered straight as a schema.

A request that writes one statement through the ORM pays BEGIN, the statement
and COMMIT (three round trips) plus the unit of work: objects, identity map,
flush. These helpers run one Core statement on the lean path (see
`gateway.database.lean`) and fill the response schema from what RETURNING sends
back:

- outside a transaction the statement runs alone and commits when it returns:
  one round trip. A route that makes several writes that must succeed or fail
  together opens a transaction first (`async with db.begin(): ...`); inside one,
  every helper joins it through the session, and a shadow run's writes are
  always rolled back;
- values go straight to the table: column defaults apply, ORM events and
  `@validates` hooks do not (use the ORM helpers for a model that relies on them);
- the statements by primary key, and every insert, are built once per model,
  schema and set of columns written, so a request only binds its values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import ColumnElement, bindparam, delete, insert, inspect, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.sql.dml import UpdateBase

from gateway.database.lean import fetch_rows
from gateway.database.reads import (
    KEY_PARAMETER,
    entity_name,
    key_column,
    key_matches,
    model_columns,
    schema_columns,
)
from gateway.errors import not_found

S = TypeVar("S", bound=BaseModel)
Model = type[DeclarativeBase]
VALUE_PREFIX = "value_"  # a parameter may not be named like the column it sets

_built: dict[tuple[Any, ...], UpdateBase] = {}


def _values(model: Model, names: tuple[str, ...]) -> dict[str, Any]:
    """A named parameter for each column in `names`, typed like the column."""
    columns = model_columns(model)
    unknown = [name for name in names if name not in columns]
    if unknown:
        raise ValueError(f"{model.__name__} has no column {', '.join(unknown)}")
    return {name: bindparam(VALUE_PREFIX + name, type_=columns[name].type) for name in names}


def _named(values: Mapping[str, Any]) -> dict[str, Any]:
    return {VALUE_PREFIX + name: value for name, value in values.items()}


def _insert(model: Model, schema: type[BaseModel], names: tuple[str, ...]) -> UpdateBase:
    key = ("insert", model, schema, names)
    built = _built.get(key)
    if built is None:
        returned = schema_columns(model, schema)
        built = _built[key] = insert(model).values(_values(model, names)).returning(*returned)
    return built


def _update_by_key(model: Model, schema: type[BaseModel], names: tuple[str, ...]) -> UpdateBase:
    key = ("update", model, schema, names)
    built = _built.get(key)
    if built is None:
        statement = update(model).where(key_matches(model)).values(_values(model, names))
        built = _built[key] = statement.returning(*schema_columns(model, schema))
    return built


def _delete_by_key(model: Model) -> UpdateBase:
    key = ("delete", model)
    built = _built.get(key)
    if built is None:
        statement = delete(model).where(key_matches(model))
        built = _built[key] = statement.returning(key_column(model))
    return built


async def insert_returning(
    db: AsyncSession, model: Model, values: Mapping[str, Any], schema: type[S]
) -> S:
    """Insert one row of `model` with `values`; the row as stored, as `schema`."""
    statement = _insert(model, schema, tuple(values))
    rows = await fetch_rows(db, statement, _named(values), writes=True)
    return schema.model_validate(rows[0])


async def update_or_404(
    db: AsyncSession, model: Model, ident: Any, values: Mapping[str, Any], schema: type[S]
) -> S:
    """Set `values` on the row of `model` whose primary key is `ident`: the row, as `schema`."""
    if not values:
        raise ValueError("update_or_404 needs at least one value to set")
    statement = _update_by_key(model, schema, tuple(values))
    rows = await fetch_rows(db, statement, {KEY_PARAMETER: ident, **_named(values)}, writes=True)
    if not rows:
        raise not_found(entity_name(model), ident)
    return schema.model_validate(rows[0])


async def delete_or_404(db: AsyncSession, model: Model, ident: Any) -> None:
    """Delete the row of `model` whose primary key is `ident`, or raise `NotFound`."""
    statement = _delete_by_key(model)
    if not await fetch_rows(db, statement, {KEY_PARAMETER: ident}, writes=True):
        raise not_found(entity_name(model), ident)


async def update_returning(
    db: AsyncSession,
    model: Model,
    *where: ColumnElement[bool],
    values: Mapping[str, Any],
    schema: type[S],
) -> list[S]:
    """Set `values` on the rows of `model` matching `where`; those rows as updated, as `schema`."""
    if not values:
        raise ValueError("update_returning needs at least one value to set")
    statement = (
        update(model).where(*where).values(**values).returning(*schema_columns(model, schema))
    )
    rows = await fetch_rows(db, statement, writes=True)
    return [schema.model_validate(row) for row in rows]


async def delete_returning(db: AsyncSession, model: Model, *where: ColumnElement[bool]) -> int:
    """Delete the rows of `model` matching `where`; how many there were."""
    statement = delete(model).where(*where).returning(*inspect(model).primary_key)
    return len(await fetch_rows(db, statement, writes=True))
