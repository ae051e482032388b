"""The lean path: the ORM's answers in one statement, alone or inside the session's transaction."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

import pytest
from fastapi import APIRouter
from pydantic import BaseModel, model_validator
from sqlalchemy import Engine, Select, create_engine, event, func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.util import LRUCache

from demo.app import create_demo_app
from gateway import AsyncDB
from gateway.database import lean
from gateway.database.engines import async_url, create_async_engine_for, sync_url
from gateway.database.lean import fetch_rows
from gateway.database.queries import create, read_or_404
from gateway.database.reads import read_one, read_page
from gateway.database.sessions import DiscardingSession
from gateway.database.state import gateway_state
from gateway.database.timing import RequestTimes, current_times
from gateway.database.writes import (
    delete_or_404,
    delete_returning,
    insert_returning,
    update_or_404,
    update_returning,
)
from gateway.errors import NotFound, constraint_name
from shared_models.constraints import CONSTRAINT_MESSAGES
from shared_models.models import Item, User
from shared_models.schemas import ItemRead, UserRead
from shared_models.seed import user_row
from tests.conftest import TEST_SIZE, MakeApi
from tests.conftest import test_settings as settings_for
from tests.helpers import IMPL_HEADER, assert_error, error_message, serving

pytestmark = pytest.mark.anyio

S = TypeVar("S", bound=BaseModel)

PAGES = [(5, 0), (5, 5), (5, 10), (1, 11), (100, 0), (5, TEST_SIZE.users), (5, 100)]
USER_STATEMENTS = {
    "all": select(User).order_by(User.id),
    "active": select(User).where(User.is_active.is_(True)).order_by(User.id),
    "inactive": select(User).where(User.is_active.is_(False)).order_by(User.id),
    "search": select(User).where(User.text_matches("HOPPER")).order_by(User.id),
    "search by name": select(User).where(User.text_matches("grace")).order_by(User.name, User.id),
    "nothing": select(User).where(User.text_matches("nobody-here")).order_by(User.id),
}
ITEM_STATEMENTS = {
    "by price": select(Item).order_by(Item.price.desc(), Item.id),
    "in stock": select(Item).where(Item.stock > 100).order_by(Item.id),
    "search": select(Item).where(Item.text_matches("KIT")).order_by(Item.id),
}
LIST_QUERIES = [
    "/users",
    "/users?limit=5&offset=3",
    "/users?limit=5&offset=10",
    "/users?active=true",
    "/users?active=false&limit=1",
    "/users?q=hopper",
    "/users?q=GRACE&limit=1&offset=1",
    "/users?q=nobody-here",
    "/users?offset=100000",
    "/items?limit=4&offset=4",
    "/items?in_stock=true",
    "/items?q=kit",
    "/items?offset=100000",
]
DUPLICATE_EMAIL = CONSTRAINT_MESSAGES["uq_users_email"]


@pytest.fixture
async def shared_db(database_url: str) -> AsyncIterator[AsyncSession]:
    engine = create_async_engine(async_url(database_url), pool_size=1, max_overflow=0)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            yield session
            await session.rollback()
    finally:
        await engine.dispose()


@pytest.fixture
async def engine(committed_database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(
        async_url(committed_database), pool_size=1, max_overflow=0, pool_timeout=5
    )
    yield engine
    await engine.dispose()


@pytest.fixture
async def db(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def observer(committed_database: str) -> Iterator[Engine]:
    """Another connection's view of the committed database."""
    engine = create_engine(sync_url(committed_database), poolclass=NullPool)
    yield engine
    engine.dispose()


