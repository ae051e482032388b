"""Async query helpers that keep a migrated route as short as the legacy code it replaces.

Each helper is one idiom of the translation table (see README). The lean ones
run one Core statement straight on asyncpg and answer the response schema
(see `gateway.database.lean`); the ORM ones load or change objects through the
session, for what the lean ones do not cover (relationships, ORM events,
objects the route goes on working with):

    legacy (Session)                          migrated (AsyncSession)                      path
    db.query(M).get(id) or 404                await get_or_404(db, M, id)                  ORM
    ... only to answer it as schema S         await read_or_404(db, M, id, S)              lean
                                              or read_one(...), None when there is no row
    q.order_by(..).limit(n).offset(k).all()   await read_page(db, select(M).where(..)      lean
      and q.count()                             .order_by(..), S, limit=n, offset=k)
    db.query(M).filter(...).all()             await list_page(db, select(M).where(...))    ORM
    db.query(M).filter(...).count()           await count(db, select(M).where(...))        ORM
    db.add(M(**v)); db.commit()               await insert_returning(db, M, v, S)          lean
    db.add(obj); db.commit()                  await create(db, obj)                        ORM
    q.filter(M.id == id).update(v); commit    await update_or_404(db, M, id, v, S)         lean
    q.filter(...).update(v); db.commit()      await update_returning(db, M, ..., values=v, lean
                                                schema=S)
    q.filter(...).update(v)                   await update_where(db, M, ..., **v)          ORM
    q.filter(M.id == id).delete(); commit     await delete_or_404(db, M, id)               lean
    q.filter(...).delete(); db.commit()       await delete_returning(db, M, ...)           lean
    q.filter(...).delete()                    await delete_where(db, M, ...)               ORM

ORM helpers flush but never commit: the request's session commits once, after
the endpoint returns, or rolls everything back if it raises. A lean write
outside a transaction is its own transaction and commits when it returns (one
round trip); several writes that must succeed together go inside
`async with db.begin():`, where every helper joins the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Select, delete, func, inspect, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm.interfaces import ORMOption

from gateway.database.reads import entity_name, read_one, read_page
from gateway.database.writes import (
    delete_or_404,
    delete_returning,
    insert_returning,
    update_or_404,
    update_returning,
)
from gateway.errors import not_found

__all__ = [
    "count",
    "create",
    "delete_or_404",
    "delete_returning",
    "delete_where",
    "first",
    "get_or_404",
    "insert_returning",
    "list_page",
    "read_one",
    "read_or_404",
    "read_page",
    "update_or_404",
    "update_returning",
    "update_where",
]

M = TypeVar("M", bound=DeclarativeBase)
S = TypeVar("S", bound=BaseModel)


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
