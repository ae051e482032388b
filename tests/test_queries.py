"""The async query helpers (gateway.database.queries) on an AsyncSession whose work rolls back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from gateway.database.engines import async_url
from gateway.database.queries import (
    count,
    create,
    delete_where,
    first,
    get_or_404,
    list_page,
    update_where,
)
from gateway.errors import NotFound, constraint_name
from shared_models.models import Item, User
from shared_models.seed import item_row, user_row
from tests.conftest import TEST_SIZE

pytestmark = pytest.mark.anyio

INACTIVE_USERS = [n for n in range(1, TEST_SIZE.users + 1) if not user_row(n)["is_active"]]


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[AsyncSession]:
    engine = create_async_engine(async_url(database_url), poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            transaction = await connection.begin()
            session = AsyncSession(bind=connection, join_transaction_mode="create_savepoint")
            try:
                yield session
            finally:
                await session.close()
                await transaction.rollback()
    finally:
        await engine.dispose()


async def user_names(db: AsyncSession, *ids: int) -> list[str]:
    statement = select(User.name).where(User.id.in_(ids)).order_by(User.id)
    return list((await db.execute(statement)).scalars())


async def new_users(db: AsyncSession, *emails: str) -> list[User]:
    return [await create(db, User(email=email, name="Temp")) for email in emails]


async def test_get_or_404_finds_the_row(db: AsyncSession) -> None:
    user = await get_or_404(db, User, 3)
    assert (user.id, user.email, user.name) == (3, user_row(3)["email"], user_row(3)["name"])


async def test_get_or_404_names_model_and_key(db: AsyncSession) -> None:
    with pytest.raises(NotFound) as raised:
        await get_or_404(db, User, 99)
    assert str(raised.value) == "user 99 not found"
    assert (raised.value.status_code, raised.value.details) == (404, {"entity": "user", "id": 99})


async def test_first_takes_the_first_row_in_order(db: AsyncSession) -> None:
    last = await first(db, select(User).order_by(User.id.desc()))
    assert last is not None and last.id == TEST_SIZE.users
    item = await first(db, select(Item).where(Item.sku == item_row(4)["sku"]))
    assert item is not None and item.id == 4


async def test_first_is_none_when_nothing_matches(db: AsyncSession) -> None:
    assert await first(db, select(User).where(User.id > TEST_SIZE.users)) is None


async def test_count_counts_matching_rows(db: AsyncSession) -> None:
    assert await count(db, select(User)) == TEST_SIZE.users
    assert await count(db, select(User).where(User.is_active.is_(False))) == len(INACTIVE_USERS)


async def test_count_ignores_order_limit_and_offset(db: AsyncSession) -> None:
    paged = select(User).order_by(User.email.desc()).limit(2).offset(3)
    assert await count(db, paged) == TEST_SIZE.users


async def test_list_page_gives_one_page_and_the_total(db: AsyncSession) -> None:
    rows, total = await list_page(db, select(User).order_by(User.id), limit=5, offset=10)
    assert [user.id for user in rows] == list(range(11, TEST_SIZE.users + 1))
    assert total == TEST_SIZE.users


async def test_list_page_total_follows_the_filter(db: AsyncSession) -> None:
    active = select(User).where(User.is_active.is_(True)).order_by(User.id)
    rows, total = await list_page(db, active, limit=3, offset=0)
    expected = [n for n in range(1, TEST_SIZE.users + 1) if n not in INACTIVE_USERS][:3]
    assert ([user.id for user in rows], total) == (expected, TEST_SIZE.users - len(INACTIVE_USERS))


async def test_list_page_past_the_end_is_empty_with_the_total(db: AsyncSession) -> None:
    assert await list_page(db, select(Item).order_by(Item.id), limit=5, offset=100) == (
        [],
        TEST_SIZE.items,
    )


async def test_create_flushes_and_assigns_generated_columns(db: AsyncSession) -> None:
    user = await create(db, User(email="created@example.com", name="Created"))
    assert user.id is not None and user.id > TEST_SIZE.users
    assert user.created_at is not None
    stored = await db.scalar(select(func.count()).select_from(User).where(User.id == user.id))
    assert stored == 1


async def test_create_surfaces_a_violated_constraint(db: AsyncSession) -> None:
    with pytest.raises(IntegrityError) as raised:
        await create(db, User(email=str(user_row(1)["email"]), name="Copy"))
    assert constraint_name(raised.value) == "uq_users_email"


async def test_update_where_returns_rows_with_their_new_values(db: AsyncSession) -> None:
    loaded = await get_or_404(db, User, 2)
    updated = await update_where(db, User, User.id.in_([2, 3]), name="Renamed", is_active=False)
    assert sorted((u.id, u.name, u.is_active) for u in updated) == [
        (2, "Renamed", False),
        (3, "Renamed", False),
    ]
    assert loaded.name == "Renamed"
    assert await user_names(db, 2, 3) == ["Renamed", "Renamed"]
    assert await user_names(db, 4) == [user_row(4)["name"]]


async def test_update_where_matching_nothing_is_empty(db: AsyncSession) -> None:
    assert await update_where(db, User, User.id == 99, name="Ghost") == []
    assert await count(db, select(User).where(User.name == "Ghost")) == 0


async def test_delete_where_counts_deleted_rows(db: AsyncSession) -> None:
    await new_users(db, "gone1@example.com", "gone2@example.com", "kept@example.com")
    deleted = await delete_where(db, User, User.email.like("gone%"))
    assert deleted == 2
    assert await count(db, select(User).where(User.email.like("gone%"))) == 0
    assert await count(db, select(User).where(User.email == "kept@example.com")) == 1


async def test_delete_where_matching_nothing_is_zero(db: AsyncSession) -> None:
    assert await delete_where(db, User, User.id == 99) == 0
    assert await count(db, select(User)) == TEST_SIZE.users
