"""Every way PostgreSQL refuses a connection is a 503 with Retry-After, on both implementations.

Each refusal is real: a role at its connection limit (53300), a wrong password
on a server that checks passwords (28P01), a server shutting down (57P03), a
database that does not exist (3D000), a port nothing listens on (connection
refused). Where the app maps database errors (the demo does), both twins and
the admin API answer 503 with Retry-After, and each kind of refusal is logged
once, not once per request. With the mapping off, the admin API still answers
503 and the two twins answer alike.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql
from sqlalchemy import make_url

from demo.app import create_demo_app
from demo.database import install
from demo.settings import DemoSettings
from tests.conftest import admin_execute
from tests.helpers import serving
from tests.processes import PrivatePostgres, free_port, started_private_postgres

pytestmark = pytest.mark.anyio

ADMIN = {"authorization": "Bearer refused"}
TWIN_REQUESTS = ["/users/1", "/items", "/items/1"]
FAILED_REQUESTS = 6  # per implementation, all within one logging period


def app_on(url: str, **settings: Any) -> Any:
    values: dict[str, Any] = {
        "database_url": url,
        "log_level": "WARNING",
        "gc_freeze": False,
        "admin_tokens": {"ops": "refused"},
        "pool_timeout": 5,
        **settings,
    }
    return create_demo_app(DemoSettings(**values))


@dataclass(frozen=True)
class Answer:
    status: int
    retry_after: str | None
    body: str


async def answers(url: str, **settings: Any) -> dict[str, list[Answer]]:
    """What each implementation and the admin API answer on a database that refuses them."""
    found: dict[str, list[Answer]] = {}
    for impl in ("legacy", "async"):
        async with serving(app_on(url, default_mode=impl, **settings)) as client:
            responses = [await client.get(path) for path in TWIN_REQUESTS * 2]
            responses.append(await client.get("/admin/routes/events", headers=ADMIN))
        found[impl] = [
            Answer(r.status_code, r.headers.get("retry-after"), r.text) for r in responses
        ]
    return found


async def assert_unavailable_everywhere(
    url: str, kinds: tuple[str, ...], log: pytest.LogCaptureFixture
) -> None:
    """503 + Retry-After everywhere, each kind of refusal logged once per app.

    `kinds`: how the refusal is named in the log (asyncpg gives a SQLSTATE, psycopg
    the server's words).
    """
    found = await answers(url)
    for impl, answered in found.items():
        assert {(a.status, a.retry_after) for a in answered} == {(503, "1")}, (impl, answered)
    reported = [r.getMessage() for r in log.records if "database unavailable" in r.getMessage()]
    assert reported, "the refusal was not logged"
    assert all(any(kind in message for kind in kinds) for message in reported), reported
    # at most once per app and kind (the handlers' and the admin API's), not once per request
    assert len(reported) <= 4, reported

    unmapped = await answers(url, map_database_errors=False)
    legacy, migrated = unmapped["legacy"], unmapped["async"]
    assert [a.status for a in legacy[:-1]] == [a.status for a in migrated[:-1]]
    assert legacy[:-1] == migrated[:-1]  # the twins answer alike, as the app would
    assert (legacy[-1].status, migrated[-1].status) == (503, 503)  # the admin API always maps


@pytest.fixture
def role_at_its_limit(server_url: str, committed_database: str) -> Iterator[str]:
    role = f"limited_{uuid.uuid4().hex[:8]}"
    admin_execute(
        server_url, sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT 0").format(sql.Identifier(role))
    )
    try:
        yield make_url(committed_database).set(username=role).render_as_string(False)
    finally:
        admin_execute(server_url, sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


async def test_too_many_connections_53300(role_at_its_limit: str, gateway_log: Any) -> None:
    kinds = ("53300", "too many connections for role")
    await assert_unavailable_everywhere(role_at_its_limit, kinds, gateway_log)


async def test_a_database_that_does_not_exist_3d000(server_url: str, gateway_log: Any) -> None:
    missing = make_url(server_url).set(database=f"missing_{uuid.uuid4().hex[:8]}")
    kinds = ("3D000", "does not exist")
    await assert_unavailable_everywhere(missing.render_as_string(False), kinds, gateway_log)


async def test_nothing_listening_on_the_port(gateway_log: Any) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    kinds = ("ConnectionRefusedError", "OperationalError")
    await assert_unavailable_everywhere(url, kinds, gateway_log)


@pytest.fixture
def private_server() -> Iterator[PrivatePostgres]:
    """A PostgreSQL of the test's own, with the demo's schema and data."""
    with started_private_postgres("gateway-refusing-") as server:
        install(server.url)
        yield server


async def test_a_wrong_password_28p01(private_server: PrivatePostgres, gateway_log: Any) -> None:
    with psycopg.connect(private_server.url, autocommit=True) as connection:
        connection.execute("SET password_encryption = 'scram-sha-256'")
        connection.execute("ALTER ROLE CURRENT_USER PASSWORD 'the-right-one'")
        hba = private_server.pgdata / "pg_hba.conf"
        hba.write_text("local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n")
        connection.execute("SELECT pg_reload_conf()")
    wrong = make_url(private_server.url).set(password="a-wrong-one").render_as_string(False)
    kinds = ("28P01", "password authentication failed")
    await assert_unavailable_everywhere(wrong, kinds, gateway_log)


async def test_a_server_shutting_down_57p03(
    private_server: PrivatePostgres, gateway_log: Any
) -> None:
    with psycopg.connect(private_server.url) as held:  # a smart shutdown waits for it
        private_server.begin_smart_shutdown()
        time.sleep(0.5)
        try:
            with psycopg.connect(private_server.url, connect_timeout=5):
                pytest.fail("the server still accepts connections")
        except psycopg.OperationalError as refused:
            assert "shutting down" in str(refused)
        kinds = ("57P03", "shutting down")
        await assert_unavailable_everywhere(private_server.url, kinds, gateway_log)
        held.close()


async def test_answers_name_nothing_about_the_database(role_at_its_limit: str) -> None:
    async with serving(app_on(role_at_its_limit, default_mode="async")) as client:
        response = await client.get("/users/1")
    assert response.json() == {
        "error": {
            "code": "unavailable",
            "message": "the database is unavailable; retry shortly",
            "details": {"resource": "database"},
        }
    }
    assert isinstance(response, httpx.Response)