class StatementLog:
    """Every statement `engine`'s connections send: asyncpg's own calls and SQLAlchemy's."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.sent: list[str] = []
        event.listen(engine.sync_engine, "connect", self._connected)
        event.listen(engine.sync_engine, "before_cursor_execute", self._executed)

    def _connected(self, dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(self._logged)

    def _logged(self, record: Any) -> None:
        self.sent.append(str(record.query))

    def _executed(self, connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.sent.append(statement)

    async def settled(self) -> list[str]:
        """The commands sent since the last call, by their first word, sorted."""
        await asyncio.sleep(0.05)
        sent, self.sent = self.sent, []
        return sorted(statement.split()[0].rstrip(";").upper() for statement in sent)


class CountedUser(BaseModel):
    id: int
    email: str
    name: str

    validations: ClassVar[int] = 0

    @model_validator(mode="after")
    def _counted(self) -> CountedUser:
        CountedUser.validations += 1
        return self


counted_router = APIRouter()


@counted_router.get("/counted/{user_id}", response_model=CountedUser)
async def read_counted(user_id: int, db: AsyncDB) -> CountedUser:
    return await read_or_404(db, User, user_id, CountedUser)


def checked_out(engine: AsyncEngine) -> int:
    return engine.pool.checkedout()  # type: ignore[attr-defined,no-any-return]


async def backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.scalar(text("SELECT pg_backend_pid()"))) or 0)


async def orm_page(
    db: AsyncSession, statement: Select[Any], schema: type[S], limit: int, offset: int
) -> tuple[list[S], int]:
    """What the ORM answers for the page and the count; the session left without a transaction."""
    loaded = (await db.scalars(statement.limit(limit).offset(offset))).all()
    total = await db.scalar(select(func.count()).select_from(statement.order_by(None).subquery()))
    page = [schema.model_validate(row) for row in loaded]
    await db.rollback()
    return page, int(total or 0)


def stored_user(engine: Engine, user_id: int) -> tuple[Any, ...] | None:
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT email, name, is_active FROM users WHERE id = :id"), {"id": user_id}
        ).first()
    return None if row is None else tuple(row)


def user_without_orders(engine: Engine) -> int:
    with engine.connect() as connection:
        found = connection.scalar(
            text("SELECT min(id) FROM users WHERE id NOT IN (SELECT user_id FROM orders)")
        )
    assert found is not None
    return int(found)


def new_user(tag: str) -> dict[str, Any]:
    return {"email": f"{tag}@example.org", "name": tag.title()}


@pytest.mark.parametrize("statement", USER_STATEMENTS.values(), ids=USER_STATEMENTS.keys())
async def test_user_pages_equal_the_orms(shared_db: AsyncSession, statement: Select[Any]) -> None:
    for limit, offset in PAGES:
        expected = await orm_page(shared_db, statement, UserRead, limit, offset)
        got = await read_page(shared_db, statement, UserRead, limit=limit, offset=offset)
        assert got == expected, (limit, offset)


@pytest.mark.parametrize("statement", ITEM_STATEMENTS.values(), ids=ITEM_STATEMENTS.keys())
async def test_item_pages_equal_the_orms(shared_db: AsyncSession, statement: Select[Any]) -> None:
    for limit, offset in [(4, 0), (4, 4), (100, 0), (4, 100)]:
        expected = await orm_page(shared_db, statement, ItemRead, limit, offset)
        got = await read_page(shared_db, statement, ItemRead, limit=limit, offset=offset)
        assert got == expected, (limit, offset)
        assert [str(item.price) for item in got[0]] == [str(item.price) for item in expected[0]]


async def test_prices_come_back_as_the_decimals_stored(shared_db: AsyncSession) -> None:
    loaded = (await shared_db.scalars(select(Item).order_by(Item.id))).all()
    expected = [str(item.price) for item in loaded]
    await shared_db.rollback()
    rows = await fetch_rows(shared_db, select(Item.price).order_by(Item.id), writes=False)
    assert all(type(row["price"]) is Decimal for row in rows)
    assert [str(row["price"]) for row in rows] == expected
    assert len(rows) == TEST_SIZE.items


async def test_a_page_past_the_end_still_counts(shared_db: AsyncSession) -> None:
    assert await read_page(
        shared_db, select(User).order_by(User.id), UserRead, limit=5, offset=50
    ) == (
        [],
        TEST_SIZE.users,
    )
    empty = select(User).where(User.id > TEST_SIZE.users).order_by(User.id)
    assert await read_page(shared_db, empty, UserRead, limit=5, offset=0) == ([], 0)
    assert await read_page(shared_db, empty, UserRead, limit=5, offset=5) == ([], 0)


async def test_a_shape_is_compiled_once_whatever_its_values(
    shared_db: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    shapes: LRUCache[Any, lean.Shape] = LRUCache(lean.SHAPES_KEPT)
    monkeypatch.setattr(lean, "_shapes", shapes)

    def searching(text: str) -> Select[Any]:
        return select(User).where(User.text_matches(text)).order_by(User.id)

    for search, limit, offset in [("hopper", 2, 0), ("hopper", 2, 2), ("grace", 5, 0)]:
        expected = await orm_page(shared_db, searching(search), UserRead, limit, offset)
        got = await read_page(shared_db, searching(search), UserRead, limit=limit, offset=offset)
        assert got == expected, (search, limit, offset)
    assert len(shapes) == 1
    active = searching("example").where(User.is_active.is_(True))
    expected = await orm_page(shared_db, active, UserRead, 20, 0)
    assert await read_page(shared_db, active, UserRead, limit=20, offset=0) == expected
    assert len(shapes) == 2
    for user_id in (1, 2, 3):
        found = await read_one(shared_db, User, user_id, UserRead)
        assert found is not None and found.email == user_row(user_id)["email"]
    assert len(shapes) == 3


async def test_alone_reads_and_writes_hold_no_transaction_and_commit_at_once(
    db: AsyncSession, engine: AsyncEngine, observer: Engine
) -> None:
    page, total = await read_page(db, select(User).order_by(User.id), UserRead, limit=3, offset=0)
    assert ([user.id for user in page], total) == ([1, 2, 3], TEST_SIZE.users)
    assert not db.in_transaction()
    assert checked_out(engine) == 0
    created = await insert_returning(db, User, new_user("alone"), UserRead)
    assert stored_user(observer, created.id) == ("alone@example.org", "Alone", True)
    assert not db.in_transaction()
    assert checked_out(engine) == 0
    assert created.id > TEST_SIZE.users and created.is_active


async def test_a_lean_insert_inside_a_transaction_is_rolled_back_with_it(
    db: AsyncSession, engine: AsyncEngine, observer: Engine
) -> None:
    await db.begin()
    created = await insert_returning(db, User, new_user("undone"), UserRead)
    assert stored_user(observer, created.id) is None
    await db.rollback()
    assert stored_user(observer, created.id) is None
    assert await read_one(db, User, created.id, UserRead) is None
    assert checked_out(engine) == 0


async def test_an_error_inside_begin_takes_the_lean_insert_back(
    db: AsyncSession, observer: Engine
) -> None:
    created: list[UserRead] = []
    with pytest.raises(RuntimeError):
        async with db.begin():
            created.append(await insert_returning(db, User, new_user("raised"), UserRead))
            raise RuntimeError("the route failed after its write")
    assert stored_user(observer, created[0].id) is None


async def test_a_lean_read_inside_a_transaction_sees_its_lean_writes(
    db: AsyncSession, observer: Engine
) -> None:
    async with db.begin():
        created = await insert_returning(db, User, new_user("joined"), UserRead)
        assert await read_one(db, User, created.id, UserRead) == created
        by_email = select(User).where(User.email == "joined@example.org").order_by(User.id)
        assert await read_page(db, by_email, UserRead, limit=5, offset=0) == ([created], 1)
        renamed = await update_returning(
            db, User, User.id == created.id, values={"name": "Renamed"}, schema=UserRead
        )
        assert await read_one(db, User, created.id, UserRead) == renamed[0]
        assert stored_user(observer, created.id) is None
    assert stored_user(observer, created.id) == ("joined@example.org", "Renamed", True)


async def test_a_shadow_sessions_lean_writes_are_discarded(
    engine: AsyncEngine, observer: Engine
) -> None:
    victim = user_without_orders(observer)
    shadow = AsyncSession(engine, sync_session_class=DiscardingSession, expire_on_commit=False)
    async with shadow:
        created = await insert_returning(shadow, User, new_user("shadow"), UserRead)
        renamed = await update_returning(
            shadow, User, User.id == 3, values={"name": "Shadow Three"}, schema=UserRead
        )
        assert [user.name for user in renamed] == ["Shadow Three"]
        assert await delete_returning(shadow, User, User.id == victim) == 1
        assert await read_one(shadow, User, created.id, UserRead) == created
        await shadow.commit()
    assert stored_user(observer, created.id) is None
    assert stored_user(observer, 3) == (user_row(3)["email"], user_row(3)["name"], True)
    assert stored_user(observer, victim) is not None
    assert checked_out(engine) == 0


async def test_an_alone_write_sends_one_statement_and_the_orm_more(
    db: AsyncSession, engine: AsyncEngine
) -> None:
    log = StatementLog(engine)
    assert await read_one(db, User, 1, UserRead) is not None
    await log.settled()
    created = await insert_returning(db, User, new_user("counted"), UserRead)
    assert await log.settled() == ["INSERT"]
    await update_returning(db, User, User.id == created.id, values={"name": "N"}, schema=UserRead)
    assert await log.settled() == ["UPDATE"]
    assert await delete_returning(db, User, User.id == created.id) == 1
    assert await log.settled() == ["DELETE"]
    await create(db, User(**new_user("through-orm")))
    await db.commit()
    assert await log.settled() == ["BEGIN", "COMMIT", "INSERT"]


async def test_a_taken_email_is_an_integrity_error_and_keeps_the_connection(
    db: AsyncSession, engine: AsyncEngine
) -> None:
    before = await backend_pid(engine)
    with pytest.raises(IntegrityError) as raised:
        await insert_returning(db, User, {"email": user_row(2)["email"], "name": "Twin"}, UserRead)
    assert constraint_name(raised.value) == "uq_users_email"
    assert checked_out(engine) == 0
    assert not db.in_transaction()
    assert await read_one(db, User, 2, UserRead) is not None
    assert await backend_pid(engine) == before
    with pytest.raises(IntegrityError) as again:
        await update_returning(
            db, User, User.id == 3, values={"email": user_row(4)["email"]}, schema=UserRead
        )
    assert constraint_name(again.value) == "uq_users_email"
    assert await backend_pid(engine) == before


async def test_a_check_violation_is_an_integrity_error_naming_the_check(
    db: AsyncSession, engine: AsyncEngine, observer: Engine
) -> None:
    values = {"sku": "SKU-NEG", "name": "Negative", "price": Decimal("1.00"), "stock": -1}
    with pytest.raises(IntegrityError) as raised:
        await insert_returning(db, Item, values, ItemRead)
    assert constraint_name(raised.value) == "ck_items_stock_not_negative"
    assert checked_out(engine) == 0
    with observer.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM items WHERE sku = 'SKU-NEG'")) == 0


async def test_an_update_with_nothing_to_set_is_refused(db: AsyncSession) -> None:
    with pytest.raises(ValueError, match="at least one value"):
        await update_returning(db, User, User.id == 1, values={}, schema=UserRead)


async def test_a_write_on_a_lost_connection_is_a_database_error_and_discards_it(
    db: AsyncSession, engine: AsyncEngine, observer: Engine
) -> None:
    victim = await backend_pid(engine)
    with observer.begin() as other:
        other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": victim})
    await asyncio.sleep(0.1)
    with pytest.raises(DBAPIError) as raised:
        await insert_returning(db, User, new_user("lost"), UserRead)
    assert raised.value.connection_invalidated
    assert checked_out(engine) == 0
    with observer.connect() as connection:
        lost = connection.scalar(
            text("SELECT count(*) FROM users WHERE email = 'lost@example.org'")
        )
    assert lost == 0
    created = await insert_returning(db, User, new_user("found"), UserRead)
    assert stored_user(observer, created.id) == ("found@example.org", "Found", True)
    assert await backend_pid(engine) != victim


async def test_insert_returning_answers_the_row_as_stored(db: AsyncSession) -> None:
    user = await insert_returning(db, User, new_user("defaults"), UserRead)
    assert user.is_active is True
    assert user.created_at.tzinfo is not None
    values = {"sku": "SKU-CENTS", "name": "Cents", "price": Decimal("1.5"), "stock": 0}
    item = await insert_returning(db, Item, values, ItemRead)
    assert type(item.price) is Decimal and str(item.price) == "1.50"
    assert await read_one(db, Item, item.id, ItemRead) == item


async def test_update_returning_answers_the_rows_as_updated(
    db: AsyncSession, observer: Engine
) -> None:
    last_two = User.id > TEST_SIZE.users - 2
    updated = await update_returning(
        db, User, last_two, values={"name": "Renamed"}, schema=UserRead
    )
    assert sorted((user.id, user.name, user.email) for user in updated) == [
        (n, "Renamed", user_row(n)["email"]) for n in (TEST_SIZE.users - 1, TEST_SIZE.users)
    ]
    for user in updated:
        assert await read_one(db, User, user.id, UserRead) == user
        assert stored_user(observer, user.id) == (user.email, "Renamed", user.is_active)
    nobody = User.id > TEST_SIZE.users
    assert await update_returning(db, User, nobody, values={"name": "X"}, schema=UserRead) == []


async def test_a_write_that_cannot_run_alone_still_commits_when_it_returns(
    db: AsyncSession, observer: Engine
) -> None:
    renamed = await update_returning(
        db, User, User.id.in_([3, 4]), values={"name": "In List"}, schema=UserRead
    )
    assert sorted(user.id for user in renamed) == [3, 4]
    assert stored_user(observer, 3) == (user_row(3)["email"], "In List", True)
    assert stored_user(observer, 4) == (user_row(4)["email"], "In List", True)


async def test_delete_returning_counts_the_deleted_rows(db: AsyncSession, observer: Engine) -> None:
    victim = user_without_orders(observer)
    assert await delete_returning(db, User, User.id == victim) == 1
    assert stored_user(observer, victim) is None
    assert await delete_returning(db, User, User.id == victim) == 0
    for tag in ("gone-1", "gone-2"):
        await insert_returning(db, User, new_user(tag), UserRead)
    assert await delete_returning(db, User, User.email.startswith("gone-")) == 2
    assert await delete_returning(db, User, User.id > 10**6) == 0


async def test_users_over_http_are_written_alone_and_committed(
    committed_database: str, observer: Engine
) -> None:
    app = create_demo_app(settings_for(committed_database, default_mode="async"))
    async with serving(app) as client:
        transactions: list[object] = []
        engine = gateway_state(app).database.async_engine.sync_engine
        event.listen(engine, "begin", transactions.append)
        created = await client.post("/users", json={"email": "http@example.org", "name": "Http"})
        assert created.status_code == 201, created.text
        assert created.headers[IMPL_HEADER] == "async"
        user = created.json()
        assert user["is_active"] is True
        assert stored_user(observer, user["id"]) == ("http@example.org", "Http", True)
        patched = await client.patch(f"/users/{user['id']}", json={"name": "Renamed"})
        assert patched.status_code == 200, patched.text
        assert patched.json() == {**user, "name": "Renamed"}
        assert stored_user(observer, user["id"]) == ("http@example.org", "Renamed", True)
        assert (await client.get(f"/users/{user['id']}")).json() == patched.json()
        deleted = await client.delete(f"/users/{user['id']}")
        assert deleted.status_code == 204
        assert stored_user(observer, user["id"]) is None
        assert_error(await client.get(f"/users/{user['id']}"), 404, "not_found")
        assert gateway_state(app).database.checked_out() == 0
        assert transactions == []


async def test_a_taken_email_over_http_is_409_and_returns_the_connection(
    committed_database: str,
) -> None:
    app = create_demo_app(settings_for(committed_database, default_mode="async"))
    async with serving(app) as client:
        response = await client.post("/users", json={"email": user_row(2)["email"], "name": "Twin"})
        details = assert_error(response, 409, "conflict")
        assert error_message(response) == DUPLICATE_EMAIL
        assert details == {"constraint": "uq_users_email"}
        assert gateway_state(app).database.checked_out() == 0
        patched = await client.patch("/users/4", json={"email": user_row(5)["email"]})
        assert_error(patched, 409, "conflict")
        assert gateway_state(app).database.checked_out() == 0
        assert (await client.get("/users/4")).json()["email"] == user_row(4)["email"]


async def test_list_pages_over_http_equal_the_legacy_ones(committed_database: str) -> None:
    legacy = create_demo_app(settings_for(committed_database, default_mode="legacy"))
    migrated = create_demo_app(settings_for(committed_database, default_mode="async"))
    async with serving(legacy) as old, serving(migrated) as new:
        for query in LIST_QUERIES:
            expected, got = await old.get(query), await new.get(query)
            assert expected.status_code == got.status_code == 200, query
            assert (expected.headers[IMPL_HEADER], got.headers[IMPL_HEADER]) == ("legacy", "async")
            assert got.json() == expected.json(), query


async def test_a_returned_schema_is_not_validated_again(
    make_api: MakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CountedUser, "validations", 0)
    async with make_api(impl="async", async_routers=[counted_router]) as api:
        response = await api.get("/counted/3")
        assert response.status_code == 200, response.text
        assert response.json() == {
            "id": 3,
            "email": user_row(3)["email"],
            "name": user_row(3)["name"],
        }
        assert CountedUser.validations == 1
        documented = (await api.get("/openapi.json")).json()
    answer = documented["paths"]["/counted/{user_id}"]["get"]["responses"]["200"]
    assert answer["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CountedUser"
    }


async def prepared_statements_kept(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        kept = await connection.scalar(
            text(
                "SELECT count(*) FROM pg_prepared_statements "
                "WHERE statement NOT LIKE '%pg_prepared_statements%'"
            )
        )
    return int(kept or 0)


@pytest.mark.parametrize("prepared", [False, True], ids=["off", "on"])
async def test_prepared_statements_off_leaves_none_on_the_connection(
    committed_database: str, prepared: bool
) -> None:
    settings = settings_for(
        committed_database,
        prepared_statements=prepared,
        async_pool_size=1,
        async_max_overflow=0,
    )
    engine = create_async_engine_for(settings, committed_database)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as db:
            for _ in range(2):
                found = await read_one(db, User, 1, UserRead)
                assert found is not None and found.email == user_row(1)["email"]
                page, total = await read_page(
                    db, select(User).order_by(User.id), UserRead, limit=2, offset=1
                )
                assert ([user.id for user in page], total) == ([2, 3], TEST_SIZE.users)
            created = await insert_returning(db, User, new_user("unprepared"), UserRead)
            renamed = await update_returning(
                db, User, User.id == created.id, values={"name": "Renamed"}, schema=UserRead
            )
            assert [user.name for user in renamed] == ["Renamed"]
            assert await delete_returning(db, User, User.id == created.id) == 1
            orm_user = await db.get(User, 2)
            assert orm_user is not None and orm_user.email == user_row(2)["email"]
            await db.rollback()
        kept = await prepared_statements_kept(engine)
        assert checked_out(engine) == 0
    finally:
        await engine.dispose()
    if prepared:
        assert kept > 0
    else:
        assert kept == 0


async def test_writes_by_key_answer_the_row_or_not_found(
    db: AsyncSession, observer: Engine
) -> None:
    victim = user_without_orders(observer)
    renamed = await update_or_404(db, User, victim, {"name": "By Key"}, UserRead)
    assert (renamed.id, renamed.name) == (victim, "By Key")
    assert stored_user(observer, victim) == (user_row(victim)["email"], "By Key", True)
    with pytest.raises(ValueError, match="at least one value"):
        await update_or_404(db, User, victim, {}, UserRead)
    await delete_or_404(db, User, victim)
    assert stored_user(observer, victim) is None
    with pytest.raises(NotFound, match=f"user {victim} not found"):
        await update_or_404(db, User, victim, {"name": "Gone"}, UserRead)
    with pytest.raises(NotFound, match=f"user {victim} not found"):
        await delete_or_404(db, User, victim)
    assert not db.in_transaction()


async def test_every_lean_statement_counts_its_database_time(
    db: AsyncSession, observer: Engine
) -> None:
    times = RequestTimes()
    token = current_times.set(times)
    try:
        seen = [times.db_seconds]
        await read_page(db, select(User).order_by(User.id), UserRead, limit=5, offset=0)
        seen.append(times.db_seconds)
        created = await insert_returning(db, User, new_user("timed"), UserRead)
        seen.append(times.db_seconds)
        await update_or_404(db, User, created.id, {"name": "Timed"}, UserRead)
        seen.append(times.db_seconds)
        await delete_or_404(db, User, created.id)
        seen.append(times.db_seconds)
    finally:
        current_times.reset(token)
    assert all(later > earlier for earlier, later in itertools.pairwise(seen))
    assert seen[-1] < 5
