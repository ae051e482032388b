"""The README's "Adopt it in your codebase", step by step, as real commands on the example app.

The tracker (tests/example_project) has its own models, Alembic history,
`get_db`, error handling and routers nested under /api/v1; it shares nothing
with the demo. Its own migrations run first; then the gateway's tables go in
beside them, the app is served with `--app`, a twin is checked for parity and
moved legacy -> shadow -> canary 50 % -> async with the CLI, and the report
ranks the app's own routes. No demo table or row appears anywhere.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

from gateway import gateway_metadata
from gateway.database.engines import sync_url
from gateway.ops.migrations import VERSION_TABLE
from tests import example
from tests.processes import free_port, gateway_command, running_server

pytestmark = [pytest.mark.slow]

KEY = "GET /api/v1/tickets/{ticket_id}"
GATEWAY_TABLES = {*gateway_metadata.tables, VERSION_TABLE}
TRACKER_TABLES = {"projects", "tickets", "alembic_version"}
COMMAND_SECONDS = 120.0
SWITCH_SECONDS = 5.0


def gateway(database_url: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    """`gateway ...` run in the project's directory, as the README runs it."""
    return subprocess.run(
        gateway_command(*arguments),
        cwd=example.PROJECT,
        env=example.project_env(database_url),
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def tables(database_url: str) -> set[str]:
    engine = create_engine(sync_url(database_url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names())
    finally:
        engine.dispose()


def app_version(database_url: str) -> str:
    engine = create_engine(sync_url(database_url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return str(connection.execute(text("SELECT version_num FROM alembic_version")).scalar())
    finally:
        engine.dispose()


def served_by(client: httpx.Client, requests: int = 40) -> Counter[str]:
    """Which implementation answered `GET /api/v1/tickets/1`, each with its own sticky key."""
    seen: Counter[str] = Counter()
    for n in range(requests):
        response = client.get("/api/v1/tickets/1", headers={"x-gateway-sticky-key": f"user-{n}"})
        assert response.status_code == 200, response.text
        seen[response.headers["x-gateway-impl"]] += 1
    return seen


def wait_until(check: object, what: str) -> None:
    deadline = time.monotonic() + SWITCH_SECONDS
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {SWITCH_SECONDS} s: {what}")


def move(database_url: str, mode: str, *options: str) -> None:
    ok(gateway(database_url, "routes", "set", KEY, mode, "--app", example.ADOPTED_APP, *options))


def test_the_readme_adoption_steps_on_an_app_of_its_own(
    fresh_database: str, tmp_path: Path
) -> None:
    tracker_database = fresh_database
    # 2. the app's own migrations, then the gateway's tables beside them
    ok(example.alembic(tracker_database, "upgrade", "head"))
    version = app_version(tracker_database)
    ok(gateway(tracker_database, "db", "upgrade", "--app", example.ADOPTED_APP))
    assert tables(tracker_database) == TRACKER_TABLES | GATEWAY_TABLES
    assert app_version(tracker_database) == version
    check = example.alembic(tracker_database, "check")
    assert check.returncode == 0, check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr
    example.seed(tracker_database)

    # 6. parity of the twins, writes included, from the command line
    parity = ok(
        gateway(
            tracker_database, "parity", "--app", example.ADOPTED_APP,
            "--requests", "parity.json", "--ignore", "opened_at",
        )
    )  # fmt: skip
    assert parity.splitlines()[0] == (
        "10 requests, 3/3 twin routes exercised, 0 differences (each run on a copy of the database)"
    )

    # 4. served with --app: the app's routes, the app's answers
    listed = ok(gateway(tracker_database, "routes", "list", "--app", example.ADOPTED_APP))
    assert f"{KEY} " in listed and "async+legacy" in listed
    assert "/users" not in listed
    port = free_port()
    command = gateway_command("serve", "--app", example.ADOPTED_APP, "--port", str(port))
    env = example.project_env(tracker_database, GATEWAY_ADMIN_READ_TOKENS='{"ops": "s3cret"}')
    admin = {"authorization": "Bearer s3cret"}
    with (
        running_server(command, env, port, tmp_path / "serve.log", cwd=example.PROJECT) as server,
        httpx.Client(base_url=server.base_url, timeout=10) as client,
    ):
        assert served_by(client) == {"legacy": 40}
        missing = client.get("/api/v1/tickets/99")
        assert (missing.status_code, missing.json()) == (404, {"detail": "ticket not found"})

        # 7. shadow: legacy answers, async runs behind it and is compared
        move(tracker_database, "shadow", "--reason", "parity on live traffic")
        time.sleep(0.5)
        assert served_by(client) == {"legacy": 40}

        def compared() -> bool:
            report = client.get(
                "/admin/shadow/mismatches", params={"route": KEY}, headers=admin
            ).json()
            counts = report["routes"][0]["counts"] if report["routes"] else {}
            return counts.get("match", 0) >= 20

        wait_until(compared, "shadow comparisons recorded")
        mismatches = client.get("/admin/shadow/mismatches", headers=admin).json()
        counts = mismatches["routes"][0]["counts"]
        assert counts["mismatch"] == 0 and counts["error"] == 0

        # 8. canary 50 %: sticky keys split between the two
        move(tracker_database, "canary", "--percent", "50")
        wait_until(lambda: set(served_by(client, 10)) == {"legacy", "async"}, "a split canary")
        split = served_by(client)
        assert 10 <= split["async"] <= 30, split

        # 9. async for everyone
        move(tracker_database, "async")
        wait_until(lambda: served_by(client, 5) == {"async": 5}, "the route on async")

        # 10. the report ranks this app's routes
        for _ in range(20):
            client.get("/api/v1/projects/1/tickets")
        report = json.loads(
            ok(
                gateway(
                    tracker_database, "report", "--app", example.ADOPTED_APP,
                    "--url", server.base_url, "--window", "1", "--json",
                )
            )
        )  # fmt: skip
        ranked = {route["route"]: route for route in report["routes"]}
        assert set(ranked) == {
            "GET /api/v1/projects/",
            "POST /api/v1/projects/",
            "GET /api/v1/projects/{project_id}",
            "GET /api/v1/projects/{project_id}/tickets",
            "POST /api/v1/projects/{project_id}/tickets",
            KEY,
            "PATCH /api/v1/tickets/{ticket_id}",
            "POST /api/v1/tickets/{ticket_id}/close",
            "DELETE /api/v1/tickets/{ticket_id}",
        }
        assert ranked[KEY]["mode"] == "async"
        assert (report["routes_with_async"], report["routes_total"]) == (3, 9)
        assert "async_routes" not in json.dumps(report)

    events = ok(gateway(tracker_database, "routes", "list", "--app", example.ADOPTED_APP))
    assert "cli:" in events
    assert tables(tracker_database) == TRACKER_TABLES | GATEWAY_TABLES  # no demo data anywhere
