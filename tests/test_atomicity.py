"""Real commits and real pools: concurrent orders never oversell, failed requests write nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from demo.app import ASYNC_ROUTERS, LEGACY_ROUTERS, create_demo_app
from demo.settings import DemoSettings
from gateway import AsyncDB, SyncDB
from gateway.database.engines import sync_url
from gateway.database.queries import create
from shared_models.models import User
from tests.conftest import MakeApi
from tests.helpers import assert_error, assert_served_by, serving

pytestmark = pytest.mark.anyio

SCARCE_ITEM = 1
PLENTIFUL_ITEM = 2
SHORT_ITEM = 3
BUYER = 3
LEGACY_FAILURE_EMAIL = "half.written.legacy@example.com"
ASYNC_FAILURE_EMAIL = "half.written.async@example.com"
FAILURE_MESSAGE = "the endpoint failed after its insert"
HALF_WRITTEN = "SELECT count(*) FROM users WHERE email = :email"


@pytest.fixture
def engine(committed_database: str) -> Iterator[Engine]:
    """A connection source of the test's own, outside the app's pools."""
    owned = create_engine(sync_url(committed_database), poolclass=NullPool)
    yield owned
    owned.dispose()


def query_one(engine: Engine, sql: str, **params: object) -> Any:
    with engine.connect() as connection:
        return connection.execute(text(sql), params).scalar()


def execute(engine: Engine, sql: str, **params: object) -> None:
    with engine.begin() as connection:
        connection.execute(text(sql), params)


def stock_of(engine: Engine, item_id: int) -> int:
    return int(query_one(engine, "SELECT stock FROM items WHERE id = :id", id=item_id))


def real_app(
    url: str,
    legacy_routers: list[APIRouter] | None = None,
    async_routers: list[APIRouter] | None = None,
) -> FastAPI:
    settings = DemoSettings(database_url=url, log_level="WARNING")
    return create_demo_app(settings, legacy_routers=legacy_routers, async_routers=async_routers)


def order_body(lines: dict[int, int]) -> dict[str, object]:
    return {
        "user_id": BUYER,
        "lines": [
            {"item_id": item_id, "quantity": quantity} for item_id, quantity in lines.items()
        ],
    }


async def place_concurrently(
    client: httpx.AsyncClient, lines: dict[int, int], requests: int
) -> list[httpx.Response]:
    return await asyncio.gather(
        *(client.post("/orders", json=order_body(lines)) for _ in range(requests))
    )


@pytest.mark.parametrize(
    ("stock", "quantity", "requests"), [(5, 1, 25), (10, 3, 8), (7, 7, 12), (2, 3, 6)]
)
async def test_concurrent_orders_never_oversell(
    committed_database: str, engine: Engine, stock: int, quantity: int, requests: int
) -> None:
    execute(engine, "UPDATE items SET stock = :stock WHERE id = :id", stock=stock, id=SCARCE_ITEM)
    plentiful_before = stock_of(engine, PLENTIFUL_ITEM)
    last_order = query_one(engine, "SELECT max(id) FROM orders")
    assert plentiful_before >= requests
    lines = {SCARCE_ITEM: quantity, PLENTIFUL_ITEM: 1}

    async with serving(real_app(committed_database)) as client:
        responses = await place_concurrently(client, lines, requests)

    winners = stock // quantity
    statuses = [response.status_code for response in responses]
    assert statuses.count(201) == winners, statuses
    assert statuses.count(409) == requests - winners, statuses
    for response in responses:
        assert_served_by(response, "legacy")
        if response.status_code == 409:
            shortage = assert_error(response, 409, "conflict")["shortages"]
            assert shortage == [
                {"item_id": SCARCE_ITEM, "requested": quantity, "available": stock % quantity}
            ]
    assert stock_of(engine, SCARCE_ITEM) == stock - winners * quantity
    assert stock_of(engine, PLENTIFUL_ITEM) == plentiful_before - winners
    new_orders = "SELECT count(*) FROM orders WHERE id > :last"
    assert query_one(engine, new_orders, last=last_order) == winners
    new_lines = (
        "SELECT count(*), coalesce(sum(quantity) FILTER (WHERE item_id = :item), 0) "
        "FROM order_lines WHERE order_id > :last"
    )
    with engine.connect() as connection:
        line_count, scarce_units = connection.execute(
            text(new_lines), {"last": last_order, "item": SCARCE_ITEM}
        ).one()
    assert (line_count, scarce_units) == (winners * len(lines), winners * quantity)


async def test_order_with_a_short_second_line_leaves_the_first_item_alone(
    committed_database: str, engine: Engine
) -> None:
    first_before = stock_of(engine, PLENTIFUL_ITEM)
    execute(engine, "UPDATE items SET stock = 1 WHERE id = :id", id=SHORT_ITEM)
    counts_sql = "SELECT (SELECT count(*) FROM orders) + (SELECT count(*) FROM order_lines)"
    rows_before = query_one(engine, counts_sql)
    body = order_body({PLENTIFUL_ITEM: 2, SHORT_ITEM: 3})

    async with serving(real_app(committed_database)) as client:
        response = await client.post("/orders", json=body)

    details = assert_error(response, 409, "conflict")
    assert [shortage["item_id"] for shortage in details["shortages"]] == [SHORT_ITEM]
    assert stock_of(engine, PLENTIFUL_ITEM) == first_before
    assert stock_of(engine, SHORT_ITEM) == 1
    assert query_one(engine, counts_sql) == rows_before


failing_legacy = APIRouter()
failing_async = APIRouter()


@failing_legacy.post("/failing/legacy")
def insert_then_fail_legacy(db: SyncDB) -> None:
    db.add(User(email=LEGACY_FAILURE_EMAIL, name="Half Written"))
    db.flush()
    raise RuntimeError(FAILURE_MESSAGE)


@failing_async.post("/failing/async")
async def insert_then_fail_async(db: AsyncDB) -> None:
    await create(db, User(email=ASYNC_FAILURE_EMAIL, name="Half Written"))
    raise RuntimeError(FAILURE_MESSAGE)


def assert_internal_error(response: httpx.Response) -> None:
    details = assert_error(response, 500, "internal_error")
    assert details == {}
    for leaked in ("Traceback", "RuntimeError", FAILURE_MESSAGE, "INSERT", "users", "half.written"):
        assert leaked not in response.text


def idle_in_transaction(engine: Engine, database: str) -> int:
    query = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = :database AND state LIKE 'idle in transaction%' "
        "AND application_name <> 'gateway-control'"  # the rollout driver's own, mid-transaction
    )
    return int(query_one(engine, query, database=database))


async def test_internal_error_names_its_implementation(make_api: MakeApi) -> None:
    routers = {"legacy_routers": [failing_legacy], "async_routers": [failing_async]}
    async with make_api(**routers) as api:
        for impl in ("legacy", "async"):
            response = await api.post(f"/failing/{impl}")
            assert_internal_error(response)
            assert_served_by(response, impl)


async def test_failed_requests_write_nothing_and_return_their_connections(
    committed_database: str, engine: Engine
) -> None:
    app = real_app(
        committed_database,
        legacy_routers=[*LEGACY_ROUTERS, failing_legacy],
        async_routers=[*ASYNC_ROUTERS, failing_async],
    )
    database_name = engine.url.database
    assert database_name is not None

    async with serving(app) as client:
        for path in ("/failing/legacy", "/failing/async", "/failing/legacy", "/failing/async"):
            assert_internal_error(await client.post(path))
        assert idle_in_transaction(engine, database_name) == 0
        database = app.state.gateway.database
        assert database.sync_engine.pool.checkedout() == 0
        assert database.async_engine.pool.checkedout() == 0
        for email in (LEGACY_FAILURE_EMAIL, ASYNC_FAILURE_EMAIL):
            assert query_one(engine, HALF_WRITTEN, email=email) == 0
            created = await client.post("/users", json={"email": email, "name": "Whole"})
            assert created.status_code == 201, created.text

    for email in (LEGACY_FAILURE_EMAIL, ASYNC_FAILURE_EMAIL):
        assert query_one(engine, HALF_WRITTEN, email=email) == 1
