"""Real gateway processes under faults: a database restart during load; 1,000 connections on 5."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from demo.database import install
from gateway.database.engines import sync_url
from shared_models.seed import DemoSize, seed
from tests.processes import (
    PrivatePostgres,
    RunningProcess,
    child_env,
    free_port,
    gateway_command,
    running_server,
    started_private_postgres,
)
from tests.test_server_processes import Answer, exchange, percentile, raise_open_files_limit

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

POOL_TIMEOUT = 2.0
RECOVERY_MARGIN = 1.0
LOAD_SECONDS = 24.0
RESTART_AT = 8.0
OUTAGE_SECONDS = 2.0
PAUSE_BETWEEN_REQUESTS = 0.01
READY_POLL_SECONDS = 0.1
CLIENT_TIMEOUT = 10.0
ADMIN_TOKEN = "s3cret"
ITEM_ROUTE = "GET /items/{item_id}"
SMALL_DEMO = DemoSize(users=20, items=10, orders=10, documents=0)
CONNECTIONS = 1_000
ASYNC_POOL_SIZE = 5
WAVE_DEADLINE_SECONDS = 60.0
P99_OVER_P50 = 3.0
FAIR_POOL_TIMEOUT = 10.0


@dataclass(frozen=True)
class Outcome:
    kind: str
    started: float
    finished: float
    status: int | None
    retry_after: str | None = None
    body: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Restart:
    stopping: float = 0.0
    stopped: float = 0.0
    starting: float = 0.0
    started: float = 0.0

    @property
    def errors_end(self) -> float:
        """Until when errors are allowed: the restart, then one pool timeout, plus a margin."""
        return self.started + POOL_TIMEOUT + RECOVERY_MARGIN


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """The demo's schema and a small seed, with stock enough for every order."""
    with started_private_postgres("gateway-restart-") as postgres:
        install(postgres.url)
        engine = create_engine(sync_url(postgres.url), poolclass=NullPool)
        seed(engine, SMALL_DEMO)
        engine.dispose()
        with psycopg.connect(postgres.url, autocommit=True) as connection:
            connection.execute("UPDATE items SET stock = 1000000")
        yield postgres


