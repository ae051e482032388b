"""Two instances of two workers each behind PgBouncer: changes reach all, laggards show."""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
import pytest
import yaml  # type: ignore[import-untyped]

from tests.conftest import drop_database, with_database
from tests.pgbouncer import Bouncer, started_pgbouncer
from tests.processes import (
    LOCALHOST,
    REPO_ROOT,
    ProcessFailed,
    RunningProcess,
    child_env,
    free_port,
    gateway_command,
    process_family,
    running_prometheus,
    stop_process,
    stop_processes,
    wait_until_listening,
    wait_until_ok,
)
from tests.test_route_sync_processes import (
    ADMIN_TOKENS,
    ASYNC,
    CANARY_ALL,
    FRESH_CONNECTION_REQUESTS,
    LEGACY,
    READ,
    ROUTE,
    START_ATTEMPTS,
    START_SECONDS,
    Wanted,
    admin_put,
    answers_on_fresh_connections,
    launch,
    worker_processes,
)

pytestmark = pytest.mark.slow

INSTANCES = ("a", "b")
WORKERS = 2
PROPAGATION_SECONDS = 1.0
POLL_SECONDS = 0.02
GIVE_UP_SECONDS = 10.0
CHANGES = (ASYNC, LEGACY, CANARY_ALL, LEGACY, ASYNC)


@contextmanager
def instances(
    bouncer: Bouncer, database_url: str, log_dir: Path, **settings: str
) -> Iterator[dict[str, RunningProcess]]:
    """`gateway serve --workers 2` per instance name, through PgBouncer, listening directly."""
    started: list[RunningProcess] = []
    try:
        running = {}
        for name in INSTANCES:
            env = child_env(
                {
                    "GATEWAY_DATABASE_URL": bouncer.url_for(database_url),
                    "GATEWAY_TRANSACTION_POOLING": "true",
                    "GATEWAY_LISTEN_DATABASE_URL": database_url,
                    "GATEWAY_INSTANCE_NAME": name,
                    "GATEWAY_WORKERS": str(WORKERS),
                    "GATEWAY_ADMIN_TOKENS": ADMIN_TOKENS,
                    "GATEWAY_LOG_LEVEL": "WARNING",
                    "GATEWAY_ROUTE_RELOAD_SECONDS": "600",  # only LISTEN/NOTIFY propagates
                    **settings,
                }
            )
            running[name] = start_ready(env, log_dir / f"{name}.log", started)
        yield running
    finally:
        descendants = [p for r in started for p in process_family(r.process.pid)[1:]]
        for server in started:
            stop_process(server.process)
        stop_processes(descendants)


def serve_command(port: int) -> list[str]:
    return gateway_command("serve", "--port", str(port))


def start_ready(
    env: dict[str, str], log_path: Path, started: list[RunningProcess]
) -> RunningProcess:
    for _ in range(START_ATTEMPTS):
        running = launch(serve_command, env, log_path)
        started.append(running)
        if wait_until_listening(running, START_SECONDS):
            wait_until_ok(running, "/readyz", START_SECONDS)
            return running
        if "address already in use" not in running.log():
            break
    raise ProcessFailed(f"exited before listening:\n{running.log()}")


@contextmanager
def admin_clients(servers: dict[str, RunningProcess]) -> Iterator[dict[str, httpx.Client]]:
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(
                httpx.Client(base_url=server.base_url, timeout=5.0, headers=READ)
            )
            for name, server in servers.items()
        }


