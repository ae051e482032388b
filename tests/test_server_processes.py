"""Real gateway processes: legacy routes under 1,000 concurrent connections; the embedded start."""

from __future__ import annotations

import asyncio
import resource
import signal
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import make_url

from shared_models.models import EMBEDDING_DIMENSIONS
from shared_models.seed import DemoSize
from tests.processes import (
    LOCALHOST,
    RunningProcess,
    child_env,
    free_port,
    gateway_command,
    running_server,
    stop_postgres_using,
    stop_process,
    wait_for_no_postgres,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CONNECTIONS = 1_000
KEEP_ALIVE_REQUESTS = 3
SYNC_POOL_SIZE = 5
# A burst of legacy requests drains as one queue: FastAPI also validates a `def` endpoint's
# response in the FIFO threadpool, behind every endpoint call queued before it, so each request
# takes about as long as the whole wave (3 to 5 s for 1,000 requests on two CPUs). A thread that
# waits longer than pool_timeout (10 s) for a connection fails its request instead of being
# slow; 20 s is four times the drain time. A stalled pool answers nothing: the wave deadline
# below stops the test then.
SLOWEST_ALLOWED_SECONDS = 20.0
# Nothing may hang the suite: a wave that deadlocks is cancelled after this.
WAVE_DEADLINE_SECONDS = 60.0
EMBEDDED_START_SECONDS = 90.0
SHUTDOWN_SECONDS = 20.0
# A process that stopped on SIGTERM after cleaning up exits normally (0 or 128 + SIGTERM); one
# that died of the signal (returncode -SIGTERM) skipped its cleanup.
GRACEFUL_EXIT_CODES = {0, 128 + signal.SIGTERM}


@dataclass(frozen=True)
class Answer:
    status: int
    impl: str | None
    seconds: float
    error: str | None = None


def raise_open_files_limit() -> None:
    """Let this process hold every test connection: the soft limit goes up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def request_bytes(path: str, *, close: bool) -> bytes:
    connection = "close" if close else "keep-alive"
    return f"GET {path} HTTP/1.1\r\nHost: {LOCALHOST}\r\nConnection: {connection}\r\n\r\n".encode()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *header_lines = head.split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split(" ", 2)[1]), headers


async def exchange(port: int, path: str, requests: int) -> list[Answer]:
    """Send `requests` sequential requests on one connection (the last closes it)."""
    answers: list[Answer] = []
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection(LOCALHOST, port)
    except OSError as error:
        return [Answer(0, None, time.perf_counter() - started, repr(error))]
    try:
        for index in range(requests):
            writer.write(request_bytes(path, close=index == requests - 1))
            await writer.drain()
            status, headers = await read_response(reader)
            now = time.perf_counter()
            answers.append(Answer(status, headers.get("x-gateway-impl"), now - started))
            started = now
    except (OSError, asyncio.IncompleteReadError) as error:
        answers.append(Answer(0, None, time.perf_counter() - started, repr(error)))
    finally:
        writer.close()
        with suppress(OSError):
            await writer.wait_closed()
    return answers


async def wave(port: int, path: str, requests_per_connection: int) -> list[Answer]:
    exchanges = [exchange(port, path, requests_per_connection) for _ in range(CONNECTIONS)]
    results = await asyncio.wait_for(asyncio.gather(*exchanges), WAVE_DEADLINE_SECONDS)
    return [answer for answers in results for answer in answers]


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def report(name: str, answers: Sequence[Answer]) -> float:
    """Print count, p50, p99 and max latency; return the max."""
    latencies = sorted(answer.seconds for answer in answers)
    print(
        f"\n{name}: {len(answers)} requests, p50 {percentile(latencies, 0.50):.3f} s, "
        f"p99 {percentile(latencies, 0.99):.3f} s, max {latencies[-1]:.3f} s"
    )
    return latencies[-1]


def assert_all_legacy_ok(answers: Sequence[Answer], expected: int) -> None:
    outcomes = Counter((a.status, a.impl, a.error) for a in answers)
    assert outcomes == Counter({(200, "legacy", None): expected}), outcomes.most_common(5)


def libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def sync_connection_states(database_url: str) -> Counter[str]:
    query = (
        "SELECT state FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = 'gateway-sync'"
    )
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        return Counter(str(row[0]) for row in connection.execute(query))


@pytest.fixture
def legacy_server(committed_database: str, tmp_path: Path) -> Iterator[RunningProcess]:
    """`gateway serve` (uvicorn, draining uvloop) with a sync pool of 5 for 40 threads."""
    port = free_port()
    env = child_env(
        {
            "GATEWAY_DATABASE_URL": committed_database,
            "GATEWAY_SYNC_POOL_SIZE": str(SYNC_POOL_SIZE),
            "GATEWAY_SYNC_MAX_OVERFLOW": "0",
            "GATEWAY_THREADPOOL_SIZE": "40",
            "GATEWAY_LOG_LEVEL": "WARNING",
        }
    )
    command = gateway_command("serve", "--port", str(port))
    with running_server(command, env, port, tmp_path / "server.log") as server:
        yield server


async def test_legacy_route_serves_1000_concurrent_connections(
    legacy_server: RunningProcess, committed_database: str
) -> None:
    raise_open_files_limit()
    port = legacy_server.port

    single = await wave(port, "/users/1", 1)
    slowest_single = report("one request per connection", single)
    keep_alive = await wave(port, "/users/1", KEEP_ALIVE_REQUESTS)
    slowest_keep_alive = report(f"{KEEP_ALIVE_REQUESTS} keep-alive requests", keep_alive)

    assert_all_legacy_ok(single, CONNECTIONS)
    assert_all_legacy_ok(keep_alive, CONNECTIONS * KEEP_ALIVE_REQUESTS)
    assert slowest_single < SLOWEST_ALLOWED_SECONDS
    assert slowest_keep_alive < SLOWEST_ALLOWED_SECONDS
    async with httpx.AsyncClient(base_url=legacy_server.base_url, timeout=5.0) as client:
        assert (await client.get("/healthz")).status_code == 200
    states = sync_connection_states(committed_database)
    assert "idle in transaction" not in states, states
    assert 1 <= sum(states.values()) <= SYNC_POOL_SIZE, states


def user_total(client: httpx.Client) -> int:
    response = client.get("/users")
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


def check_fresh_embedded_app(client: httpx.Client) -> None:
    user = client.get("/users/1")
    assert user.status_code == 200, user.text
    assert user.headers["x-gateway-impl"] == "legacy"
    search = client.post(
        "/documents/search", json={"embedding": [0.5] * EMBEDDING_DIMENSIONS, "limit": 3}
    )
    assert search.status_code == 200, search.text
    assert search.headers["x-gateway-impl"] == "async"
    assert len(search.json()) == 3
    assert client.get("/readyz").json()["checks"]["extension vector"] == "ok"
    assert client.get("/docs").status_code == 200
    openapi = client.get("/openapi.json")
    assert openapi.text.count('"/users/{user_id}"') == 1
    assert set(openapi.json()["paths"]["/users/{user_id}"]) == {"get", "patch", "delete"}


def stop_and_check_released(running: RunningProcess, data_dir: Path) -> None:
    stopped = stop_process(running.process, SHUTDOWN_SECONDS)
    assert not stopped.killed, running.log()
    assert stopped.returncode in GRACEFUL_EXIT_CODES, running.log()
    assert wait_for_no_postgres(data_dir, deadline_seconds=10.0) == []


@pytest.fixture
def embedded_data_dir(tmp_path: Path) -> Iterator[Path]:
    data_dir = tmp_path / "data"
    try:
        yield data_dir
    finally:
        stop_postgres_using(data_dir)


@contextmanager
def embedded_gateway(data_dir: Path, log_path: Path) -> Iterator[RunningProcess]:
    """`gateway serve` with no database URL: it runs the embedded PostgreSQL in `data_dir`."""
    port = free_port()
    env = child_env({"GATEWAY_DATA_DIR": str(data_dir), "GATEWAY_LOG_LEVEL": "WARNING"})
    command = gateway_command("serve", "--port", str(port))
    with running_server(
        command, env, port, log_path, deadline_seconds=EMBEDDED_START_SECONDS
    ) as running:
        yield running


@contextmanager
def http(running: RunningProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running.base_url, timeout=10.0) as client:
        yield client


def test_serve_starts_embedded_postgres_from_nothing_and_keeps_data(
    embedded_data_dir: Path, tmp_path: Path
) -> None:
    assert not embedded_data_dir.exists()
    with (
        embedded_gateway(embedded_data_dir, tmp_path / "first.log") as first,
        http(first) as client,
    ):
        check_fresh_embedded_app(client)
        seeded_total = user_total(client)
        assert seeded_total == DemoSize().users
        created = client.post("/users", json={"email": "kept@example.com", "name": "Kept"})
        assert created.status_code == 201, created.text
        stop_and_check_released(first, embedded_data_dir)

    with (
        embedded_gateway(embedded_data_dir, tmp_path / "second.log") as second,
        http(second) as client,
    ):
        again = client.get(f"/users/{created.json()['id']}")
        assert again.status_code == 200, again.text
        assert again.json()["email"] == "kept@example.com"
        assert user_total(client) == seeded_total + 1
        stop_and_check_released(second, embedded_data_dir)
