"""Lean reads: same answers as the ORM, one pooled connection, nothing leaked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pydantic import BaseModel
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from gateway.database.engines import async_url
from gateway.database.queries import read_or_404
from gateway.database.reads import UnreadableSchema, read_one
from gateway.database.timing import RequestTimes, current_times
from gateway.errors import NotFound
from shared_models.models import Item, User
from shared_models.schemas import ItemRead, UserRead
from tests.conftest import TEST_SIZE

pytestmark = pytest.mark.anyio


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(async_url(database_url), pool_size=2, max_overflow=0)
    yield engine
    await engine.dispose()


@pytest.fixture
async def db(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(engine, expire_on_commit=False) as session:
        yield session
        await session.rollback()


def checked_out(engine: AsyncEngine) -> int:
    return engine.pool.checkedout()  # type: ignore[attr-defined,no-any-return]


async def backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.scalar(text("SELECT pg_backend_pid()"))) or 0)


async def test_reads_what_the_orm_loads(db: AsyncSession, engine: AsyncEngine) -> None:
    for user_id in range(1, TEST_SIZE.users + 1):
        expected = UserRead.model_validate(await db.get(User, user_id))
        await db.rollback()
        assert await read_one(db, User, user_id, UserRead) == expected
    for item_id in range(1, TEST_SIZE.items + 1):
        expected_item = ItemRead.model_validate(await db.get(Item, item_id))
        await db.rollback()
        assert await read_one(db, Item, item_id, ItemRead) == expected_item


async def test_reads_outside_any_transaction_and_returns_the_connection(
    db: AsyncSession, engine: AsyncEngine
) -> None:
    found = await read_one(db, User, 3, UserRead)
    assert found is not None and found.id == 3
    assert not db.in_transaction()
    assert checked_out(engine) == 0


async def test_missing_row_is_none_and_not_found_names_it(db: AsyncSession) -> None:
    assert await read_one(db, User, TEST_SIZE.users + 100, UserRead) is None
    with pytest.raises(NotFound) as raised:
        await read_or_404(db, User, TEST_SIZE.users + 100, UserRead)
    assert raised.value.message == f"user {TEST_SIZE.users + 100} not found"


async def test_inside_a_transaction_it_sees_the_transactions_own_writes(
    db: AsyncSession, engine: AsyncEngine
) -> None:
    user = User(email="unsaved@example.com", name="Not Yet Committed")
    db.add(user)
    await db.flush()
    found = await read_one(db, User, user.id, UserRead)
    assert found is not None and found.email == "unsaved@example.com"
    assert checked_out(engine) == 1  # only the session's own connection


async def test_a_schema_field_without_a_column_is_refused_by_name(db: AsyncSession) -> None:
    class UserWithOrders(BaseModel):
        id: int
        order_count: int

    with pytest.raises(UnreadableSchema, match="order_count"):
        await read_one(db, User, 1, UserWithOrders)


async def test_a_lost_connection_is_discarded_and_the_error_is_a_database_error(
    engine: AsyncEngine, db: AsyncSession, sync_engine: Engine
) -> None:
    victim = await backend_pid(engine)  # the connection the pool hands out next
    with sync_engine.begin() as other:
        other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": victim})
    await asyncio.sleep(0.1)
    with pytest.raises(DBAPIError) as raised:
        await read_one(db, User, 1, UserRead)
    assert raised.value.connection_invalidated
    assert checked_out(engine) == 0
    assert await read_one(db, User, 1, UserRead) is not None  # a fresh connection


async def test_a_cancelled_read_gives_its_connection_back(
    engine: AsyncEngine, db: AsyncSession
) -> None:
    async with engine.connect() as locker:
        await locker.execute(text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
        reading = asyncio.ensure_future(read_one(db, User, 1, UserRead))
        await asyncio.sleep(0.3)
        assert not reading.done()  # waits for the lock
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        assert checked_out(engine) == 1  # only the locker
        await locker.rollback()
    assert await read_one(db, User, 1, UserRead) is not None


async def test_database_time_is_counted_for_the_request(db: AsyncSession) -> None:
    stats = RequestTimes()
    token = current_times.set(stats)
    try:
        await read_one(db, User, 1, UserRead)
    finally:
        current_times.reset(token)
    assert 0 < stats.db_seconds < 5
