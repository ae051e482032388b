"""What one client may hold of `gateway serve`: head sizes, head and body timeouts, connections.

Each attack is made on a real socket against a real `gateway serve` process,
and each time an ordinary client is still answered.
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.processes import (
    LOCALHOST,
    RunningProcess,
    child_env,
    free_port,
    gateway_command,
    running_server,
)

pytestmark = [pytest.mark.slow]

HEAD_TIMEOUT = 1.0
BODY_IDLE_TIMEOUT = 1.0
MAX_CONNECTIONS = 200
PATIENCE = 10.0  # seconds a test waits for the server to act; it acts within about a second


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, server_url: str) -> Iterator[RunningProcess]:
    """One `gateway serve` of the demo with short timeouts and a small connection cap."""
    from tests.conftest import create_database, drop_database

    name = f"gateway_limits_{int(time.time() * 1000) % 10**8}"
    url = create_database(server_url, name)
    from demo.database import install

    install(url)
    port = free_port()
    env = child_env(
        {
            "GATEWAY_DATABASE_URL": url,
            "GATEWAY_LOG_LEVEL": "WARNING",
            "GATEWAY_REQUEST_HEAD_TIMEOUT": str(HEAD_TIMEOUT),
            "GATEWAY_REQUEST_BODY_IDLE_TIMEOUT": str(BODY_IDLE_TIMEOUT),
            "GATEWAY_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        }
    )
    log = tmp_path_factory.mktemp("limits") / "gateway.log"
    try:
        with running_server(
            gateway_command("serve", "--port", str(port)), env, port, log
        ) as server:
            yield server
    finally:
        drop_database(server_url, name)


def connect(server: RunningProcess) -> socket.socket:
    connection = socket.create_connection((LOCALHOST, server.port), timeout=PATIENCE)
    return connection


def read_until_closed(connection: socket.socket) -> bytes:
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := connection.recv(65536):
            received += chunk
    return received


def status_and_body(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def healthy(server: RunningProcess) -> bool:
    return httpx.get(f"{server.base_url}/healthz", timeout=PATIENCE).status_code == 200


def test_a_request_line_beyond_8_kib_is_414_and_closed(gateway: RunningProcess) -> None:
    with connect(gateway) as connection:
        connection.sendall(b"GET /users?q=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        status, body = status_and_body(read_until_closed(connection))
    assert status == 414
    assert body["error"]["code"] == "request_uri_too_long"  # type: ignore[index]
    assert "8192 bytes" in body["error"]["message"]  # type: ignore[index]
    assert healthy(gateway)


def test_headers_beyond_64_kib_are_431_and_closed(gateway: RunningProcess) -> None:
    with connect(gateway) as connection:
        headers = b"".join(b"X-Filler-%d: %s\r\n" % (n, b"b" * 1000) for n in range(70))
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        status, body = status_and_body(read_until_closed(connection))
    assert status == 431
    assert "65536 bytes" in body["error"]["message"]  # type: ignore[index]
    assert healthy(gateway)


def test_a_huge_header_is_cut_off_after_its_first_reads(gateway: RunningProcess) -> None:
    """64 MB of one header: the server answers and closes long before it is all sent."""
    chunk = b"c" * (1024 * 1024)
    sent = 0
    with connect(gateway) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: ")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(64):
                connection.sendall(chunk)
                sent += len(chunk)
        answer = read_until_closed(connection)
    assert sent < 64 * len(chunk)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert healthy(gateway)


def test_a_connection_that_sends_nothing_is_closed(gateway: RunningProcess) -> None:
    with connect(gateway) as connection:
        opened = time.monotonic()
        answer = read_until_closed(connection)
        waited = time.monotonic() - opened
    assert answer == b""
    assert waited < PATIENCE


def test_a_head_that_never_ends_is_408_and_closed(gateway: RunningProcess) -> None:
    with connect(gateway) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
        answer = read_until_closed(connection)
    assert answer.startswith(b"HTTP/1.1 408 ")


def test_a_body_that_stops_arriving_closes_the_connection(gateway: RunningProcess) -> None:
    with connect(gateway) as connection:
        connection.sendall(
            b"POST /users HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"email": '
        )
        opened = time.monotonic()
        read_until_closed(connection)
        waited = time.monotonic() - opened
    assert waited < PATIENCE
    assert healthy(gateway)


def test_beyond_the_connection_cap_the_longest_idle_is_shed(gateway: RunningProcess) -> None:
    silent = [connect(gateway) for _ in range(MAX_CONNECTIONS + 50)]
    try:
        assert healthy(gateway)
        assert read_until_closed(silent[0]) == b""  # the oldest went first
    finally:
        for connection in silent:
            connection.close()


def closed_so_far(server: RunningProcess) -> dict[str, float]:
    """gateway_connections_closed_total by reason, as the server's /metrics says."""
    text = httpx.get(f"{server.base_url}/metrics", timeout=PATIENCE).text
    prefix = 'gateway_connections_closed_total{reason="'
    return {
        line[len(prefix) :].split('"', 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix)
    }


def test_connections_cut_short_are_counted_by_reason(gateway: RunningProcess) -> None:
    before = closed_so_far(gateway)
    with connect(gateway) as connection:
        connection.sendall(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        read_until_closed(connection)
    with connect(gateway) as connection:
        connection.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n")
        read_until_closed(connection)
    with connect(gateway) as connection:
        read_until_closed(connection)
    with connect(gateway) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        read_until_closed(connection)
    after = closed_so_far(gateway)
    counted = {reason: after[reason] - before.get(reason, 0.0) for reason in after}
    assert counted["request_line_too_long"] == 1
    assert counted["headers_too_large"] == 1
    assert counted["silent"] >= 1  # other tests' connections may time out meanwhile
    assert counted["head_timeout"] == 1


def test_a_client_is_answered_while_19000_silent_sockets_are_open(
    gateway: RunningProcess,
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    count = min(19_000, hard - 500)
    silent: list[socket.socket] = []
    try:
        for _ in range(count):
            silent.append(connect(gateway))
        assert len(silent) == count
        assert healthy(gateway)
        assert healthy(gateway)
    finally:
        for connection in silent:
            connection.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_protocol_keeps_what_it_relies_on_in_uvicorn() -> None:
    """Fails loudly when a uvicorn release moves what gateway.ops.http_protocol extends."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    for name in (
        "connection_made", "connection_lost", "data_received", "on_url", "on_header",
        "on_headers_complete", "on_body", "on_message_complete", "on_response_complete",
    ):  # fmt: skip
        assert callable(getattr(HttpToolsProtocol, name)), name
    assert Path(HttpToolsProtocol.__init__.__code__.co_filename).name == "httptools_impl.py"
