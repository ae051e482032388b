"""The `gateway db` commands as real processes: migrate, seed, replace, refuse bad settings."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.pool import NullPool

from gateway.database.engines import sync_url
from gateway.ops.schema import alembic_config, upgrade
from shared_models.models import Base
from shared_models.seed import DemoSize, item_row, order_rows, user_row
from tests.conftest import create_database, drop_database
from tests.processes import child_env, gateway_command

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

COMMAND_SECONDS = 120.0
SEED_SIZE = DemoSize(users=1000, items=20, orders=50, documents=30)
SEED_ARGUMENTS = ("--users", "1000", "--items", "20", "--orders", "50", "--documents", "30")
CONTENT_QUERIES = {
    "users": "SELECT id, email, name, is_active FROM users ORDER BY id",
    "items": "SELECT id, sku, name, price, stock FROM items ORDER BY id",
    "orders": "SELECT id, user_id, total FROM orders ORDER BY id",
    "order_lines": (
        "SELECT id, order_id, item_id, quantity, unit_price FROM order_lines ORDER BY id"
    ),
    "documents": "SELECT id, title, body, embedding::text FROM documents ORDER BY id",
}


def run_gateway(
    database_url: str, *arguments: str, **settings: str
) -> subprocess.CompletedProcess[str]:
    values = {"GATEWAY_DATABASE_URL": database_url, "GATEWAY_LOG_LEVEL": "WARNING", **settings}
    return subprocess.run(
        gateway_command(*arguments),
        env=child_env(values),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
        check=False,
    )


@pytest.fixture
def empty_database(server_url: str) -> Iterator[str]:
    name = f"gateway_cli_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name)
    try:
        yield url
    finally:
        drop_database(server_url, name)


@pytest.fixture
def migrated_database(empty_database: str) -> str:
    upgrade(empty_database)
    return empty_database


@pytest.fixture
def engine(empty_database: str) -> Iterator[Engine]:
    engine = create_engine(sync_url(empty_database), poolclass=NullPool)
    yield engine
    engine.dispose()


def table_names(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(inspect(connection).get_table_names())


def row_counts(engine: Engine) -> dict[str, int]:
    present = table_names(engine)
    with engine.connect() as connection:
        return {
            table: int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
            for table in CONTENT_QUERIES
            if table in present
        }


def content(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    present = table_names(engine)
    with engine.connect() as connection:
        return {
            table: [tuple(row) for row in connection.execute(text(query))]
            for table, query in CONTENT_QUERIES.items()
            if table in present
        }


def expected_counts(has_pgvector: bool) -> dict[str, int]:
    counts = {
        "users": SEED_SIZE.users,
        "items": SEED_SIZE.items,
        "orders": SEED_SIZE.orders,
        "order_lines": len(order_rows(SEED_SIZE)[1]),
    }
    if has_pgvector:
        counts["documents"] = SEED_SIZE.documents
    return counts


def seed_ok(database_url: str, *extra: str) -> str:
    result = run_gateway(database_url, "db", "seed", *SEED_ARGUMENTS, *extra)
    assert result.returncode == 0, result.stderr
    return result.stdout


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def test_upgrade_creates_the_schema_in_an_empty_database(
    empty_database: str, engine: Engine, has_pgvector: bool
) -> None:
    assert table_names(engine) == set()

    result = run_gateway(empty_database, "db", "upgrade")

    assert result.returncode == 0, result.stderr
    assert "schema at head" in result.stdout
    tables = table_names(engine)
    model_tables = set(Base.metadata.tables) - ({"documents"} if not has_pgvector else set())
    assert model_tables <= tables
    assert ("documents" in tables) == has_pgvector
    with engine.connect() as connection:
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    assert version == head_revision()


def test_seed_loads_exactly_the_requested_rows(
    migrated_database: str, engine: Engine, has_pgvector: bool
) -> None:
    output = seed_ok(migrated_database)

    assert row_counts(engine) == expected_counts(has_pgvector)
    assert f"{SEED_SIZE.users} users" in output
    assert f"{SEED_SIZE.documents if has_pgvector else 0} documents" in output


def test_seeding_again_needs_replace_which_reloads_the_same_rows(
    migrated_database: str, engine: Engine, has_pgvector: bool
) -> None:
    seed_ok(migrated_database)
    first = content(engine)

    refused = run_gateway(migrated_database, "db", "seed", *SEED_ARGUMENTS)
    assert refused.returncode != 0
    assert "--replace" in refused.stderr
    assert content(engine) == first

    seed_ok(migrated_database, "--replace")
    assert row_counts(engine) == expected_counts(has_pgvector)
    assert content(engine) == first
    with engine.connect() as connection:
        email = connection.execute(text("SELECT email FROM users WHERE id = 500")).scalar_one()
        price = connection.execute(text("SELECT price FROM items WHERE id = 7")).scalar_one()
    assert email == user_row(500)["email"]
    assert isinstance(price, Decimal)
    assert price == item_row(7)["price"]


def test_invalid_setting_exits_with_code_2_naming_the_variable(
    empty_database: str, engine: Engine
) -> None:
    result = run_gateway(empty_database, "db", "upgrade", GATEWAY_THREADPOOL_SIZE="0")

    assert result.returncode == 2, result.stderr
    assert "GATEWAY_THREADPOOL_SIZE" in result.stderr
    assert table_names(engine) == set()
