"""Slow database, async: the same 100 ms lookup on an AsyncConnection, 100-connection pool."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.apps.common import USER_COLUMNS, asyncpg_url
from shared_models.schemas import UserRead

SLOW_LOOKUP = text(f"SELECT {USER_COLUMNS} FROM users, pg_sleep(0.1) AS pause WHERE id = :id")
engine = create_async_engine(asyncpg_url(), pool_size=100, max_overflow=0, pool_timeout=60)
app = FastAPI()


@app.get("/users/{user_id}", response_model=UserRead)
async def get_user(user_id: int) -> object:
    async with engine.connect() as connection:
        row = (await connection.execute(SLOW_LOOKUP, {"id": user_id})).mappings().first()
    if row is None:
        raise HTTPException(status_code=404, detail="User not found")
    return dict(row)
