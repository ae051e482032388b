"""Async query helpers that keep a migrated route as short as the legacy code it replaces.

Each helper is one idiom of the translation table (see README):

    db.query(M).get(id) or 404          -> await get_or_404(db, M, id)
    ... only to answer it as schema S   -> await read_or_404(db, M, id, S)   (no ORM; see reads)
    db.query(M).filter(...).all()       -> await list_page(db, select(M).where(...), ...)
    db.query(M).filter(...).count()     -> await count(db, select(M).where(...))
    db.add(obj); db.commit()            -> await create(db, obj)   (the session commits)
    db.query(M).filter(...).update(v)   -> await update_where(db, M, ..., **v)
    db.query(M).filter(...).delete()    -> await delete_where(db, M, ...)

Helpers flush but never commit: the request's session commits once, after the
endpoint returns, or rolls everything back if it raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Select, delete, func, inspect, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm.interfaces import ORMOption

from gateway.database.reads import read_one
from gateway.errors import not_found

M = TypeVar("M", bound=DeclarativeBase)
S = TypeVar("S", bound=BaseModel)


def entity_name(model: type[DeclarativeBase]) -> str:
    return model.__name__.lower()


async def get_or_404(
    db: AsyncSession, model: type[M], ident: Any, *, options: Sequence[ORMOption] = ()
) -> M:
    """The row with primary key `ident`, or `NotFound` naming the model and key."""
    found = await db.get(model, ident, options=options)
    if found is None:
        raise not_found(entity_name(model), ident)
    return found


async def read_or_404(db: AsyncSession, model: type[M], ident: Any, schema: type[S]) -> S:
    """The row with primary key `ident` as `schema`, read without the ORM; or `NotFound`."""
    found = await read_one(db, model, ident, schema)
    if found is None:
        raise not_found(entity_name(model), ident)
    return found


async def first(db: AsyncSession, statement: Select[M]) -> M | None:
    return (await db.execute(statement.limit(1))).scalars().first()


async def count(db: AsyncSession, statement: Select[Any]) -> int:
    """How many rows `statement` selects (ignoring its order, limit and offset)."""
    counted = select(func.count()).select_from(
        statement.order_by(None).limit(None).offset(None).subquery()
    )
    return int((await db.execute(counted)).scalar_one())


async def list_page(
    db: AsyncSession, statement: Select[M], *, limit: int, offset: int
) -> tuple[list[M], int]:
    """One page of `statement`'s rows and the total number of rows."""
    rows = (await db.execute(statement.limit(limit).offset(offset))).scalars().all()
    return list(rows), await count(db, statement)


async def create(db: AsyncSession, obj: M) -> M:
    """Add `obj` and flush, so constraint errors surface here and generated columns are set."""
    db.add(obj)
    await db.flush()
    return obj


async def update_where(
    db: AsyncSession, model: type[M], *where: ColumnElement[bool], **values: Any
) -> list[M]:
    """Update the matching rows; return them as they are after the update."""
    statement = update(model).where(*where).values(**values).returning(model)
    options = {"populate_existing": True}
    return list((await db.execute(statement, execution_options=options)).scalars().all())


async def delete_where(db: AsyncSession, model: type[M], *where: ColumnElement[bool]) -> int:
    """Delete the matching rows; return how many there were."""
    statement = delete(model).where(*where).returning(*inspect(model).primary_key)
    return len((await db.execute(statement)).all())
