"""The gateway schema at start-up: refused if missing or old, accepted if newer and compatible."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi import FastAPI
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from demo.database import prepare
from demo.database import upgrade as upgrade_demo
from gateway import Settings, create_app, gateway_metadata
from gateway.database.engines import sync_url
from gateway.lifespan import MissingDatabaseUrl
from gateway.ops.migrations import (
    VERSION_TABLE,
    SchemaError,
    check_schema,
    exclude_gateway_tables,
    head_revision,
    upgrade,
)
from shared_models.base import Base
from tests.conftest import create_database, drop_database

pytestmark = pytest.mark.anyio


@pytest.fixture
def fresh_database(server_url: str) -> Iterator[str]:
    name = f"gateway_schema_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name)
    try:
        yield url
    finally:
        drop_database(server_url, name)


@pytest.fixture
def engine(fresh_database: str) -> Iterator[Engine]:
    engine = create_engine(sync_url(fresh_database), poolclass=NullPool)
    yield engine
    engine.dispose()


def adopter_app(database_url: str | None) -> FastAPI:
    return create_app(Settings(database_url=database_url, log_level="WARNING", gc_freeze=False))


async def start(app: FastAPI) -> None:
    async with app.router.lifespan_context(app):
        pass


def execute(engine: Engine, statement: str) -> None:
    with engine.begin() as connection:
        connection.execute(text(statement))


async def test_missing_tables_stop_the_start_naming_the_table_and_the_fix(
    fresh_database: str,
) -> None:
    with pytest.raises(SchemaError) as refused:
        await start(adopter_app(fresh_database))
    message = str(refused.value)
    assert "table gateway_route_events is missing" in message
    assert "run `gateway db upgrade`" in message
    assert "\n" not in message


async def test_a_migrated_database_starts(fresh_database: str) -> None:
    upgrade(fresh_database)
    await start(adopter_app(fresh_database))


async def test_a_newer_compatible_schema_is_accepted(fresh_database: str, engine: Engine) -> None:
    upgrade(fresh_database)
    execute(engine, f"UPDATE {VERSION_TABLE} SET version_num = '9999'")
    execute(engine, "ALTER TABLE gateway_routes ADD COLUMN rollout text")
    await start(adopter_app(fresh_database))


async def test_a_newer_schema_without_a_column_this_code_uses_is_refused(
    fresh_database: str, engine: Engine
) -> None:
    upgrade(fresh_database)
    execute(engine, f"UPDATE {VERSION_TABLE} SET version_num = '9999'")
    execute(engine, "ALTER TABLE gateway_routes DROP COLUMN reason")
    with pytest.raises(SchemaError, match=r"lacks gateway_routes\.reason"):
        await start(adopter_app(fresh_database))


def test_an_older_schema_is_refused_with_the_command(fresh_database: str, engine: Engine) -> None:
    upgrade(fresh_database)
    current = head_revision()
    with engine.connect() as connection, pytest.raises(SchemaError) as refused:
        check_schema(connection, head="0002", known=frozenset({current, "0002"}))
    assert str(refused.value) == (
        f"the gateway schema is at {current}, this code needs 0002: run `gateway db upgrade`"
    )


async def test_without_a_database_url_the_app_refuses_naming_the_variable() -> None:
    with pytest.raises(MissingDatabaseUrl, match="set GATEWAY_DATABASE_URL"):
        await start(adopter_app(None))


def test_the_gateway_migrations_create_exactly_its_metadata(
    fresh_database: str, engine: Engine
) -> None:
    upgrade(fresh_database)
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"include_name": lambda name, kind, parents: name != VERSION_TABLE}
        )
        assert compare_metadata(context, gateway_metadata) == []


def test_an_apps_autogenerate_leaves_the_gateways_tables_alone(
    fresh_database: str, engine: Engine
) -> None:
    upgrade_demo(fresh_database)
    upgrade(fresh_database)
    with engine.connect() as connection:
        plain = MigrationContext.configure(connection)
        hooked = MigrationContext.configure(
            connection, opts={"include_name": exclude_gateway_tables}
        )
        dropped = {diff[1].name for diff in compare_metadata(plain, Base.metadata)}
        assert {"gateway_routes", "gateway_route_events", VERSION_TABLE} <= dropped
        assert compare_metadata(hooked, Base.metadata) == []


def test_demo_data_is_never_seeded_beside_other_tables(fresh_database: str, engine: Engine) -> None:
    execute(engine, "CREATE TABLE invoices (id integer PRIMARY KEY)")
    prepare(fresh_database, seed=True)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM users")).scalar_one() == 0
