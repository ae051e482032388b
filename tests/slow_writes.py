"""The demo plus slow writes, for tests of cut connections and of shutdown.

`POST /slow-users/{n}` (both sides) takes a second in Python; `POST /stuck/legacy/{n}`
and `POST /stuck/async/{n}` wait in SQL until cancelled.

Served as a real process: `gateway serve --app tests.slow_writes:app`.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter
from sqlalchemy import text

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


STUCK_SECONDS = 60  # far longer than any test waits: only a cancellation ends it
stuck = APIRouter(prefix="/stuck")


@stuck.post("/legacy/{n}", status_code=201)
def stuck_legacy(n: int, db: SyncDB) -> dict[str, int]:
    db.add(User(email=f"stuck-legacy-{n}@example.com", name="stuck"))
    db.flush()
    db.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": STUCK_SECONDS})
    return {"n": n}


stuck_async_side = APIRouter(prefix="/stuck")


@stuck_async_side.post("/async/{n}", status_code=201)
async def stuck_async(n: int, db: AsyncDB) -> dict[str, int]:
    await create(db, User(email=f"stuck-async-{n}@example.com", name="stuck"))
    await db.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": STUCK_SECONDS})
    return {"n": n}


app = create_demo_app(
    legacy_routers=[*LEGACY_ROUTERS, legacy, stuck],
    async_routers=[*ASYNC_ROUTERS, migrated, stuck_async_side],
)
