"""The gateway's async users endpoint and engine in a bare FastAPI app: no routing, no metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from async_routes import users
from bench.apps.common import database_url
from gateway.database import create_async_engine_for
from gateway.settings import Settings
from shared_models.params import UserId
from shared_models.schemas import UserRead

engine = create_async_engine_for(Settings(database_url=database_url()), database_url())
sessions = async_sessionmaker(engine, expire_on_commit=False)
app = FastAPI()


async def session() -> AsyncIterator[AsyncSession]:
    async with sessions() as db:
        yield db
        await db.commit()


@app.get("/users/{user_id}", response_model=UserRead)
async def get_user(
    user_id: UserId, db: Annotated[AsyncSession, Depends(session, scope="function")]
) -> UserRead:
    return await users.get_user(user_id, db)
