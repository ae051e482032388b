"""Session lifetime on a real app and real pools: commit, rollback, connection return, threads."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import anyio
import httpx
import psycopg
import pytest
from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, Request
from sqlalchemy import event, make_url, select
from sqlalchemy.pool import Pool, QueuePool

from demo.app import create_demo_app
from demo.settings import DemoSettings
from gateway import AsyncDB, SyncDB, not_found
from gateway.database.engines import Database
from gateway.database.sessions import provide_async_session, provide_sync_session
from gateway.database.state import gateway_state
from shared_models.models import User
from shared_models.seed import user_row

pytestmark = pytest.mark.anyio

Outcome = Literal["ok", "fail", "missing", "conflict"]
WORLDS = ("legacy", "async")
TAKEN_EMAIL = str(user_row(1)["email"])


@dataclass
class Records:
    """What the probe endpoints and background tasks saw."""

    in_endpoint: dict[str, int] = field(default_factory=dict)
    after_response: dict[str, int] = field(default_factory=dict)
    endpoint_threads: list[int] = field(default_factory=list)


def in_use(pool: Pool) -> int:
    assert isinstance(pool, QueuePool)
    return pool.checkedout()


def checked_out(database: Database) -> dict[str, int]:
    return {
        "sync": in_use(database.sync_engine.pool),
        "async": in_use(database.async_engine.sync_engine.pool),
    }


def write_users(email: str, outcome: Outcome) -> list[User]:
    users = [User(email=email, name="Probe")]
    if outcome == "conflict":
        users.append(User(email=TAKEN_EMAIL, name="Copy"))
    return users


def fail_after_write(email: str, outcome: Outcome) -> None:
    if outcome == "fail":
        raise RuntimeError(f"failed after writing {email}")
    if outcome == "missing":
        raise not_found("thing", email)


def probe_routers(records: Records) -> tuple[APIRouter, APIRouter]:
    legacy, migrated = APIRouter(prefix="/probe/legacy"), APIRouter(prefix="/probe/async")

    async def record_after_response(database: Database) -> None:
        records.after_response = checked_out(database)

    @legacy.post("/users")
    def write_legacy(email: str, outcome: Outcome, db: SyncDB) -> dict[str, str]:
        db.add_all(write_users(email, outcome))
        if outcome in {"fail", "missing"}:
            db.flush()
        fail_after_write(email, outcome)
        return {"email": email}

    @migrated.post("/users")
    async def write_async(email: str, outcome: Outcome, db: AsyncDB) -> dict[str, str]:
        db.add_all(write_users(email, outcome))
        if outcome in {"fail", "missing"}:
            await db.flush()
        fail_after_write(email, outcome)
        return {"email": email}

    @legacy.get("/pool")
    def pool_legacy(request: Request, background: BackgroundTasks, db: SyncDB) -> dict[str, int]:
        records.endpoint_threads.append(threading.get_ident())
        database = gateway_state(request.app).database
        db.execute(select(User.id).limit(1))
        records.in_endpoint = checked_out(database)
        background.add_task(record_after_response, database)
        return records.in_endpoint

    @migrated.get("/pool")
    async def pool_async(
        request: Request, background: BackgroundTasks, db: AsyncDB
    ) -> dict[str, int]:
        database = gateway_state(request.app).database
        await db.execute(select(User.id).limit(1))
        records.in_endpoint = checked_out(database)
        background.add_task(record_after_response, database)
        return records.in_endpoint

    add_same_session_probes(legacy, migrated)
    return legacy, migrated


def sync_session_id(db: SyncDB) -> int:
    return id(db)


async def async_session_id(db: AsyncDB) -> int:
    return id(db)


def add_same_session_probes(legacy: APIRouter, migrated: APIRouter) -> None:
    @legacy.get("/same")
    def same_legacy(db: SyncDB, seen: Annotated[int, Depends(sync_session_id)]) -> bool:
        return id(db) == seen

    @migrated.get("/same")
    async def same_async(db: AsyncDB, seen: Annotated[int, Depends(async_session_id)]) -> bool:
        return id(db) == seen


@dataclass
class RunningApp:
    app: FastAPI
    client: httpx.AsyncClient
    records: Records
    url: str

    @property
    def database(self) -> Database:
        return gateway_state(self.app).database


@asynccontextmanager
async def running_app(url: str) -> AsyncIterator[RunningApp]:
    records = Records()
    legacy, migrated = probe_routers(records)
    settings = DemoSettings(database_url=url, log_level="WARNING")
    app = create_demo_app(settings, legacy_routers=[legacy], async_routers=[migrated])
    limiter = anyio.to_thread.current_default_thread_limiter()
    tokens = limiter.total_tokens
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                yield RunningApp(app, client, records, url)
    finally:
        limiter.total_tokens = tokens


@pytest.fixture
async def gateway(committed_database: str) -> AsyncIterator[RunningApp]:
    async with running_app(committed_database) as running:
        yield running


def fresh_rows(url: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    """Rows read on a new connection, outside the app: only committed data is visible."""
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        return connection.execute(query, params).fetchall()


def stored_emails(url: str, pattern: str) -> list[str]:
    rows = fresh_rows(url, "SELECT email FROM users WHERE email LIKE %s ORDER BY email", pattern)
    return [str(row[0]) for row in rows]


async def write(gateway: RunningApp, world: str, email: str, outcome: Outcome) -> httpx.Response:
    params = {"email": email, "outcome": outcome}
    return await gateway.client.post(f"/probe/{world}/users", params=params)


@pytest.mark.parametrize("world", WORLDS)
async def test_successful_request_commits(gateway: RunningApp, world: str) -> None:
    response = await write(gateway, world, f"kept@{world}.test", "ok")
    assert response.status_code == 200, response.text
    assert response.headers["x-gateway-impl"] == world
    assert stored_emails(gateway.url, f"%@{world}.test") == [f"kept@{world}.test"]


@pytest.mark.parametrize(
    ("outcome", "status"), [("fail", 500), ("missing", 404), ("conflict", 409)]
)
@pytest.mark.parametrize("world", WORLDS)
async def test_request_that_raises_after_writing_leaves_nothing(
    gateway: RunningApp, world: str, outcome: Outcome, status: int
) -> None:
    response = await write(gateway, world, f"lost@{world}.test", outcome)
    assert response.status_code == status, response.text
    assert stored_emails(gateway.url, f"%@{world}.test") == []
    assert stored_emails(gateway.url, TAKEN_EMAIL) == [TAKEN_EMAIL]


@pytest.mark.parametrize("world", WORLDS)
async def test_connection_is_back_in_the_pool_before_the_response_is_sent(
    gateway: RunningApp, world: str
) -> None:
    response = await gateway.client.get(f"/probe/{world}/pool")
    assert response.status_code == 200, response.text
    held = {"legacy": {"sync": 1, "async": 0}, "async": {"sync": 0, "async": 1}}[world]
    assert gateway.records.in_endpoint == held
    assert gateway.records.after_response == {"sync": 0, "async": 0}


async def test_legacy_session_lives_in_the_endpoint_thread(gateway: RunningApp) -> None:
    checkouts: list[int] = []
    checkins: list[int] = []
    engine = gateway.database.sync_engine
    event.listen(engine, "checkout", lambda *_: checkouts.append(threading.get_ident()))
    event.listen(engine, "checkin", lambda *_: checkins.append(threading.get_ident()))
    response = await gateway.client.get("/probe/legacy/pool")
    assert response.status_code == 200, response.text
    (endpoint_thread,) = gateway.records.endpoint_threads
    assert endpoint_thread != threading.get_ident()
    assert (checkouts, checkins) == ([endpoint_thread], [endpoint_thread])


async def test_no_connection_is_left_idle_in_transaction(gateway: RunningApp) -> None:
    outcomes: list[Outcome] = ["ok", "fail", "missing", "conflict"]
    async with anyio.create_task_group() as group:
        for world in WORLDS:
            for round_number in range(3):
                for outcome in outcomes:
                    email = f"{outcome}{round_number}@{world}.mix"
                    group.start_soon(write, gateway, world, email, outcome)
            group.start_soon(gateway.client.get, f"/probe/{world}/pool")
    states = fresh_rows(
        gateway.url,
        "SELECT application_name, state FROM pg_stat_activity "
        "WHERE datname = current_database() "
        "AND application_name IN ('gateway-sync', 'gateway-async')",
    )
    assert {name for name, _ in states} == {"gateway-sync", "gateway-async"}
    assert {state for _, state in states} == {"idle"}
    stuck = fresh_rows(
        gateway.url,
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND state LIKE 'idle in transaction%%' "
        "AND application_name <> 'gateway-control'",  # the rollout driver's, mid-transaction
    )
    assert stuck == [(0,)]
    committed = stored_emails(gateway.url, "%.mix")
    assert committed == sorted(f"ok{n}@{world}.mix" for world in WORLDS for n in range(3))


@pytest.mark.parametrize("world", WORLDS)
async def test_a_dependency_asking_for_a_session_gets_the_endpoints_own(
    gateway: RunningApp, world: str
) -> None:
    response = await gateway.client.get(f"/probe/{world}/same")
    assert response.status_code == 200, response.text
    assert response.json() is True


@pytest.mark.parametrize("world", WORLDS)
async def test_overriding_a_session_provider_is_refused_with_a_reason(
    gateway: RunningApp, world: str, caplog: pytest.LogCaptureFixture
) -> None:
    provider = provide_sync_session if world == "legacy" else provide_async_session
    gateway.app.dependency_overrides[provider] = lambda: None
    try:
        response = await gateway.client.get(f"/probe/{world}/pool")
    finally:
        gateway.app.dependency_overrides.clear()
    assert response.status_code == 500
    assert "adopt(..., database=...)" in caplog.text
    assert checked_out(gateway.database) == {"sync": 0, "async": 0}
