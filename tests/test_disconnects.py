"""A client that goes away mid-request does not cancel it: both implementations finish and commit.

(What the README's "When things go wrong" says: a write a client has sent is
done whether or not the client waits for the answer.)
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gateway.database.engines import sync_url
from tests.processes import LOCALHOST, child_env, free_port, gateway_command, running_server
from tests.slow_writes import SLOW_SECONDS

pytestmark = [pytest.mark.slow]

ADMIN_TOKEN = "cut-connections"
KEY = "POST /slow-users/{n}"


def cut_after_sending(port: int, n: int) -> None:
    """Send the request, then close the connection before the answer can come."""
    with socket.create_connection((LOCALHOST, port)) as connection:
        connection.sendall(
            f"POST /slow-users/{n} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()
        )
        time.sleep(SLOW_SECONDS / 4)


def slow_users(database_url: str) -> list[str]:
    engine = create_engine(sync_url(database_url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            query = text("SELECT email FROM users WHERE name = 'slow' ORDER BY email")
            return [row[0] for row in connection.execute(query)]
    finally:
        engine.dispose()


def test_writes_of_clients_that_went_away_are_committed_on_both_sides(
    committed_database: str, tmp_path: Path
) -> None:
    port = free_port()
    env = child_env(
        {
            "GATEWAY_APP": "tests.slow_writes:app",
            "GATEWAY_DATABASE_URL": committed_database,
            "GATEWAY_ADMIN_TOKENS": f'{{"ops": "{ADMIN_TOKEN}"}}',
            "GATEWAY_LOG_LEVEL": "WARNING",
        }
    )
    command = gateway_command("serve", "--port", str(port))
    with running_server(command, env, port, tmp_path / "gateway.log") as server:
        cut_after_sending(port, 1)
        answer = httpx.put(
            f"{server.base_url}/admin/routes/{quote(KEY, safe='')}",
            json={"mode": "async", "reason": "the async side too"},
            headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert answer.status_code == 200, answer.text
        cut_after_sending(port, 2)
        time.sleep(SLOW_SECONDS * 2)
    assert slow_users(committed_database) == [
        "slow-async-2@example.com",
        "slow-legacy-1@example.com",
    ]
