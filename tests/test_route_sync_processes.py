"""Route modes shared by gateway processes: propagation, restart, lost listener, CLI, workers."""

from __future__ import annotations

import http.client
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psutil
import psycopg
import pytest
from sqlalchemy import make_url

from tests.processes import (
    LOCALHOST,
    ProcessFailed,
    RunningProcess,
    child_env,
    connection_owners,
    free_port,
    gateway_command,
    process_family,
    start_process,
    stop_process,
    stop_processes,
    wait_until_listening,
    wait_until_ok,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ROUTE = "GET /users/{user_id}"
PROBE_PATH = "/users/1"
WRITE_ROUTE = "POST /users"
ADMIN_TOKEN = "s3cret"
ADMIN_TOKENS = '{"ops": "s3cret"}'
ADMIN_NAME = "ops"
READ = {"authorization": f"Bearer {ADMIN_TOKEN}"}  # every admin read needs a token
LISTENER_QUERY = (
    "FROM pg_stat_activity "
    "WHERE application_name = 'gateway-listener' AND datname = current_database()"
)
PROPAGATION_SECONDS = 1.0
FALLBACK_SECONDS = 3.0
POLL_SECONDS = 0.02
GIVE_UP_SECONDS = 10.0
RECONNECT_SECONDS = 15.0
START_SECONDS = 60.0
START_ATTEMPTS = 3
COMMAND_SECONDS = 60.0
WORKERS = 2
FRESH_CONNECTION_REQUESTS = 40


@dataclass(frozen=True)
class Wanted:
    mode: str
    percent: int
    serves: str

    def body(self, reason: str) -> dict[str, Any]:
        if self.mode == "canary":
            return {"mode": self.mode, "percent": self.percent, "reason": reason}
        return {"mode": self.mode, "reason": reason}


ASYNC = Wanted("async", 0, "async")
LEGACY = Wanted("legacy", 0, "legacy")
CANARY_ALL = Wanted("canary", 100, "async")


def gateway_env(database_url: str | None, **values: str) -> dict[str, str]:
    settings = {
        "GATEWAY_ADMIN_TOKENS": ADMIN_TOKENS,
        "GATEWAY_LOG_LEVEL": "WARNING",
        # Longer than any test: only LISTEN/NOTIFY, or polling while not listening, propagates.
        "GATEWAY_ROUTE_RELOAD_SECONDS": "600",
    }
    if database_url is not None:
        settings["GATEWAY_DATABASE_URL"] = database_url
    return child_env({**settings, **values})


def uvicorn_command(port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "demo.app:app",
        "--host", LOCALHOST, "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip


def serve_workers_command(port: int) -> list[str]:
    return gateway_command("serve", "--port", str(port), "--workers", str(WORKERS))


CommandForPort = Callable[[int], list[str]]


def launch(command_for: CommandForPort, env: dict[str, str], log_path: Path) -> RunningProcess:
    port = free_port()
    return RunningProcess(start_process(command_for(port), env, log_path), port, log_path)


@contextmanager
def gateways(
    database_url: str, log_dir: Path, *names: str, command_for: CommandForPort = uvicorn_command
) -> Iterator[list[RunningProcess]]:
    """One gateway per name, started together; each ready on a port it owns; all stopped by PID."""
    env = gateway_env(database_url)
    started: list[RunningProcess] = []
    descendants: list[psutil.Process] = []
    try:
        current = [launch(command_for, env, log_dir / f"{name}.log") for name in names]
        started.extend(current)
        for index, running in enumerate(current):
            attempt = 1
            while not wait_until_listening(running, START_SECONDS):
                if attempt == START_ATTEMPTS or "address already in use" not in running.log():
                    raise ProcessFailed(f"exited before listening:\n{running.log()}")
                running = launch(command_for, env, running.log_path)
                started.append(running)
                attempt += 1
            current[index] = running
            wait_until_ok(running, "/readyz", START_SECONDS)
        yield current
    finally:
        for running in started:
            descendants.extend(process_family(running.process.pid)[1:])
            stop_process(running.process)
        stop_processes(descendants)


@contextmanager
def clients(*servers: RunningProcess) -> Iterator[list[httpx.Client]]:
    with ExitStack() as stack:
        yield [
            stack.enter_context(httpx.Client(base_url=server.base_url, timeout=5.0, headers=READ))
            for server in servers
        ]


def query_column(database_url: str, query: str) -> list[Any]:
    url = make_url(database_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as connection:
        return [row[0] for row in connection.execute(query)]


def listener_pids(database_url: str) -> set[int]:
    return set(query_column(database_url, f"SELECT pid {LISTENER_QUERY}"))


def wait_for_listeners(
    database_url: str, count: int, *, replacing: set[int] | None = None
) -> set[int]:
    """Wait until `count` listening connections exist, none of them among `replacing`."""
    old = replacing or set()
    deadline = time.monotonic() + RECONNECT_SECONDS
    current = listener_pids(database_url) - old
    while len(current) != count and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        current = listener_pids(database_url) - old
    assert len(current) == count, f"listeners {current}, wanted {count} besides {old}"
    return current


def route_row(client: httpx.Client, key: str = ROUTE) -> dict[str, Any]:
    response = client.get("/admin/routes")
    assert response.status_code == 200, response.text
    rows = [row for row in response.json() if row["route"] == key]
    assert len(rows) == 1, response.text
    return dict(rows[0])


def served_by(client: httpx.Client) -> str:
    response = client.get(PROBE_PATH)
    assert response.status_code == 200, response.text
    return str(response.headers["x-gateway-impl"])


def applies(client: httpx.Client, wanted: Wanted) -> bool:
    """The instance lists `wanted` for the route and serves the probe with its implementation."""
    row = route_row(client)
    listed = (row["mode"], row["percent"]) == (wanted.mode, wanted.percent)
    return listed and served_by(client) == wanted.serves


def admin_put(
    client: httpx.Client, key: str, body: dict[str, Any], token: str | None = ADMIN_TOKEN
) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}" if token else ""}
    return client.put(f"/admin/routes/{quote(key, safe='')}", json=body, headers=headers)


def change_mode(client: httpx.Client, wanted: Wanted, reason: str) -> float:
    """Set `wanted` through the admin API; return the monotonic time of the 200."""
    response = admin_put(client, ROUTE, wanted.body(reason))
    answered = time.monotonic()
    assert response.status_code == 200, response.text
    assert response.json()["route"]["mode"] == wanted.mode
    return answered


def delay_until_applied(client: httpx.Client, wanted: Wanted, since: float) -> float:
    """Poll every 20 ms until the instance applies `wanted`; the seconds since `since`."""
    while not applies(client, wanted):
        assert time.monotonic() - since < GIVE_UP_SECONDS, f"{wanted} not applied"
        time.sleep(POLL_SECONDS)
    return time.monotonic() - since


def report_delays(name: str, delays: Sequence[float]) -> None:
    shown = ", ".join(f"{delay * 1000:.0f}" for delay in delays)
    print(f"\n{name}: {shown} ms (max {max(delays) * 1000:.0f} ms)")


def test_mode_changes_reach_the_other_process_within_a_second_and_survive_restarts(
    committed_database: str, tmp_path: Path
) -> None:
    with (
        gateways(committed_database, tmp_path, "a", "b") as (a, b),
        clients(a, b) as (on_a, on_b),
    ):
        wait_for_listeners(committed_database, 2)
        assert applies(on_b, LEGACY)
        delays = []
        for wanted in (ASYNC, LEGACY, CANARY_ALL, LEGACY, CANARY_ALL):
            answered = change_mode(on_a, wanted, reason=f"to {wanted.mode}")
            assert applies(on_a, wanted)
            delays.append(delay_until_applied(on_b, wanted, answered))
        report_delays("admin API on A -> applied on B", delays)
        assert max(delays) < PROPAGATION_SECONDS
    assert a.process.poll() is not None and b.process.poll() is not None

    with (
        gateways(committed_database, tmp_path, "a-again", "b-again") as restarted,
        clients(*restarted) as on_restarted,
    ):
        for client in on_restarted:
            assert applies(client, CANARY_ALL)
            row = route_row(client)
            assert (row["changed_by"], row["reason"]) == (ADMIN_NAME, "to canary")


def test_lost_listener_falls_back_to_polling_then_listens_again(
    committed_database: str, tmp_path: Path
) -> None:
    with (
        gateways(committed_database, tmp_path, "a", "b") as (a, b),
        clients(a, b) as (on_a, on_b),
    ):
        first = wait_for_listeners(committed_database, 2)
        terminate = f"SELECT pg_terminate_backend(pid) {LISTENER_QUERY}"
        assert query_column(committed_database, terminate) == [True, True]
        answered = change_mode(on_a, ASYNC, reason="while B polls")
        assert listener_pids(committed_database) - first == set()
        polled = delay_until_applied(on_b, ASYNC, answered)
        report_delays("listener lost: admin API on A -> applied on B", [polled])
        assert polled < FALLBACK_SECONDS
        assert "route listener lost" in b.log()

        wait_for_listeners(committed_database, 2, replacing=first)
        delays = []
        for wanted in (LEGACY, ASYNC):
            answered = change_mode(on_a, wanted, reason=f"listening again: {wanted.mode}")
            delays.append(delay_until_applied(on_b, wanted, answered))
        report_delays("listener back: admin API on A -> applied on B", delays)
        assert max(delays) < PROPAGATION_SECONDS


@contextmanager
def cli(*arguments: str, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """`gateway <arguments>` running; stopped by PID if still running when the block ends."""
    process = subprocess.Popen(
        gateway_command(*arguments), env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        yield process
    finally:
        stop_process(process)


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def finish(process: subprocess.Popen[bytes]) -> CliResult:
    stdout, stderr = process.communicate(timeout=COMMAND_SECONDS)
    return CliResult(process.returncode, stdout.decode(), stderr.decode())


def run_cli(*arguments: str, env: dict[str, str]) -> CliResult:
    with cli(*arguments, env=env) as process:
        return finish(process)


def listed_route(output: str, key: str) -> list[str]:
    """The columns after the route key in `gateway routes list` output."""
    lines = [line for line in output.splitlines() if line.startswith(f"{key} ")]
    assert len(lines) == 1, output
    return lines[0][len(key) :].split()


def error_message(response: httpx.Response) -> str:
    return f"{response.status_code}: {response.json()['error']['message']}"


def test_cli_changes_reach_a_running_process(committed_database: str, tmp_path: Path) -> None:
    direct = gateway_env(committed_database)
    through_api = gateway_env(None, GATEWAY_ADMIN_TOKEN=ADMIN_TOKEN)
    anonymous = gateway_env(None)
    with gateways(committed_database, tmp_path, "a") as (a,), clients(a) as (on_a,):
        wait_for_listeners(committed_database, 1)
        with cli("routes", "set", ROUTE, "async", "--reason", "cli", env=direct) as setting:
            started = time.monotonic()
            while not applies(on_a, ASYNC):
                assert setting.poll() in (None, 0), finish(setting)
                assert time.monotonic() - started < COMMAND_SECONDS, "the CLI change never applied"
                time.sleep(POLL_SECONDS)
            applied_at = time.time()
            result = finish(setting)
        assert result.returncode == 0, result
        assert result.stdout.strip() == f"{ROUTE}: async"
        row = route_row(on_a)
        assert row["changed_by"].startswith("cli:") and row["reason"] == "cli"
        delay = applied_at - datetime.fromisoformat(row["changed_at"]).timestamp()
        report_delays("CLI on the database -> applied on a running process", [delay])
        assert delay < PROPAGATION_SECONDS

        unauthorized = error_message(admin_put(on_a, ROUTE, LEGACY.body("no token"), token=None))
        shadow = {"mode": "shadow", "reason": "writes twice"}
        refused = error_message(admin_put(on_a, WRITE_ROUTE, shadow))
        url = ("--url", a.base_url)
        with (
            cli("routes", "list", env=direct) as listing,
            cli("routes", "set", ROUTE, "legacy", *url, env=anonymous) as without_token,
            cli("routes", "set", WRITE_ROUTE, "shadow", env=direct) as shadow_offline,
            cli("routes", "set", WRITE_ROUTE, "shadow", *url, env=through_api) as shadow_online,
        ):
            listed, rejected = finish(listing), finish(without_token)
            invalid = [finish(shadow_offline), finish(shadow_online)]
        assert listed.returncode == 0, listed
        assert listed_route(listed.stdout, ROUTE) == [
            "+".join(row["implementations"]), "async", "0", "legacy", row["changed_by"], "none",
        ]  # fmt: skip
        assert "live workers, all current" in listed.stdout
        assert rejected.returncode != 0 and unauthorized in rejected.stderr, rejected
        for result in invalid:
            assert result.returncode != 0 and refused in result.stderr, result
        assert route_row(on_a, WRITE_ROUTE)["changed_by"] is None
        assert applies(on_a, ASYNC)

        api_change = ("routes", "set", ROUTE, "legacy", "--reason", "api", *url)
        through = run_cli(*api_change, env=through_api)
        assert through.returncode == 0, through
        row = route_row(on_a)
        assert (row["changed_by"], row["reason"]) == (ADMIN_NAME, "api")
        assert applies(on_a, LEGACY)


def worker_processes(server: RunningProcess) -> list[psutil.Process]:
    """The server's descendants that listen on its port."""
    workers = []
    for process in process_family(server.process.pid)[1:]:
        try:
            connections = process.net_connections(kind="tcp4")
        except psutil.NoSuchProcess:  # a short-lived helper process, gone meanwhile
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == server.port for c in connections):
            workers.append(process)
    return workers


@dataclass(frozen=True)
class Answer:
    worker: int
    impl: str
    seconds: float


def answers_on_fresh_connections(
    port: int, workers: Sequence[psutil.Process], count: int, since: float
) -> list[Answer]:
    """GET the probe on `count` new connections, each kept open until its worker is known."""
    answered: list[tuple[int, str, float]] = []
    with ExitStack() as open_connections:
        for _ in range(count):
            connection = http.client.HTTPConnection(LOCALHOST, port, timeout=5)
            open_connections.callback(connection.close)
            connection.request("GET", PROBE_PATH)
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            assert connection.sock is not None
            client_port = connection.sock.getsockname()[1]
            impl = str(response.getheader("x-gateway-impl"))
            answered.append((client_port, impl, time.monotonic() - since))
            time.sleep(POLL_SECONDS)
        owners = connection_owners(workers, port)
    return [Answer(owners[client_port], impl, at) for client_port, impl, at in answered]


def first_applied_per_worker(
    port: int, workers: Sequence[psutil.Process], wanted: Wanted, since: float
) -> dict[int, float]:
    """Seconds from `since` to each worker's first answer with `wanted`; never back after it."""
    answers: list[Answer] = []
    applied: dict[int, float] = {}
    while len(applied) < len(workers):
        assert time.monotonic() - since < GIVE_UP_SECONDS, (
            f"{wanted} not on every worker: {answers}"
        )
        answers += answers_on_fresh_connections(port, workers, 10, since)
        for answer in answers:
            if answer.impl == wanted.serves:
                applied.setdefault(answer.worker, answer.seconds)
    for answer in answers:
        applied_since = applied[answer.worker]
        assert answer.impl == wanted.serves or answer.seconds < applied_since, answers
    return applied


def test_change_applies_on_every_worker_of_one_server(
    committed_database: str, tmp_path: Path
) -> None:
    serving = gateways(committed_database, tmp_path, "workers", command_for=serve_workers_command)
    with serving as (server,), clients(server) as (client,):
        wait_for_listeners(committed_database, WORKERS)
        workers = worker_processes(server)
        assert len(workers) == WORKERS
        answered = change_mode(client, ASYNC, reason="every worker")
        applied = first_applied_per_worker(server.port, workers, ASYNC, answered)
        report_delays("admin API on one worker -> applied on each", list(applied.values()))
        assert max(applied.values()) < PROPAGATION_SECONDS

        time.sleep(max(0.0, answered + PROPAGATION_SECONDS - time.monotonic()))
        answers = answers_on_fresh_connections(
            server.port, workers, FRESH_CONNECTION_REQUESTS, time.monotonic()
        )
        print(f"requests per worker: {dict(Counter(answer.worker for answer in answers))}")
        assert {answer.impl for answer in answers} == {"async"}
        assert {answer.worker for answer in answers} == {worker.pid for worker in workers}