@pytest.fixture
def gateway_on_private_postgres(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> Iterator[RunningProcess]:
    port = free_port()
    env = child_env(
        {
            "GATEWAY_DATABASE_URL": private_postgres.url,
            "GATEWAY_POOL_TIMEOUT": str(POOL_TIMEOUT),
            "GATEWAY_ADMIN_TOKENS": f'{{"ops": "{ADMIN_TOKEN}"}}',
            "GATEWAY_LOG_LEVEL": "WARNING",
        }
    )
    command = gateway_command("serve", "--port", str(port))
    with running_server(command, env, port, tmp_path / "gateway.log") as server:
        yield server


class Load:
    """Request loops recording every outcome until `stop` is set."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.outcomes: list[Outcome] = []
        self.readiness: list[Outcome] = []
        self.stop = anyio.Event()

    async def request(self, kind: str, method: str, path: str, body: Any = None) -> Outcome:
        started = time.monotonic()
        try:
            response = await self.client.request(method, path, json=body)
        except httpx.TransportError as error:
            return Outcome(kind, started, time.monotonic(), None, error=repr(error))
        try:
            parsed = response.json()
        except ValueError:
            parsed = response.text
        retry_after = response.headers.get("retry-after")
        return Outcome(kind, started, time.monotonic(), response.status_code, retry_after, parsed)

    async def loop(self, kind: str, method: str, path_for: str, offset: int) -> None:
        count = offset
        while not self.stop.is_set():
            count += 1
            path = path_for.format(n=count % min(SMALL_DEMO.users, SMALL_DEMO.items) + 1)
            body = order_body(count) if method == "POST" else None
            self.outcomes.append(await self.request(kind, method, path, body))
            await anyio.sleep(PAUSE_BETWEEN_REQUESTS)

    async def poll_readiness(self) -> None:
        while not self.stop.is_set():
            self.readiness.append(await self.request("readyz", "GET", "/readyz"))
            await anyio.sleep(READY_POLL_SECONDS)


def order_body(count: int) -> dict[str, Any]:
    item_id = count % SMALL_DEMO.items + 1
    return {"user_id": count % SMALL_DEMO.users + 1, "lines": [{"item_id": item_id, "quantity": 1}]}


def restart(postgres: PrivatePostgres, times: Restart) -> None:
    times.stopping = time.monotonic()
    postgres.stop_fast()
    times.stopped = time.monotonic()
    time.sleep(OUTAGE_SECONDS)
    times.starting = time.monotonic()
    postgres.start_again()
    times.started = time.monotonic()


async def set_items_async(client: httpx.AsyncClient) -> None:
    response = await client.put(
        f"/admin/routes/{quote(ITEM_ROUTE, safe='')}",
        json={"mode": "async", "reason": "restart test"},
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert response.status_code == 200, response.text
    served = await client.get("/items/1")
    assert served.headers["x-gateway-impl"] == "async"


async def run_load_with_restart(base_url: str, postgres: PrivatePostgres) -> tuple[Load, Restart]:
    times = Restart()
    async with httpx.AsyncClient(base_url=base_url, timeout=CLIENT_TIMEOUT) as client:
        await set_items_async(client)
        load = Load(client)
        async with anyio.create_task_group() as group:
            for offset in (0, 7):
                group.start_soon(load.loop, "legacy read", "GET", "/users/{n}", offset)
                group.start_soon(load.loop, "async read", "GET", "/items/{n}", offset)
                group.start_soon(load.loop, "legacy write", "POST", "/orders", offset)
            group.start_soon(load.poll_readiness)
            began = time.monotonic()
            await anyio.sleep(RESTART_AT)
            await anyio.to_thread.run_sync(restart, postgres, times)
            await anyio.sleep(max(0.0, began + LOAD_SECONDS - time.monotonic()))
            load.stop.set()
    return load, times


def assert_uniform_unavailable(outcome: Outcome) -> None:
    assert outcome.status == 503, outcome
    assert outcome.retry_after == "1", outcome
    assert isinstance(outcome.body, dict), outcome
    assert set(outcome.body) == {"error"}, outcome
    assert outcome.body["error"]["code"] == "unavailable", outcome
    assert set(outcome.body["error"]) == {"code", "message", "details"}, outcome
    assert "traceback" not in str(outcome.body).lower(), outcome


def stored_order_ids(url: str, ids: Sequence[int]) -> set[int]:
    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute("SELECT id FROM orders WHERE id = ANY(%s)", (list(ids),))
        return {int(row[0]) for row in rows}


def summary(load: Load, times: Restart) -> str:
    counts = Counter((o.kind, o.status) for o in load.outcomes)
    last_error = max((o.finished for o in load.outcomes if not o.ok), default=times.started)
    return (
        f"\nrestart: stop took {times.stopped - times.stopping:.2f} s, start "
        f"{times.started - times.starting:.2f} s, last error {last_error - times.started:.2f} s "
        f"after the start; outcomes {dict(sorted(counts.items(), key=str))}"
    )


async def test_database_restart_during_load_costs_only_quick_503s(
    gateway_on_private_postgres: RunningProcess, private_postgres: PrivatePostgres
) -> None:
    load, times = await run_load_with_restart(
        gateway_on_private_postgres.base_url, private_postgres
    )
    print(summary(load, times))

    failed = [o for o in load.outcomes if not o.ok]
    for outcome in failed:
        assert times.stopping <= outcome.finished and outcome.started <= times.errors_end, (
            outcome,
            times,
        )
    assert {o.kind for o in failed} == {"legacy read", "async read", "legacy write"}
    after = [o for o in load.outcomes if o.started > times.errors_end]
    assert len(after) > 100
    assert all(o.ok for o in after)

    while_down = [
        o for o in load.readiness if o.started >= times.stopped and o.finished <= times.starting
    ]
    assert while_down and {o.status for o in while_down} == {503}, load.readiness
    recovered = [o for o in load.readiness if o.started > times.errors_end]
    assert recovered and {o.status for o in recovered} == {200}, recovered

    acknowledged = [o.body["id"] for o in load.outcomes if o.status == 201]
    assert len(acknowledged) > 50
    assert stored_order_ids(private_postgres.url, acknowledged) == set(acknowledged)

    not_503 = Counter((o.kind, o.status) for o in failed if o.status != 503)
    assert not not_503, f"errors other than 503: {dict(not_503)}"
    for outcome in failed:
        assert_uniform_unavailable(outcome)


@pytest.fixture
def async_gateway(committed_database: str, tmp_path: Path) -> Iterator[RunningProcess]:
    """`gateway serve` serving twin routes async, on an async pool of 5 connections."""
    port = free_port()
    env = child_env(
        {
            "GATEWAY_DATABASE_URL": committed_database,
            "GATEWAY_DEFAULT_MODE": "async",
            "GATEWAY_ASYNC_POOL_SIZE": str(ASYNC_POOL_SIZE),
            "GATEWAY_ASYNC_MAX_OVERFLOW": "0",
            "GATEWAY_POOL_TIMEOUT": str(FAIR_POOL_TIMEOUT),
            "GATEWAY_LOG_LEVEL": "WARNING",
        }
    )
    command = gateway_command("serve", "--port", str(port))
    with running_server(command, env, port, tmp_path / "server.log") as server:
        yield server


def latency_figures(answers: Sequence[Answer]) -> tuple[float, float, float]:
    latencies = sorted(answer.seconds for answer in answers)
    return percentile(latencies, 0.5), percentile(latencies, 0.99), latencies[-1]


async def test_async_route_answers_1000_connections_fairly_on_5_pool_connections(
    async_gateway: RunningProcess,
) -> None:
    raise_open_files_limit()
    exchanges = [exchange(async_gateway.port, "/items/1", 1) for _ in range(CONNECTIONS)]
    with anyio.fail_after(WAVE_DEADLINE_SECONDS):
        results = await asyncio.gather(*exchanges)
    answers = [answer for answers in results for answer in answers]
    served = [answer for answer in answers if answer.status == 200]
    refused = [answer for answer in answers if answer.status == 503]
    p50, p99, slowest = latency_figures(served)
    print(
        f"\n{CONNECTIONS} connections, async pool {ASYNC_POOL_SIZE}: {len(served)} x 200, "
        f"{len(refused)} x 503; 200s p50 {p50:.3f} s, p99 {p99:.3f} s, max {slowest:.3f} s, "
        f"p99/p50 {p99 / p50:.2f}"
    )

    assert len(answers) == CONNECTIONS
    assert Counter((a.status, a.impl, a.error) for a in answers) <= Counter(
        {(200, "async", None): CONNECTIONS, (503, "async", None): CONNECTIONS}
    )
    assert served
    assert all(answer.seconds <= FAIR_POOL_TIMEOUT + RECOVERY_MARGIN for answer in refused)
    assert p99 <= P99_OVER_P50 * p50
