"""Lean reads straight into a response schema: one row by primary key, a page with its total.

The statements select exactly the schema's fields from the model's table and
run on the lean path (see `gateway.database.lean`): no ORM objects, no
identity map, no transaction around a lone SELECT. Under READ COMMITTED,
PostgreSQL's default, a lone SELECT sees exactly what the first statement of a
transaction would; inside a transaction the same statement runs through the
session and sees the transaction's own writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Select, bindparam, func, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapper

from gateway.database.lean import fetch_rows

S = TypeVar("S", bound=BaseModel)
KEY_PARAMETER = "ident"
TOTAL = "gateway_total"
LIMIT_PARAMETER, OFFSET_PARAMETER = "page_limit", "page_offset"


class UnreadableSchema(TypeError):
    """A schema asks for a field that is not a column of the model."""


_columns: dict[tuple[type[DeclarativeBase], type[BaseModel]], tuple[ColumnElement[Any], ...]] = {}
_keyed: dict[tuple[type[DeclarativeBase], type[BaseModel]], Select[Any]] = {}


def schema_columns(
    model: type[DeclarativeBase], schema: type[BaseModel]
) -> tuple[ColumnElement[Any], ...]:
    """`model`'s columns for each of `schema`'s fields, labelled with the field's name."""
    found = _columns.get((model, schema))
    if found is None:
        found = _columns[(model, schema)] = _schema_columns(model, schema)
    return found


def _schema_columns(
    model: type[DeclarativeBase], schema: type[BaseModel]
) -> tuple[ColumnElement[Any], ...]:
    columns = model_columns(model)
    missing = [name for name in schema.model_fields if name not in columns]
    if missing:
        raise UnreadableSchema(
            f"{schema.__name__} needs {', '.join(missing)}, which {model.__name__} has no "
            "column for: load the objects through the session instead"
        )
    return tuple(columns[name].label(name) for name in schema.model_fields)


def model_columns(model: type[DeclarativeBase]) -> dict[str, ColumnElement[Any]]:
    """`model`'s columns by attribute name."""
    return {prop.key: prop.columns[0] for prop in inspect(model).column_attrs}


def key_matches(model: type[DeclarativeBase]) -> ColumnElement[bool]:
    """`model`'s primary key = :ident, the condition of every lean statement by key."""
    column = key_column(model)
    return column == bindparam(KEY_PARAMETER, type_=column.type)


def key_column(model: type[DeclarativeBase]) -> ColumnElement[Any]:
    """`model`'s primary key column; lean statements by key need it to be a single one."""
    key_columns = inspect(model).primary_key
    if len(key_columns) != 1:
        raise UnreadableSchema(f"{model.__name__}: a lean statement by key needs a one-column key")
    column: ColumnElement[Any] = key_columns[0]
    return column


def keyed_select(model: type[DeclarativeBase], schema: type[BaseModel]) -> Select[Any]:
    """SELECT `schema`'s fields FROM `model` WHERE its primary key = :ident, built once."""
    found = _keyed.get((model, schema))
    if found is None:
        statement = select(*schema_columns(model, schema)).where(key_matches(model))
        found = _keyed[(model, schema)] = statement
    return found


def entity_name(model: type[DeclarativeBase]) -> str:
    """How a 404 names a row of `model`."""
    return model.__name__.lower()


async def read_one(
    db: AsyncSession, model: type[DeclarativeBase], ident: Any, schema: type[S]
) -> S | None:
    """`schema` filled from the row of `model` whose primary key is `ident`, or None."""
    statement = keyed_select(model, schema)
    rows = await fetch_rows(db, statement, {KEY_PARAMETER: ident}, writes=False)
    return schema.model_validate(rows[0]) if rows else None


@dataclass(frozen=True)
class PageOf:
    """The recipe of a page: `schema`'s columns of a query's rows, each with the total.

    The total is an uncorrelated scalar subquery: PostgreSQL counts once per
    statement (an InitPlan), as cheaply as a separate count, in the same round
    trip, and counts rows, not groups, of a DISTINCT or GROUP BY query.
    `count(*) OVER ()` would read every matching row past the page. The limit
    and offset are named parameters, so one compiled page serves every page.
    """

    schema: type[BaseModel]

    def __call__(self, statement: Select[Any]) -> Select[Any]:
        model = selected_model(statement)
        total = count_select(statement).correlate(None).scalar_subquery()
        columns = schema_columns(model, self.schema)
        return (
            statement.with_only_columns(*columns, total.label(TOTAL), maintain_column_froms=True)
            .limit(bindparam(LIMIT_PARAMETER))
            .offset(bindparam(OFFSET_PARAMETER))
        )


def selected_model(statement: Select[Any]) -> type[DeclarativeBase]:
    """The one mapped class `statement` selects (`select(Model).where(...)`)."""
    described = statement.column_descriptions
    entity = described[0].get("entity") if len(described) == 1 else None
    if not (isinstance(entity, type) and isinstance(inspect(entity, raiseerr=False), Mapper)):
        raise UnreadableSchema("a lean page reads `select(Model)...`: one mapped class")
    found: type[DeclarativeBase] = entity
    return found


def count_select(statement: Select[Any]) -> Select[Any]:
    """How many rows `statement` selects, ignoring its order, limit and offset."""
    return select(func.count().label(TOTAL)).select_from(
        statement.order_by(None).limit(None).offset(None).subquery()
    )


async def read_page(
    db: AsyncSession, statement: Select[Any], schema: type[S], *, limit: int, offset: int
) -> tuple[list[S], int]:
    """One page of `statement`'s rows as `schema`, and how many rows there are in all.

    One round trip; a second one (the count alone) only for a page past the end.
    """
    values = {LIMIT_PARAMETER: limit, OFFSET_PARAMETER: offset}
    rows = await fetch_rows(db, statement, values, writes=False, recipe=PageOf(schema))
    if rows:
        total = int(rows[0].pop(TOTAL))
        for row in rows[1:]:
            del row[TOTAL]
        return [schema.model_validate(row) for row in rows], total
    if offset == 0:
        return [], 0
    counted = await fetch_rows(db, count_select(statement), writes=False)
    return [], int(counted[0][TOTAL])
