"""Fixtures: a real PostgreSQL (embedded, or GATEWAY_TEST_DATABASE_URL), migrated once per run.

Three ways a test meets the database:

- `api` / `make_api`: an httpx client on the app, whose sync and async sessions
  are bound to two connections that each run inside a transaction rolled back
  after the test (`join_transaction_mode="create_savepoint"`). Sequences are
  reset to the seed data first, so both implementations hand out the same ids.
- `committed_database`: a fresh database cloned from the migrated, seeded
  template, dropped after the test; for tests that need real commits seen by
  many connections (concurrency, real server processes).
- `server_url`: the URL of the test server itself, to create other databases.
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import APIRouter
from psycopg import sql
from sqlalchemy import Connection, Engine, create_engine, make_url, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.pool import NullPool

from demo.app import create_demo_app
from demo.database import upgrade as upgrade_demo
from demo.settings import DemoSettings
from gateway.database.engines import sync_url
from gateway.ops.migrations import upgrade as upgrade_gateway
from gateway.testing import rolled_back
from shared_models.seed import DemoSize, present_tables, reset_sequences, seed

TEST_SIZE = DemoSize(users=12, items=6, orders=8, documents=20)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With GATEWAY_TEST_DATABASE_ONLY, run only the tests that speak to PostgreSQL.

    The second server's pass of `scripts/test`: what does not touch the database
    already ran in the first pass, and would only run again.
    """
    if not os.environ.get("GATEWAY_TEST_DATABASE_ONLY"):
        return
    speaks = [item for item in items if "server_url" in getattr(item, "fixturenames", ())]
    others = [item for item in items if item not in speaks]
    if others:
        config.hook.pytest_deselected(items=others)
        items[:] = speaks


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server URL (any database on it); the embedded server unless one is given."""
    given = os.environ.get("GATEWAY_TEST_DATABASE_URL")
    if given:
        yield given
        return
    from gateway.ops.embedded import embedded_postgres

    data_dir = Path(tempfile.mkdtemp(prefix="gateway-tests-"))
    with embedded_postgres(data_dir) as url:
        without_durability(url)
        yield url


def without_durability(url: str) -> None:
    """A throwaway server need not survive a crash: commits and new databases skip fsync."""
    with psycopg.connect(url, autocommit=True) as connection:
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            connection.execute(sql.SQL("ALTER SYSTEM SET {} = off").format(sql.Identifier(setting)))
        connection.execute("SELECT pg_reload_conf()")


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def admin_execute(url: str, statement: sql.Composable) -> None:
    with psycopg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False),
        autocommit=True,
    ) as connection:
        connection.execute(statement)


def create_database(server: str, name: str, template: str | None = None) -> str:
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
    admin_execute(server, statement)
    return with_database(server, name)


def drop_database(server: str, name: str) -> None:
    admin_execute(
        server, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    )


@pytest.fixture(scope="session")
def template_name(server_url: str) -> Iterator[str]:
    """A migrated, seeded database that nothing stays connected to, to clone from."""
    name = f"gateway_tpl_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name)
    try:
        upgrade_demo(url)
        upgrade_gateway(url)
        engine = create_engine(sync_url(url), poolclass=NullPool)
        seed(engine, TEST_SIZE)
        engine.dispose()
        yield name
    finally:
        drop_database(server_url, name)


@pytest.fixture(scope="session")
def database_url(server_url: str, template_name: str) -> Iterator[str]:
    """The database the transactional tests run in (a clone of the template)."""
    name = f"gateway_test_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name, template=template_name)
    yield url
    drop_database(server_url, name)


@pytest.fixture
def committed_database(server_url: str, template_name: str) -> Iterator[str]:
    """A private clone of the template whose commits are real; dropped after the test."""
    name = f"gateway_commit_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name, template=template_name)
    yield url
    drop_database(server_url, name)


@pytest.fixture(scope="session")
def sync_engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(sync_url(database_url), poolclass=NullPool)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def has_pgvector(sync_engine: Engine) -> bool:
    with sync_engine.connect() as connection:
        return "documents" in present_tables(connection)


@pytest.fixture
def needs_pgvector(has_pgvector: bool) -> None:
    if not has_pgvector:
        pytest.skip("the test server has no pgvector extension")


def test_settings(database_url: str, **overrides: object) -> DemoSettings:
    values: dict[str, object] = {
        "database_url": database_url,
        "log_level": "WARNING",
        "raise_on_blocking": True,
        # Freezing walks the whole heap at every app start, and the suite starts hundreds
        # of apps in one process; tests/test_runtime.py and the server processes cover it.
        "gc_freeze": False,
    }
    values.update(overrides)
    return DemoSettings(**values)  # type: ignore[arg-type]


@asynccontextmanager
async def rolled_back_api(
    database_url: str,
    *,
    impl: str = "legacy",
    legacy_routers: list[APIRouter] | None = None,
    async_routers: list[APIRouter] | None = None,
) -> AsyncIterator[ApiClient]:
    async with rolled_back(database_url, keep_sequences=False) as state:
        reset_sequences(state.sync_connection, present_tables(state.sync_connection))
        app = create_demo_app(
            test_settings(database_url, default_mode=impl),
            legacy_routers=legacy_routers,
            async_routers=async_routers,
            database=state.database,
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://gateway.test"
            ) as client:
                yield ApiClient(client, state.sync_connection, state.async_connection)


class ApiClient:
    """An httpx client on the app, plus the two connections its sessions run in."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        sync_connection: Connection,
        async_connection: AsyncConnection,
    ) -> None:
        self.http = http
        self.sync_connection = sync_connection
        self.async_connection = async_connection

    def __getattr__(self, name: str) -> Any:
        return getattr(self.http, name)

    def scalar(self, query: str, **params: object) -> object:
        """Read through the legacy side's connection (it sees that side's uncommitted writes)."""
        return self.sync_connection.execute(text(query), params).scalar()

    async def async_scalar(self, query: str, **params: object) -> object:
        return (await self.async_connection.execute(text(query), params)).scalar()


