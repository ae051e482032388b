"""Rollout plans on a fleet: two instances of two workers each, behind PgBouncer, one driver.

In order, on one fleet: a healthy twin promoted through every step by itself;
the driving worker killed mid-plan, its plan handed over without a skipped or
repeated step; a twin failing 20 % of requests rolled back fleet-wide on
evidence no single process had; a step without traffic judged inconclusive
and extended. The test prints each plan's timeline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.pgbouncer import Bouncer, started_pgbouncer
from tests.processes import RunningProcess, child_env, gateway_command
from tests.test_fleet_processes import INSTANCES, WORKERS, admin_clients, fleet, instances

pytestmark = pytest.mark.slow

AUTH = {"authorization": "Bearer s3cret"}
TICK_SECONDS = 0.25
LEASE_SECONDS = 1.5
PROBE = "GET /probe/{n}"
FLAKY = "GET /flaky/{n}"
USERS = "GET /users/{user_id}"
ITEMS = "GET /items/{item_id}"
PLAN_SECONDS = 60.0
SETTINGS = {
    "GATEWAY_APP": "tests.rollout_app:app",
    "GATEWAY_ROLLOUT_TICK_SECONDS": str(TICK_SECONDS),
    "GATEWAY_ROLLOUT_LEASE_SECONDS": str(LEASE_SECONDS),
    "GATEWAY_ROLLBACK_FAST_TRIP_ERRORS": "0",  # only the fleet-wide analysis judges here
    "GATEWAY_ROUTE_RELOAD_SECONDS": "5",
}


@pytest.fixture
def bouncer(server_url: str) -> Iterator[Bouncer]:
    with started_pgbouncer(server_url) as running:
        yield running


@contextmanager
def traffic(servers: dict[str, RunningProcess], paths: list[str]) -> Iterator[list[int]]:
    """One client per instance cycling through `paths` with distinct sticky keys, until exit.

    Yields a list that collects every status seen.
    """
    stop = threading.Event()
    statuses: list[int] = []

    def send(base_url: str, offset: int) -> None:
        # a connection per request: uvicorn's workers share the listening socket, and each
        # new connection goes to whichever worker accepts it first
        with httpx.Client(base_url=base_url, timeout=10, headers={"connection": "close"}) as client:
            n = offset
            while not stop.is_set():
                n += 2
                for path in paths:
                    key = {"X-Gateway-Sticky-Key": f"user-{n}"}
                    try:
                        statuses.append(client.get(path.format(n=n), headers=key).status_code)
                    except httpx.HTTPError:
                        statuses.append(0)

    threads = [
        threading.Thread(target=send, args=(server.base_url, offset))
        for offset, server in enumerate(servers.values())
    ]
    for thread in threads:
        thread.start()
    try:
        yield statuses
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def start_plan(client: httpx.Client, route: str, steps: list[dict[str, Any]], **extra: Any) -> int:
    body = {"route": route, "steps": steps, "reason": "fleet test", **extra}
    response = client.post("/admin/rollouts", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    plan_id: int = response.json()["id"]
    return plan_id


def plan(client: httpx.Client, plan_id: int) -> dict[str, Any]:
    response = client.get(f"/admin/rollouts/{plan_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def wait_for(client: httpx.Client, plan_id: int, done: Any, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        current = plan(client, plan_id)
        if done(current):
            return current
        time.sleep(0.05)
    raise AssertionError(f"plan {plan_id} not done in {seconds} s: {plan(client, plan_id)}")


def timeline(found: dict[str, Any]) -> str:
    """The plan's events, one line each, as the closing figures quote them."""
    lines = [f"plan {found['id']} on {found['route']}: {found['state']}"]
    started = found["events"][0]["at"]
    for event in found["events"]:
        at = time_of(event["at"]) - time_of(started)
        evidence = (event["detail"] or {}).get("evidence") or {}
        counts = ", ".join(
            f"{kind} {value['requests']}/{value['errors']} 5xx"
            for kind, value in evidence.items()
            if kind != "missing"
        )
        missing = evidence.get("missing")
        lines.append(
            f"  +{at:6.2f} s  step {event['step'] + 1}  {event['kind']:<11} "
            f"{event['verdict'] or '':<12} {event['actor']:<5} {counts}"
            + (f" missing {missing}" if missing else "")
        )
    return "\n".join(lines)


