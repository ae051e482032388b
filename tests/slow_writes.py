"""The demo plus a slow write on each side, `POST /slow-users/{n}`, for tests of cut connections.

Served as a real process: `gateway serve --app tests.slow_writes:app`.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter

from demo.app import ASYNC_ROUTERS, LEGACY_ROUTERS, create_demo_app
from gateway import AsyncDB, SyncDB
from gateway.database.queries import create
from shared_models.models import User

SLOW_SECONDS = 1.0
legacy, migrated = APIRouter(), APIRouter()


@legacy.post("/slow-users/{n}", status_code=201)
def create_slowly(n: int, db: SyncDB) -> dict[str, int]:
    db.add(User(email=f"slow-legacy-{n}@example.com", name="slow"))
    db.flush()
    time.sleep(SLOW_SECONDS)
    return {"n": n}


@migrated.post("/slow-users/{n}", status_code=201)
async def create_slowly_async(n: int, db: AsyncDB) -> dict[str, int]:
    await create(db, User(email=f"slow-async-{n}@example.com", name="slow"))
    await asyncio.sleep(SLOW_SECONDS)
    return {"n": n}


app = create_demo_app(
    legacy_routers=[*LEGACY_ROUTERS, legacy], async_routers=[*ASYNC_ROUTERS, migrated]
)
