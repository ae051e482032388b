"""Metrics of real gateway processes: two workers share one exposition; `gateway report`."""

from __future__ import annotations

import http.client
import json
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import psutil
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from demo.app import LEGACY_ROUTERS, create_demo_app
from tests.processes import (
    LOCALHOST,
    RunningProcess,
    child_env,
    connection_owners,
    free_port,
    gateway_command,
    process_family,
    running_server,
    stop_process,
    stop_processes,
)
from tests.test_metrics import slow_router

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

REPOSITORY = Path(__file__).resolve().parents[1]
WORKERS = 2
THREADPOOL_SIZE = 7
REQUESTS_SENT = 200
BATCH = 20
SEEDED_USERS = 12
DEADLINE_SECONDS = 30.0
SAMPLER_SECONDS = 0.35
REPORT_WINDOW = 2
USER_COUNT = "gateway_request_duration_seconds_count"
USER_LABELS = {"method": "GET", "route": "GET /users/{user_id}", "impl": "legacy", "status": "200"}


def metric_value(exposition: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def gateway_env(database_url: str) -> dict[str, str]:
    return child_env(
        {
            "GATEWAY_DATABASE_URL": database_url,
            "GATEWAY_LOG_LEVEL": "WARNING",
            "GATEWAY_THREADPOOL_SIZE": str(THREADPOOL_SIZE),
            "GATEWAY_SYNC_POOL_SIZE": "4",
            "GATEWAY_SYNC_MAX_OVERFLOW": "4",
            "GATEWAY_ASYNC_POOL_SIZE": "4",
            "PYTHONPATH": str(REPOSITORY),
        }
    )


def worker_processes(server: RunningProcess) -> list[psutil.Process]:
    """The server's descendants that listen on its port."""
    return [
        process
        for process in process_family(server.process.pid)[1:]
        if any(
            c.status == psutil.CONN_LISTEN and c.laddr.port == server.port
            for c in process.net_connections(kind="tcp4")
        )
    ]


def wait_for_workers(server: RunningProcess, count: int) -> list[psutil.Process]:
    deadline = time.monotonic() + DEADLINE_SECONDS
    workers = worker_processes(server)
    while len(workers) < count:
        assert time.monotonic() < deadline, f"{len(workers)} workers:\n{server.log()}"
        time.sleep(0.1)
        workers = worker_processes(server)
    return workers


@contextmanager
def served(command: Sequence[str], env: dict[str, str], log: Path) -> Iterator[RunningProcess]:
    """A running server; on the way out it and every process it started are stopped by PID."""
    port = free_port()
    descendants: list[psutil.Process] = []
    try:
        with running_server([*command, "--port", str(port)], env, port, log) as server:
            try:
                yield server
            finally:
                descendants.extend(process_family(server.process.pid)[1:])
    finally:
        stop_processes(descendants)


@dataclass(frozen=True)
class Answer:
    worker: int
    status: int
    body: bytes


def get_on_fresh_connections(
    port: int, workers: Sequence[psutil.Process], paths: Sequence[str]
) -> list[Answer]:
    """GET each path on a new connection, kept open until the worker holding it is known."""
    answered: list[tuple[int, int, bytes]] = []
    with ExitStack() as open_connections:
        for path in paths:
            connection = http.client.HTTPConnection(LOCALHOST, port, timeout=10)
            open_connections.callback(connection.close)
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            assert connection.sock is not None
            answered.append((connection.sock.getsockname()[1], response.status, body))
        owners = connection_owners(workers, port)
    return [Answer(owners[client_port], status, body) for client_port, status, body in answered]


def metrics_directory(workers: Sequence[psutil.Process]) -> Path:
    directories = {worker.environ().get("GATEWAY_METRICS_DIR") for worker in workers}
    assert len(directories) == 1, directories
    (directory,) = directories
    assert directory, "the workers have no GATEWAY_METRICS_DIR"
    return Path(directory)


def scrapes_until_each_worker_answered(
    port: int, workers: Sequence[psutil.Process]
) -> dict[int, list[str]]:
    """Scrape /metrics on fresh connections until every worker has answered at least once."""
    by_worker: dict[int, list[str]] = {int(worker.pid): [] for worker in workers}
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not all(by_worker.values()):
        assert time.monotonic() < deadline, {pid: len(s) for pid, s in by_worker.items()}
        for answer in get_on_fresh_connections(port, workers, ["/metrics"] * 5):
            assert answer.status == 200, answer.body
            by_worker[answer.worker].append(answer.body.decode())
    return by_worker


def test_two_workers_expose_the_sum_of_both(committed_database: str, tmp_path: Path) -> None:
    command = gateway_command("serve", "--workers", str(WORKERS))
    with served(command, gateway_env(committed_database), tmp_path / "server.log") as server:
        workers = wait_for_workers(server, WORKERS)
        try:
            directory = metrics_directory(workers)
            assert directory.is_dir()
            assert any(directory.iterdir())
            answers = send_user_requests(server.port, workers)
            time.sleep(SAMPLER_SECONDS)
            scrapes = scrapes_until_each_worker_answered(server.port, workers)
            stopped = stop_process(server.process)
        finally:
            stop_processes(workers)

    served_by = Counter(answer.worker for answer in answers)
    print(f"requests per worker: {dict(served_by)}")
    assert {answer.status for answer in answers} == {200}
    assert set(served_by) == {int(worker.pid) for worker in workers}
    for pid, texts in scrapes.items():
        counts = {metric_value(text, USER_COUNT, **USER_LABELS) for text in texts}
        assert counts == {len(answers)}, (pid, counts)
        capacities = {metric_value(text, "gateway_threadpool_capacity") for text in texts}
        assert capacities == {WORKERS * THREADPOOL_SIZE}, (pid, capacities)
    assert not stopped.killed, server.log()
    assert not directory.exists(), sorted(p.name for p in directory.iterdir())


def send_user_requests(port: int, workers: Sequence[psutil.Process]) -> list[Answer]:
    """GET /users/{id} on fresh connections: REQUESTS_SENT times, more until each worker served.

    The kernel hands each connection to whichever worker accepts first; a busy
    machine can let one worker take a whole batch.
    """
    paths = [f"/users/{index % SEEDED_USERS + 1}" for index in range(BATCH)]
    answers: list[Answer] = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    while len(answers) < REQUESTS_SENT or len({a.worker for a in answers}) < len(workers):
        assert time.monotonic() < deadline, Counter(answer.worker for answer in answers)
        answers += get_on_fresh_connections(port, workers, paths)
    return answers


def slow_app() -> FastAPI:
    """The gateway from the `GATEWAY_*` settings, plus a deliberately slow legacy route."""
    return create_demo_app(legacy_routers=[*LEGACY_ROUTERS, slow_router()])


@asynccontextmanager
async def load(base_url: str, paths: Sequence[str]) -> AsyncIterator[Counter[int]]:
    """One request loop per path until the block ends; yields the statuses answered."""
    statuses: Counter[int] = Counter()
    stop = anyio.Event()

    async def loop(client: httpx.AsyncClient, path: str) -> None:
        while not stop.is_set():
            statuses[(await client.get(path)).status_code] += 1

    async with (
        httpx.AsyncClient(base_url=base_url, timeout=10) as client,
        anyio.create_task_group() as group,
    ):
        for path in paths:
            group.start_soon(loop, client, path)
        try:
            yield statuses
        finally:
            stop.set()


async def test_report_command_ranks_the_slow_legacy_route_first(
    committed_database: str, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "uvicorn", "--factory", f"{__name__}:slow_app"]
    command += ["--host", LOCALHOST, "--log-level", "warning"]
    env = gateway_env(committed_database)
    with served(command, env, tmp_path / "server.log") as server:
        paths = [*["/slow"] * 4, "/users/1", "/items/1"]
        async with load(server.base_url, paths) as statuses:
            await anyio.sleep(0.3)
            report_command = gateway_command(
                "report", "--url", server.base_url, "--window", str(REPORT_WINDOW), "--json"
            )
            finished = await anyio.run_process(report_command, env=env, check=False)

    assert finished.returncode == 0, finished.stderr.decode()
    report: dict[str, Any] = json.loads(finished.stdout)
    assert set(statuses) == {200}, statuses
    first = report["routes"][0]
    assert first["route"] == "GET /slow", json.dumps(report["routes"][:3], indent=1)
    assert first["threadpool_share"] > 0.5
    assert "threadpool time" in first["why"]
    assert report["window_seconds"] == REPORT_WINDOW