def fleet(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/admin/fleet")
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_for_fleet(client: httpx.Client, workers: int, version: int = 0) -> float:
    """Seconds until `workers` live workers all report holding `version` or newer."""
    started = time.monotonic()
    while True:
        current = fleet(client)
        live = [w for w in current["workers"] if not w["stale"]]
        if len(live) == workers and all(w["version"] >= version for w in live):
            return time.monotonic() - started
        assert time.monotonic() - started < GIVE_UP_SECONDS, [
            (w["worker"], w["version"], w["stale"]) for w in current["workers"]
        ]
        time.sleep(POLL_SECONDS)


def change(client: httpx.Client, wanted: Wanted, reason: str) -> tuple[int, float]:
    response = admin_put(client, ROUTE, wanted.body(reason))
    assert response.status_code == 200, response.text
    return int(response.json()["event"]["id"]), time.monotonic()


SCRAPE_SECONDS = 1.0
LOAD_SECONDS = 3.0
# rate() extrapolates a series born during the load by half a scrape interval at most: the
# requests before its first scrape go uncounted, so the load is long enough to keep that small
COUNT_LOAD_SECONDS = 8.0
LOAD_CLIENTS = 2  # per instance
REPORT_WINDOW_SECONDS = 30
COUNT_TOLERANCE = 0.15
DRAIN_SECONDS = 5.0
LOADED_ROUTE = "GET /users/{user_id}"
PROMETHEUS_CONFIG = REPO_ROOT / "deploy" / "prometheus.yml"


@contextmanager
def prometheus_scraping(servers: dict[str, RunningProcess], tmp_path: Path) -> Iterator[str]:
    """A real Prometheus with the shipped configuration and rules, its targets our instances."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(PROMETHEUS_CONFIG.parent / path) for path in config["rule_files"]]
    targets = [f"{LOCALHOST}:{server.port}" for server in servers.values()]
    config["scrape_configs"][0]["static_configs"] = [{"targets": targets}]
    with running_prometheus(config, tmp_path) as server:
        yield server.base_url


def targets_up(prometheus: str, count: int) -> bool:
    result = httpx.get(f"{prometheus}/api/v1/query", params={"query": 'up{job="gateway"} == 1'})
    return len(result.json()["data"]["result"]) == count


def load(base_url: str, until: float, outcomes: list[tuple[str, float]]) -> None:
    """GET users on a new connection each time until `until`: (outcome, when it was sent)."""
    number = 0
    with httpx.Client(base_url=base_url, timeout=10, headers={"connection": "close"}) as client:
        while time.monotonic() < until:
            number += 1
            sent = time.monotonic()
            try:
                response = client.get(f"/users/{number % 12 + 1}")
            except httpx.ConnectError:
                outcomes.append(("refused", sent))  # no longer accepting: go elsewhere
                time.sleep(0.01)
                continue
            except httpx.HTTPError as error:
                outcomes.append((type(error).__name__, sent))
                continue
            outcomes.append((str(response.status_code), sent))


def loaded(servers: dict[str, RunningProcess], seconds: float) -> dict[str, Counter[str]]:
    until = time.monotonic() + seconds
    outcomes: dict[str, list[tuple[str, float]]] = {name: [] for name in servers}
    threads = [
        threading.Thread(target=load, args=(server.base_url, until, outcomes[name]))
        for name, server in servers.items()
        for _ in range(LOAD_CLIENTS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {name: Counter(outcome for outcome, _ in found) for name, found in outcomes.items()}


def prometheus_report(prometheus: str) -> dict[str, Any]:
    command = gateway_command(
        "report", "--prometheus", prometheus, "--window", str(REPORT_WINDOW_SECONDS), "--json"
    )
    finished = subprocess.run(
        command, env=child_env({}), capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    return {route["route"]: route for route in json.loads(finished.stdout)["routes"]}


@pytest.fixture
def bouncer(server_url: str) -> Iterator[Bouncer]:
    with started_pgbouncer(server_url) as running:
        yield running


def test_two_pooled_instances_agree_are_watched_together_and_drain(
    bouncer: Bouncer, committed_database: str, tmp_path: Path
) -> None:
    """One fleet, in order: propagation, a laggard named, one Prometheus, a drain under load."""
    drain = {"GATEWAY_SHUTDOWN_DRAIN_SECONDS": str(DRAIN_SECONDS)}
    with ExitStack() as stack:
        servers = stack.enter_context(instances(bouncer, committed_database, tmp_path, **drain))
        client = stack.enter_context(admin_clients(servers))
        prometheus = stack.enter_context(prometheus_scraping(servers, tmp_path))
        changes_reach_every_worker_within_a_second(servers, client)
        the_kill_switch_reaches_every_worker_within_a_second(client)
        a_lagging_worker_is_named_until_it_catches_up(servers, client)
        one_prometheus_sums_both_instances(servers, prometheus)
        sigterm_under_load_drains_and_the_instance_leaves_the_fleet(servers, client)


def changes_reach_every_worker_within_a_second(
    servers: dict[str, RunningProcess], client: dict[str, httpx.Client]
) -> None:
    total = len(INSTANCES) * WORKERS
    wait_for_fleet(client["b"], total)
    assert all(worker["listening"] for worker in fleet(client["b"])["workers"])
    delays = []
    for number, wanted in enumerate(CHANGES):
        version, answered = change(client["a"], wanted, f"propagation {number}")
        wait_for_fleet(client["b"], total, version)
        delays.append(time.monotonic() - answered)
    workers = {name: worker_processes(server) for name, server in servers.items()}
    answers = {
        name: answers_on_fresh_connections(
            servers[name].port, workers[name], FRESH_CONNECTION_REQUESTS, time.monotonic()
        )
        for name in INSTANCES
    }
    shown = ", ".join(f"{delay * 1000:.0f}" for delay in delays)
    print(
        f"\nchange on a -> held by all {total} workers of a and b (through PgBouncer, "
        f"listening directly): {shown} ms (median {statistics.median(delays) * 1000:.0f} ms)"
    )
    assert max(delays) < PROPAGATION_SECONDS
    for name in INSTANCES:
        assert {answer.impl for answer in answers[name]} == {CHANGES[-1].serves}
        assert {answer.worker for answer in answers[name]} == {w.pid for w in workers[name]}


def the_kill_switch_reaches_every_worker_within_a_second(client: dict[str, httpx.Client]) -> None:
    total = len(INSTANCES) * WORKERS
    for key in (ROUTE, "GET /items/{item_id}"):
        assert admin_put(client["b"], key, ASYNC.body("before the drill")).status_code == 200
    pulled = client["a"].post("/admin/kill-switch", json={"reason": "drill"})
    answered = time.monotonic()
    assert pulled.status_code == 200, pulled.text
    wait_for_fleet(client["b"], total, max(pulled.json()["events"]))
    reached = time.monotonic() - answered
    print(f"kill switch on a ({len(pulled.json()['moved'])} routes) -> all {total} workers: "
          f"{reached * 1000:.0f} ms")  # fmt: skip
    assert sorted(pulled.json()["moved"]) == sorted([ROUTE, "GET /items/{item_id}"])
    assert reached < PROPAGATION_SECONDS
    modes = {row["route"]: row["mode"] for row in client["b"].get("/admin/routes").json()}
    assert modes[ROUTE] == modes["GET /items/{item_id}"] == "legacy"


def a_lagging_worker_is_named_until_it_catches_up(
    servers: dict[str, RunningProcess], client: dict[str, httpx.Client]
) -> None:
    total = len(INSTANCES) * WORKERS
    frozen = worker_processes(servers["b"])[0]
    frozen.suspend()
    try:
        version, _ = change(client["a"], LEGACY, "while a worker of b is frozen")
        time.sleep(PROPAGATION_SECONDS)
        during = fleet(client["a"])
        row = next(r for r in client["a"].get("/admin/routes").json() if r["route"] == ROUTE)
        listed = run_cli("routes", "list", "--url", servers["a"].base_url)
    finally:
        frozen.resume()
    caught_up = wait_for_fleet(client["a"], total, version)
    after = fleet(client["a"])
    frozen_name = f"b/{frozen.pid}"
    print(f"lagging while frozen: {during['lagging']}; caught up {caught_up:.2f} s after")
    assert during["lagging"] == [frozen_name] and not during["converged"]
    assert row["lagging_workers"] == [frozen_name]
    assert listed.returncode == 0, listed.stderr
    assert f"1 lagging: {frozen_name} (holds" in listed.stdout
    assert after["converged"] and after["lagging"] == []


def run_cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    env = child_env({"GATEWAY_ADMIN_TOKEN": READ["authorization"].removeprefix("Bearer ")})
    return subprocess.run(
        gateway_command(*arguments), env=env, capture_output=True, text=True, timeout=60
    )


def one_prometheus_sums_both_instances(servers: dict[str, RunningProcess], prometheus: str) -> None:
    wait_until(lambda: targets_up(prometheus, len(INSTANCES)), "both targets up")
    sent = loaded(servers, COUNT_LOAD_SECONDS)
    time.sleep(3 * SCRAPE_SECONDS)  # the last requests scraped
    routes = prometheus_report(prometheus)
    answered = {name: found["200"] for name, found in sent.items()}
    rate = routes[LOADED_ROUTE]["by_impl"]["legacy"]["requests_per_second"]
    counted = rate * REPORT_WINDOW_SECONDS
    print(f"sent {answered} -> Prometheus over both instances counts {counted:.0f}")
    assert set(sent["a"]) == set(sent["b"]) == {"200"}, sent
    assert abs(counted - sum(answered.values())) <= COUNT_TOLERANCE * sum(answered.values())
    assert counted > max(answered.values()) * (1 + COUNT_TOLERANCE)


def sigterm_under_load_drains_and_the_instance_leaves_the_fleet(
    servers: dict[str, RunningProcess], client: dict[str, httpx.Client]
) -> None:
    draining: list[tuple[str, float]] = []
    until = time.monotonic() + LOAD_SECONDS
    loader = threading.Thread(target=load, args=(servers["b"].base_url, until, draining))
    loader.start()
    time.sleep(LOAD_SECONDS / 3)
    signalled = time.monotonic()
    servers["b"].process.send_signal(signal.SIGTERM)
    returncode = servers["b"].process.wait(timeout=DRAIN_SECONDS + 10)
    exited = time.monotonic() - signalled
    loader.join()
    before = Counter(outcome for outcome, sent in draining if sent < signalled)
    after = Counter(outcome for outcome, sent in draining if sent >= signalled)
    still_served = Counter(loaded({"a": servers["a"]}, 1.0)["a"])
    left = wait_for_fleet(client["a"], WORKERS)
    print(
        f"SIGTERM under load: exit {returncode} after {exited:.2f} s, requests sent before it "
        f"{dict(before)}, after it {dict(after)}; b left the fleet list {left:.2f} s later"
    )
    assert returncode == 0 and exited < DRAIN_SECONDS
    assert set(before) == {"200"}, before
    # Sent after it: answered while draining, or refused once the socket closed; a
    # connection still in the listen queue when uvicorn closes the socket is reset.
    assert set(after) <= {"200", "503", "refused", "ReadError", "RemoteProtocolError"}, after
    assert after["refused"] > 0
    assert set(still_served) == {"200"}
    assert {worker["instance"] for worker in fleet(client["a"])["workers"]} == {"a"}


def wait_until(condition: Any, what: str, seconds: float = GIVE_UP_SECONDS * 2) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.2)


FLEET_SCRIPT = REPO_ROOT / "deploy" / "local" / "fleet.sh"
MACHINE_URL = os.environ.get(
    "GATEWAY_MACHINE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def machine_server() -> str | None:
    """The machine's PostgreSQL on TCP (the local fleet's PgBouncer reaches it there)."""
    try:
        psycopg.connect(MACHINE_URL, connect_timeout=3).close()
    except psycopg.OperationalError:
        return None
    return MACHINE_URL


def run_script(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(FLEET_SCRIPT), command], env=env, capture_output=True, text=True,
        timeout=240, cwd=REPO_ROOT,
    )  # fmt: skip


@pytest.mark.skipif(machine_server() is None, reason="no PostgreSQL on 127.0.0.1:5432")
def test_the_local_fleet_script_brings_up_two_pooled_instances_and_stops_them() -> None:
    name = f"gateway_fleet_{uuid.uuid4().hex[:8]}"
    fleet_dir = Path(tempfile.mkdtemp(prefix="gateway-fleet-"))  # PgBouncer's user reaches it
    ports = [free_port() for _ in range(4)]
    env = child_env(
        {
            "FLEET_DATABASE_URL": with_database(MACHINE_URL, name),
            "FLEET_DIR": str(fleet_dir),
            "FLEET_PORTS": f"{ports[0]} {ports[1]}",
            "FLEET_PGBOUNCER_PORT": str(ports[2]),
            "FLEET_PROMETHEUS_PORT": str(ports[3]),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        }
    )
    try:
        started = run_script("up", env)
        assert started.returncode == 0, started.stdout + started.stderr
        status = run_script("status", env)
        moved = subprocess.run(
            gateway_command(
                "routes", "set", ROUTE, "async", "--url", f"http://{LOCALHOST}:{ports[1]}"
            ),
            env={**env, "GATEWAY_ADMIN_TOKEN": "fleet-admin-token"},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        with httpx.Client(base_url=f"http://{LOCALHOST}:{ports[0]}", headers=FLEET_ADMIN) as a:
            wait_for_fleet(a, len(INSTANCES) * WORKERS, version=1)
            served = a.get("/users/1").headers["x-gateway-impl"]
        pids = [int(p.read_text()) for p in fleet_dir.glob("*.pid")]
    finally:
        stopped = run_script("down", env)
        drop_database(MACHINE_URL, name)
        shutil.rmtree(fleet_dir, ignore_errors=True)

    print(f"\nlocal fleet: {started.stdout.strip()}")
    assert "PgBouncer:" in started.stdout and "Prometheus:" in started.stdout
    fleet_seen = json.loads(status.stdout)
    assert {w["instance"] for w in fleet_seen["workers"]} == {"a", "b"}
    assert all(w["listening"] for w in fleet_seen["workers"])
    assert moved.returncode == 0, moved.stderr
    assert served == "async"
    assert stopped.returncode == 0, stopped.stderr
    assert len(pids) == len(INSTANCES) + 2  # the instances, PgBouncer, Prometheus
    assert not any(psutil.pid_exists(pid) for pid in pids)


FLEET_ADMIN = {"authorization": "Bearer fleet-admin-token"}
