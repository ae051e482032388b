"""The gateway's own schema as real processes (`gateway db upgrade|check`), and `python -m demo`.

The gateway's tables live beside an app's schema and never in it: their own
history, their own version table, nothing else touched.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.pool import NullPool

from demo.database import upgrade as upgrade_demo
from gateway import gateway_metadata
from gateway.database.engines import sync_url
from gateway.ops.migrations import VERSION_TABLE, head_revision
from shared_models.models import Base
from shared_models.seed import DemoSize, item_row, order_rows, user_row
from tests import example
from tests.processes import REPO_ROOT, child_env, gateway_command

pytestmark = [pytest.mark.slow]

COMMAND_SECONDS = 120.0
GATEWAY_TABLES = {*gateway_metadata.tables, VERSION_TABLE}
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


def run(command: list[str], database_url: str, **settings: str) -> subprocess.CompletedProcess[str]:
    values = {"GATEWAY_DATABASE_URL": database_url, "GATEWAY_LOG_LEVEL": "WARNING", **settings}
    return subprocess.run(
        command,
        env=child_env(values),
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
        check=False,
    )


def run_gateway(
    database_url: str, *arguments: str, **settings: str
) -> subprocess.CompletedProcess[str]:
    return run(gateway_command(*arguments), database_url, **settings)


def run_demo(database_url: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "demo", *arguments], database_url)


@pytest.fixture
def engine(fresh_database: str) -> Iterator[Engine]:
    engine = create_engine(sync_url(fresh_database), poolclass=NullPool)
    yield engine
    engine.dispose()


def table_names(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(inspect(connection).get_table_names())


def scalar(engine: Engine, query: str) -> object:
    with engine.connect() as connection:
        return connection.execute(text(query)).scalar()


def extensions(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return {row[0] for row in connection.execute(text("SELECT extname FROM pg_extension"))}


def test_upgrade_creates_only_the_gateways_tables(fresh_database: str, engine: Engine) -> None:
    before = extensions(engine)

    result = run_gateway(fresh_database, "db", "upgrade")

    assert result.returncode == 0, result.stderr
    assert f"version table {VERSION_TABLE}" in result.stdout
    assert table_names(engine) == GATEWAY_TABLES
    assert extensions(engine) == before
    assert scalar(engine, f"SELECT version_num FROM {VERSION_TABLE}") == head_revision()


def test_upgrade_beside_an_apps_own_history_touches_none_of_it(
    fresh_database: str, engine: Engine
) -> None:
    upgrade_demo(fresh_database)
    app_tables = table_names(engine)
    app_version = scalar(engine, "SELECT version_num FROM alembic_version")

    for _ in range(2):  # a second run finds nothing to do
        result = run_gateway(fresh_database, "db", "upgrade")
        assert result.returncode == 0, result.stderr

    assert table_names(engine) == app_tables | GATEWAY_TABLES
    assert scalar(engine, "SELECT version_num FROM alembic_version") == app_version
    assert scalar(engine, "SELECT count(*) FROM alembic_version") == 1


def test_upgrade_keeps_gateway_tables_an_older_demo_schema_created(
    fresh_database: str, engine: Engine
) -> None:
    gateway_metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO gateway_routes (route, mode, changed_by) "
                "VALUES ('GET /users', 'async', 'someone')"
            )
        )

    result = run_gateway(fresh_database, "db", "upgrade")

    assert result.returncode == 0, result.stderr
    assert scalar(engine, "SELECT mode FROM gateway_routes") == "async"
    assert scalar(engine, f"SELECT version_num FROM {VERSION_TABLE}") == head_revision()


def test_check_names_the_missing_table_and_the_fix_then_passes(
    fresh_database: str,
) -> None:
    missing = run_gateway(fresh_database, "db", "check")
    assert missing.returncode == 1
    assert "gateway_route_events" in missing.stderr or "gateway_routes" in missing.stderr
    assert "gateway db upgrade" in missing.stderr
    assert "Traceback" not in missing.stderr

    assert run_gateway(fresh_database, "db", "upgrade").returncode == 0
    present = run_gateway(fresh_database, "db", "check")
    assert present.returncode == 0, present.stderr
    assert f"gateway schema at {head_revision()}" in present.stdout


def test_without_a_database_url_an_adopted_app_names_the_variable(tmp_path: object) -> None:
    result = subprocess.run(
        gateway_command("db", "upgrade"),
        env=child_env({"GATEWAY_APP": ""}),
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "no database to serve: set GATEWAY_DATABASE_URL "
        "(postgresql://user:password@host:5432/dbname)"
    ]


def test_invalid_setting_exits_with_code_2_naming_the_variable(
    fresh_database: str, engine: Engine
) -> None:
    result = run_gateway(fresh_database, "db", "upgrade", GATEWAY_THREADPOOL_SIZE="0")

    assert result.returncode == 2, result.stderr
    assert "GATEWAY_THREADPOOL_SIZE" in result.stderr
    assert "Traceback" not in result.stderr
    assert table_names(engine) == set()


def row_counts(engine: Engine) -> dict[str, int]:
    present = table_names(engine)
    return {
        table: int(str(scalar(engine, f"SELECT count(*) FROM {table}")))
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


def test_demo_upgrade_creates_the_demo_schema_only(
    fresh_database: str, engine: Engine, has_pgvector: bool
) -> None:
    result = run_demo(fresh_database, "upgrade")

    assert result.returncode == 0, result.stderr
    tables = table_names(engine)
    expected = set(Base.metadata.tables) - (set() if has_pgvector else {"documents"})
    assert tables == expected | {"alembic_version"}


def test_demo_seed_loads_exactly_the_requested_rows_and_replaces_them_alike(
    fresh_database: str, engine: Engine, has_pgvector: bool
) -> None:
    upgrade_demo(fresh_database)
    seeded = run_demo(fresh_database, "seed", *SEED_ARGUMENTS)
    assert seeded.returncode == 0, seeded.stderr
    assert row_counts(engine) == expected_counts(has_pgvector)
    first = content(engine)

    refused = run_demo(fresh_database, "seed", *SEED_ARGUMENTS)
    assert refused.returncode != 0
    assert "--replace" in refused.stderr
    assert content(engine) == first

    replaced = run_demo(fresh_database, "seed", *SEED_ARGUMENTS, "--replace")
    assert replaced.returncode == 0, replaced.stderr
    assert content(engine) == first
    assert scalar(engine, "SELECT email FROM users WHERE id = 500") == user_row(500)["email"]
    price = scalar(engine, "SELECT price FROM items WHERE id = 7")
    assert isinstance(price, Decimal)
    assert price == item_row(7)["price"]


def test_demo_data_is_never_written_beside_other_tables(
    fresh_database: str, engine: Engine
) -> None:
    upgrade_demo(fresh_database)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE invoices (id integer PRIMARY KEY)"))

    refused = run_demo(fresh_database, "seed", "--replace")

    assert refused.returncode == 1
    assert "invoices" in refused.stderr
    assert row_counts(engine)["users"] == 0


def run_in_example(*arguments: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        gateway_command(*arguments),
        cwd=example.PROJECT,
        env={**child_env({"GATEWAY_APP": ""}), **env},
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
        check=False,
    )


def test_serving_an_adopted_app_without_a_database_url_names_the_variable() -> None:
    result = run_in_example("serve", "--app", example.ADOPTED_APP)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "no database to serve: set GATEWAY_DATABASE_URL "
        "(postgresql://user:password@host:5432/dbname)"
    )
    assert "Traceback" not in result.stderr


def test_a_contract_mismatch_is_one_readable_line_per_difference() -> None:
    result = run_in_example("routes", "list", "--app", "tracker.mismatched:app")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "tracker.mismatched:app: GET /api/v1/projects/{project_id}/tickets: "
        "the two implementations differ:",
        "  query parameter 'status': type legacy Optional[Literal['open', 'closed']] "
        "vs async Optional[Literal['open', 'done']]",
    ]


def test_an_app_that_is_not_served_by_the_gateway_is_named() -> None:
    result = run_in_example("routes", "list", "--app", example.PLAIN_APP)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"{example.PLAIN_APP}: ")
    assert "gateway.adopt()" in result.stderr