MakeApi = Callable[..., AbstractAsyncContextManager[ApiClient]]


@pytest.fixture
def make_api(database_url: str) -> MakeApi:
    """`async with make_api(impl="async", legacy_routers=[...]) as api:` for custom apps."""

    def make(**options: object) -> AbstractAsyncContextManager[ApiClient]:
        return rolled_back_api(database_url, **options)  # type: ignore[arg-type]

    return make


@pytest.fixture(params=["legacy", "async"])
def impl(request: pytest.FixtureRequest) -> str:
    """Run the test against each implementation of the routes that have both."""
    return str(request.param)


@pytest.fixture
async def api(make_api: MakeApi, impl: str) -> AsyncIterator[ApiClient]:
    async with make_api(impl=impl) as client:
        yield client


@pytest.fixture
async def legacy_api(make_api: MakeApi) -> AsyncIterator[ApiClient]:
    async with make_api(impl="legacy") as client:
        yield client


@pytest.fixture
def fresh_database(server_url: str) -> Iterator[str]:
    """An empty database of its own, dropped after the test."""
    name = f"gateway_fresh_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name)
    try:
        yield url
    finally:
        drop_database(server_url, name)


@contextmanager
def gateway_records(
    caplog: pytest.LogCaptureFixture, level: int
) -> Iterator[pytest.LogCaptureFixture]:
    """caplog on the `gateway` logger (which does not propagate to the root), from `level` up."""
    gateway_logger = logging.getLogger("gateway")
    gateway_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(level, logger="gateway"):
            yield caplog
    finally:
        gateway_logger.removeHandler(caplog.handler)


@pytest.fixture
def gateway_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The gateway's log records from WARNING up."""
    with gateway_records(caplog, logging.WARNING) as records:
        yield records
