"""Ceiling: bare Starlette on a raw asyncpg pool, one prepared lookup, no ORM, no validation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.apps.common import USER_COLUMNS, database_url

QUERY = f"SELECT {USER_COLUMNS} FROM users WHERE id = $1"
POOL: dict[str, Any] = {}


async def get_user(request: Request) -> JSONResponse:
    user_id = int(request.path_params["user_id"])
    async with POOL["pool"].acquire() as connection:
        row = await connection.fetchrow(QUERY, user_id)
    if row is None:
        return JSONResponse({"detail": "User not found"}, status_code=404)
    return JSONResponse(
        {
            "id": row["id"],
            "email": row["email"],
            "name": row["name"],
            "is_active": row["is_active"],
            "created_at": row["created_at"].isoformat(),
        }
    )


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    POOL["pool"] = await asyncpg.create_pool(database_url(), min_size=40, max_size=40)
    try:
        yield
    finally:
        await POOL.pop("pool").close()


app = Starlette(routes=[Route("/users/{user_id:int}", get_user)], lifespan=lifespan)
