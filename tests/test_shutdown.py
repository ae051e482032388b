"""Shutdown is bounded: SIGTERM drains for GATEWAY_SHUTDOWN_DRAIN_SECONDS, then cancels and exits.

Readiness answers 503 from the moment draining starts. Requests still running
at the end of the drain are cancelled with their sessions rolled back (a legacy
endpoint's query is cancelled in PostgreSQL, since its thread cannot be), both
pools and the LISTEN connection close, and the process exits, even with an
/admin/report holding a request open for minutes.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from demo.app import create_demo_app
from demo.settings import DemoSettings
from gateway.database.engines import asyncpg_connect_kwargs, sync_url
from gateway.database.uninterrupted import uninterrupted
from tests.helpers import serving
from tests.processes import child_env, free_port, gateway_command, start_process, stop_process

pytestmark = pytest.mark.anyio

DRAIN_SECONDS = 2
EXIT_DEADLINE_SECONDS = 20.0  # far below what would hang: a 100 s report, 60 s queries
ADMIN = {"authorization": "Bearer drain"}


async def test_readiness_answers_503_once_draining_starts(database_url: str) -> None:
    app = create_demo_app(
        DemoSettings(database_url=database_url, log_level="WARNING", gc_freeze=False)
    )
    async with serving(app) as client:
        before = await client.get("/readyz")
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        previous_default = signal.getsignal(signal.SIGTERM)
        handler(signal.SIGTERM, None)  # what the server's SIGTERM reaches first
        after = await client.get("/readyz")
    assert before.status_code == 200
    assert (after.status_code, after.json()["status"]) == (503, "draining")
    assert signal.getsignal(signal.SIGTERM) is not previous_default  # put back on the way out


def database_state(url: str) -> tuple[list[str], int]:
    """Rows the stuck requests wrote, and the gateway's connections still open."""
    engine = create_engine(sync_url(url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            stuck = connection.execute(text("SELECT email FROM users WHERE name = 'stuck'"))
            backends = connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name LIKE 'gateway-%'"
                )
            ).scalar_one()
            return [row[0] for row in stuck], int(backends)
    finally:
        engine.dispose()


def in_background(client: httpx.Client, method: str, path: str, outcomes: list[Any]) -> None:
    def call() -> None:
        try:
            outcomes.append(client.request(method, path).status_code)
        except httpx.HTTPError as error:
            outcomes.append(type(error).__name__)

    threading.Thread(target=call, daemon=True).start()


def stuck_queries(url: str) -> int:
    engine = create_engine(sync_url(url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            query = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'"
            return int(connection.execute(text(query)).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.slow
def test_sigterm_with_stuck_requests_and_an_open_report_exits_within_the_drain(
    committed_database: str, tmp_path: Path
) -> None:
    port = free_port()
    env = child_env(
        {
            "GATEWAY_APP": "tests.slow_writes:app",
            "GATEWAY_DATABASE_URL": committed_database,
            "GATEWAY_SHUTDOWN_DRAIN_SECONDS": str(DRAIN_SECONDS),
            "GATEWAY_ADMIN_TOKENS": '{"ops": "drain"}',
            "GATEWAY_ADMIN_REPORT_MAX_WINDOW": "300",
            "GATEWAY_LOG_LEVEL": "WARNING",
        }
    )
    process = start_process(gateway_command("serve", "--port", str(port)), env, tmp_path / "log")
    outcomes: list[Any] = []
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        client = httpx.Client(base_url=base, timeout=120, headers=ADMIN)
        in_background(client, "POST", "/stuck/legacy/1", outcomes)
        in_background(client, "POST", "/stuck/async/1", outcomes)
        in_background(client, "GET", "/admin/report?window=100", outcomes)
        while stuck_queries(committed_database) < 2:
            time.sleep(0.05)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=EXIT_DEADLINE_SECONDS)
        took = time.monotonic() - signalled
    finally:
        stop_process(process)
    rows, backends = database_state(committed_database)
    assert process.returncode is not None
    assert took < EXIT_DEADLINE_SECONDS
    print(f"SIGTERM to exit: {took:.1f} s; answers: {outcomes}")
    assert rows == []  # both stuck writes rolled back
    assert backends == 0  # both pools and the listener closed
    time.sleep(0.5)
    assert outcomes == [503, 503, 503], outcomes  # cancelled: retry elsewhere


async def test_a_connect_under_way_when_its_loop_is_cancelled_finishes_first(
    database_url: str,
) -> None:
    opened: list[asyncpg.Connection] = []
    went_on = False

    async def background_loop() -> None:
        nonlocal went_on
        connect = asyncpg.connect(**asyncpg_connect_kwargs(database_url, "gateway-test"))
        opened.append(await uninterrupted(connect, limit=10))
        await anyio.sleep(0)  # the cancellation lands here, at the first checkpoint after it
        went_on = True

    async with anyio.create_task_group() as background:
        background.start_soon(background_loop)
        await anyio.sleep(0)  # the loop is inside connect
        background.cancel_scope.cancel()

    assert len(opened) == 1 and not went_on
    assert await opened[0].fetchval("SELECT 1") == 1  # a whole connection, not a cut one
    await opened[0].close()


async def test_background_work_that_outlasts_its_limit_is_stopped() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await uninterrupted(anyio.sleep(30), limit=0.1)
    assert time.monotonic() - started < 5