def time_of(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def entered_steps(found: dict[str, Any]) -> list[int]:
    return [event["step"] for event in found["events"] if event["kind"] == "step"]


def lease_holder(database_url: str) -> str:
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT holder FROM gateway_rollout_lease WHERE expires_at > now()"
        ).fetchone()
    assert row is not None, "nobody drives the plans"
    return str(row[0])


def per_worker_requests(database_url: str, route: str, kind: str) -> dict[str, int]:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT worker, sum(requests) FROM gateway_route_samples "
            "WHERE route = %s AND kind = %s GROUP BY worker",
            (route, kind),
        ).fetchall()
    return {worker: int(total) for worker, total in rows}


def test_plans_are_driven_fleet_wide_by_one_worker_at_a_time(
    bouncer: Bouncer, committed_database: str, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        servers = stack.enter_context(instances(bouncer, committed_database, tmp_path, **SETTINGS))
        client = stack.enter_context(admin_clients(servers))
        wait_for_workers(client["a"])
        a_healthy_twin_is_promoted_to_async_by_itself(servers, client["a"])
        killed = killing_the_driver_hands_the_plan_over(servers, client["b"], committed_database)
        a_failing_twin_is_rolled_back_fleet_wide(servers, client, committed_database, killed)
        too_little_traffic_is_inconclusive_and_waits(client["a"])


def wait_for_workers(client: httpx.Client) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if len([w for w in fleet(client)["workers"] if not w["stale"]]) == len(INSTANCES) * WORKERS:
            return
        time.sleep(0.1)
    raise AssertionError(f"the fleet never had every worker: {fleet(client)}")


def a_healthy_twin_is_promoted_to_async_by_itself(
    servers: dict[str, RunningProcess], client: httpx.Client
) -> None:
    steps = [
        {"mode": "shadow", "duration": 1.0, "min_requests": 40},
        {"mode": "canary", "percent": 20, "duration": 1.0, "min_requests": 20},
        {"mode": "canary", "percent": 50, "duration": 1.0, "min_requests": 20},
        {"mode": "async"},
    ]
    with traffic(servers, ["/probe/{n}"]):
        plan_id = start_plan(client, PROBE, steps, analysis={"extend": 0.5})
        done = wait_for(client, plan_id, lambda p: p["state"] != "running", PLAN_SECONDS)
    print("\nhealthy twin:\n" + timeline(done))
    assert done["state"] == "completed"
    assert entered_steps(done) == [0, 1, 2, 3]
    passes = [e for e in done["events"] if e["verdict"] == "pass"]
    assert [e["step"] for e in passes] == [0, 1, 2]
    assert passes[0]["detail"]["evidence"]["match"]["requests"] >= 40
    for canary in passes[1:]:
        assert canary["detail"]["evidence"]["async"]["requests"] >= 20
        assert canary["detail"]["evidence"]["legacy"]["requests"] >= 20
    served = {
        httpx.get(f"{s.base_url}/probe/7").headers["x-gateway-impl"] for s in servers.values()
    }
    assert served == {"async"}


def killing_the_driver_hands_the_plan_over(
    servers: dict[str, RunningProcess], client: httpx.Client, database_url: str
) -> str:
    """Kill the driving worker mid-plan (uvicorn starts another); return the one killed."""
    steps = [
        {"mode": "canary", "percent": 10, "duration": 2.0, "min_requests": 5},
        {"mode": "canary", "percent": 30, "duration": 2.0, "min_requests": 5},
        {"mode": "canary", "percent": 60, "duration": 2.0, "min_requests": 5},
        {"mode": "async"},
    ]
    with traffic(servers, ["/users/{n}"]):
        plan_id = start_plan(client, USERS, steps, analysis={"extend": 0.5})
        wait_for(client, plan_id, lambda p: p["step"] >= 1, PLAN_SECONDS)
        holder = lease_holder(database_url)
        os.kill(int(holder.rsplit("/", 1)[1]), signal.SIGKILL)
        killed_at = time.monotonic()
        done = wait_for(client, plan_id, lambda p: p["state"] != "running", PLAN_SECONDS)
    print(f"\ndriver {holder} killed {time.monotonic() - killed_at:.2f} s before the end:")
    print(timeline(done))
    drivers = [e["detail"]["worker"] for e in done["events"] if e["kind"] == "driver"]
    assert drivers and drivers[-1] != holder, drivers
    assert done["state"] == "completed"
    assert entered_steps(done) == [0, 1, 2, 3]
    assert [e["step"] for e in done["events"] if e["verdict"] == "pass"] == [0, 1, 2]
    return holder


def a_failing_twin_is_rolled_back_fleet_wide(
    servers: dict[str, RunningProcess],
    client: dict[str, httpx.Client],
    database_url: str,
    killed: str,
) -> None:
    needed = 60
    steps = [
        {"mode": "canary", "percent": 20, "duration": 600, "min_requests": needed},
        {"mode": "async"},
    ]
    with traffic(servers, ["/flaky/{n}"]):
        plan_id = start_plan(client["a"], FLAKY, steps)
        started = time.monotonic()
        done = wait_for(client["a"], plan_id, lambda p: p["state"] != "running", PLAN_SECONDS)
        failed_after = time.monotonic() - started
    print(f"\nfailing twin (failed after {failed_after:.2f} s):\n" + timeline(done))
    assert done["state"] == "failed"
    fail = next(e for e in done["events"] if e["verdict"] == "fail")
    evidence = fail["detail"]["evidence"]
    assert "5xx rate" in fail["detail"]["reason"]
    assert evidence["async"]["requests"] >= needed and evidence["async"]["errors"] > 0
    async_seen = per_worker_requests(database_url, FLAKY, "async")
    print(f"async requests seen per worker over the whole step: {async_seen}")
    assert len(async_seen) >= len(INSTANCES)
    assert all(count < needed for count in async_seen.values()), async_seen
    for name, server in servers.items():
        for n in range(20):  # fresh connections: every worker answers with legacy
            answer = httpx.get(f"{server.base_url}/flaky/{n}", headers={"connection": "close"})
            assert answer.headers["x-gateway-impl"] == "legacy", name
    lagging = [name for name in fleet(client["b"])["lagging"] if name != killed]
    assert not lagging, fleet(client["b"])  # the killed worker's row stays until it goes stale


def too_little_traffic_is_inconclusive_and_waits(client: httpx.Client) -> None:
    started = rollout_command(
        client,
        "start",
        ITEMS,
        "--step",
        "canary 50% 0.5s min=1000",
        "--step",
        "async",
        "--extend",
        "0.5s",
        "--reason",
        "from the command line",
    )
    plan_id = int(started.split()[1])
    assert f"plan {plan_id} started on {ITEMS}" in started
    assert "1. canary 50 %" in started and "2. async" in started
    for n in range(1, 11):
        client.get(f"/items/{n % 3 + 1}")
    found = wait_for(
        client,
        plan_id,
        lambda p: sum(e["verdict"] == "inconclusive" for e in p["events"]) >= 2,
        PLAN_SECONDS,
    )
    print("\nwithout traffic:\n" + timeline(found))
    last = [e for e in found["events"] if e["verdict"] == "inconclusive"][-1]
    missing = last["detail"]["evidence"]["missing"]
    assert found["state"] == "running" and found["step"] == 0
    assert set(missing) == {"legacy", "async"} and sum(missing.values()) >= 2000 - 10
    aborted = client.post(f"/admin/rollouts/{plan_id}/abort", json={"reason": "done"}, headers=AUTH)
    assert aborted.status_code == 200 and aborted.json()["state"] == "aborted"
    shown = rollout_command(client, "show", str(plan_id))
    assert f"plan {plan_id} on {ITEMS}: aborted" in shown
    assert "verdict inconclusive" in shown and "too little traffic" in shown
    listed = rollout_command(client, "list")
    assert f"{plan_id}  aborted" in listed and "completed" in listed


def rollout_command(client: httpx.Client, *arguments: str) -> str:
    """`gateway rollout ...` against the instance `client` talks to; its output."""
    env = child_env({"GATEWAY_ADMIN_TOKEN": "s3cret"})
    command = gateway_command("rollout", *arguments, "--url", str(client.base_url))
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    return finished.stdout
