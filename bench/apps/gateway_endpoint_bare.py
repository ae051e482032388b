"""The gateway's async users endpoint, engine and collector tuning in a bare FastAPI app.

No routing table, no metrics, no gates: what is left of the gateway's cost when
the same endpoint code runs on its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from async_routes import users
from bench.apps.common import database_url
from gateway.database.engines import create_async_engine_for
from gateway.ops.gc_tuning import tune_garbage_collector
from gateway.settings import Settings
from shared_models.params import UserId
from shared_models.schemas import UserRead

settings = Settings(database_url=database_url())
engine = create_async_engine_for(settings, database_url())
sessions = async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    restore = tune_garbage_collector(settings)
    yield
    restore()
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


async def session() -> AsyncIterator[AsyncSession]:
    async with sessions() as db:
        yield db
        await db.commit()


@app.get("/users/{user_id}", response_model=UserRead)
async def get_user(
    user_id: UserId, db: Annotated[AsyncSession, Depends(session, scope="function")]
) -> UserRead:
    return await users.get_user(user_id, db)
