"""Rollout plans in one process: steps, verdicts on the stored evidence, actions, refusals."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, TypeAdapter, ValidationError

from demo.app import create_demo_app
from demo.settings import DemoSettings
from gateway.rollout.driver import TRIM
from gateway.rollout.plans import Duration
from gateway.routing.modes import bucket
from tests.helpers import serving
from tests.webhook_receiver import receiving

pytestmark = pytest.mark.anyio

PROBE = "GET /probe/{n}"
WRITE = "POST /probe/{n}"
AUTH = {"Authorization": "Bearer s3cret"}
READ_ONLY = {"Authorization": "Bearer look"}


class Probe(BaseModel):
    n: int


def probe_routers(fails: Callable[[int], bool] = lambda n: False) -> dict[str, Any]:
    """GET and POST /probe/{n}: legacy answers at once; the async twin fails where `fails(n)`."""
    legacy, migrated = APIRouter(), APIRouter()

    @legacy.get("/probe/{n}", response_model=Probe)
    def probe_legacy(n: int) -> Probe:
        return Probe(n=n)

    @migrated.get("/probe/{n}", response_model=Probe)
    async def probe_async(n: int) -> Probe:
        if fails(n):
            raise RuntimeError("the async twin fails")
        return Probe(n=n)

    @legacy.post("/probe/{n}", response_model=Probe)
    def poke_legacy(n: int) -> Probe:
        return Probe(n=n)

    @migrated.post("/probe/{n}", response_model=Probe)
    async def poke_async(n: int) -> Probe:
        return Probe(n=n)

    return {"legacy_routers": [legacy], "async_routers": [migrated]}


def rollout_app(
    url: str, fails: Callable[[int], bool] = lambda n: False, **overrides: Any
) -> FastAPI:
    settings = DemoSettings(
        database_url=url,
        log_level="WARNING",
        admin_tokens={"ops": "s3cret"},
        admin_read_tokens={"viewer": "look"},
        rollout_tick_seconds=0.1,
        rollout_lease_seconds=1.0,
        **{"rollback_fast_trip_errors": 0, **overrides},
    )
    return create_demo_app(settings, **probe_routers(fails))


async def start(client: httpx.AsyncClient, route: str, **plan: Any) -> httpx.Response:
    return await client.post("/admin/rollouts", json={"route": route, **plan}, headers=AUTH)


async def plan_of(client: httpx.AsyncClient, plan_id: int) -> dict[str, Any]:
    response = await client.get(f"/admin/rollouts/{plan_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def traffic_until(
    client: httpx.AsyncClient, plan_id: int, done: Callable[[dict[str, Any]], bool], seconds: float
) -> dict[str, Any]:
    """Requests to the probe (distinct sticky keys) until `done(plan)` or `seconds` pass."""
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        for _ in range(20):
            n += 1
            await client.get(f"/probe/{n}", headers={"X-Gateway-Sticky-Key": str(n)})
        plan = await plan_of(client, plan_id)
        if done(plan):
            return plan
        await anyio.sleep(0.02)
    return await plan_of(client, plan_id)


def kinds(plan: dict[str, Any]) -> list[tuple[str, int, str | None]]:
    return [(event["kind"], event["step"], event["verdict"]) for event in plan["events"]]


async def test_a_healthy_twin_is_promoted_through_every_step_by_itself(
    committed_database: str,
) -> None:
    steps = [
        {"mode": "shadow", "duration": 0.3, "min_requests": 10},
        {"mode": "canary", "percent": 20, "duration": 0.3, "min_requests": 5},
        {"mode": "canary", "percent": 50, "duration": 0.3, "min_requests": 5},
        {"mode": "async"},
    ]
    async with serving(rollout_app(committed_database)) as client:
        started = await start(
            client, PROBE, steps=steps, analysis={"extend": 0.2}, reason="move the probe"
        )
        assert started.status_code == 201, started.text
        plan_id = started.json()["id"]
        plan = await traffic_until(client, plan_id, lambda p: p["state"] != "running", 30)
        modes = {r["route"]: r for r in (await client.get("/admin/routes")).json()}
        await anyio.sleep(0.3)  # a tick: every worker shows the plan's end
        metrics = (await client.get("/metrics")).text

    assert plan["state"] == "completed", plan
    assert modes[PROBE]["mode"] == "async"
    verdicts = [(step, verdict) for kind, step, verdict in kinds(plan) if kind == "verdict"]
    assert [v for v in verdicts if v[1] == "pass"] == [(0, "pass"), (1, "pass"), (2, "pass")]
    entered = [step for kind, step, _ in kinds(plan) if kind == "step"]
    assert entered == [0, 1, 2, 3]
    passes = [e for e in plan["events"] if e["verdict"] == "pass"]
    assert passes[1]["detail"]["evidence"]["async"]["requests"] >= 5
    assert passes[1]["detail"]["evidence"]["legacy"]["requests"] >= 5
    assert passes[0]["detail"]["evidence"]["match"]["requests"] >= 10
    route = 'route="GET /probe/{n}"'
    assert f'gateway_rollout_state{{{route},state="completed"}} 1.0' in metrics
    assert f"gateway_rollout_step{{{route}}} 0.0" in metrics
    assert f'gateway_rollout_verdicts_total{{{route},verdict="pass"}} 3.0' in metrics


async def test_a_failing_twin_fails_its_step_and_goes_back_to_legacy(
    committed_database: str,
) -> None:
    steps = [
        {"mode": "canary", "percent": 50, "duration": 60, "min_requests": 20},
        {"mode": "async"},
    ]
    app = rollout_app(committed_database, fails=lambda n: n % 5 == 0)
    async with serving(app) as client:
        plan_id = (await start(client, PROBE, steps=steps)).json()["id"]
        plan = await traffic_until(client, plan_id, lambda p: p["state"] != "running", 30)
        route = next(r for r in (await client.get("/admin/routes")).json() if r["route"] == PROBE)

    assert plan["state"] == "failed", kinds(plan)
    assert route["mode"] == "legacy"
    fail = next(e for e in plan["events"] if e["verdict"] == "fail")
    assert "5xx rate" in fail["detail"]["reason"]
    assert ("rolled_back", 0, None) in kinds(plan)


async def test_too_little_traffic_is_inconclusive_says_what_is_missing_and_extends_the_step(
    committed_database: str,
) -> None:
    steps = [
        {"mode": "canary", "percent": 50, "duration": 0.2, "min_requests": 1000},
        {"mode": "async"},
    ]
    analysis = {"extend": 0.3}
    async with serving(rollout_app(committed_database)) as client:
        plan_id = (await start(client, PROBE, steps=steps, analysis=analysis)).json()["id"]
        for n in range(10):
            await client.get(f"/probe/{n}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            plan = await plan_of(client, plan_id)
            if sum(1 for e in plan["events"] if e["verdict"] == "inconclusive") >= 2:
                break
            await anyio.sleep(0.1)

    inconclusive = [e for e in plan["events"] if e["verdict"] == "inconclusive"]
    assert len(inconclusive) >= 2 and plan["state"] == "running" and plan["step"] == 0
    missing = inconclusive[-1]["detail"]["evidence"]["missing"]
    assert set(missing) == {"legacy", "async"} and all(0 < v <= 1000 for v in missing.values())
    assert "too little traffic" in inconclusive[-1]["detail"]["reason"]
    assert plan["step_due_at"] > inconclusive[0]["at"]


async def test_pause_resume_promote_and_abort_are_events_with_who_and_why(
    committed_database: str,
) -> None:
    steps = [
        {"mode": "shadow", "duration": 3600},
        {"mode": "canary", "percent": 10, "duration": 3600},
        {"mode": "async"},
    ]
    async with serving(rollout_app(committed_database)) as client:
        plan_id = (await start(client, PROBE, steps=steps, reason="go")).json()["id"]
        answers = {}
        for verb in ("pause", "resume", "promote", "abort"):
            path = f"/admin/rollouts/{plan_id}/{verb}"
            answers[verb] = await client.post(path, json={"reason": f"why {verb}"}, headers=AUTH)
        again = await client.post(f"/admin/rollouts/{plan_id}/resume", json={}, headers=AUTH)
        plan = await plan_of(client, plan_id)
        route = next(r for r in (await client.get("/admin/routes")).json() if r["route"] == PROBE)
        route_events = (await client.get("/admin/routes/events", params={"route": PROBE})).json()

    assert all(answer.status_code == 200 for answer in answers.values()), answers
    assert answers["promote"].json()["step"] == 1
    assert again.status_code == 409 and "aborted" in again.json()["error"]["message"]
    actions = [(e["kind"], e["actor"], e["reason"]) for e in plan["events"]]
    for verb, kind in [("pause", "paused"), ("resume", "resumed"), ("promote", "promoted")]:
        assert (kind, "ops", f"why {verb}") in actions
    assert ("aborted", "ops", "why abort") in actions
    assert plan["state"] == "aborted" and route["mode"] == "legacy"
    assert [e["new_mode"] for e in reversed(route_events)] == ["shadow", "canary", "legacy"]
    assert all(e["actor"] == f"rollout {plan_id}" for e in route_events)


async def test_refusals_say_what_is_wrong(committed_database: str) -> None:
    async with serving(rollout_app(committed_database)) as client:
        shadow_on_write = await start(client, WRITE, steps=[{"mode": "shadow"}, {"mode": "async"}])
        no_async_end = await start(client, PROBE, steps=[{"mode": "canary", "percent": 5}])
        bad_duration = await start(client, PROBE, steps=[{"mode": "async", "duration": "soon"}])
        unknown = await start(client, "GET /nowhere", steps=[{"mode": "async"}])
        read_only = await client.post("/admin/rollouts", json={"route": PROBE}, headers=READ_ONLY)
        first = await start(client, PROBE)
        second = await start(client, PROBE)
        by_hand = await client.put(
            "/admin/routes/GET%20%2Fprobe%2F%7Bn%7D", json={"mode": "async"}, headers=AUTH
        )
        missing = await client.get("/admin/rollouts/999999")

    assert shadow_on_write.status_code == 422 and "safe methods" in shadow_on_write.text
    assert no_async_end.status_code == 422 and "ends with an async step" in no_async_end.text
    assert bad_duration.status_code == 422 and "not a duration" in bad_duration.text
    assert unknown.status_code == 404
    assert read_only.status_code == 403
    assert first.status_code == 201, first.text
    assert [s["label"] for s in first.json()["steps"]] == [
        "shadow",
        "canary 5 %",
        "canary 25 %",
        "canary 50 %",
        "async",
    ]
    assert second.status_code == 409 and f"plan {first.json()['id']}" in second.text
    assert by_hand.status_code == 409 and "rollout plan" in by_hand.text
    assert missing.status_code == 404


async def test_the_kill_switch_aborts_plans_in_progress(committed_database: str) -> None:
    async with serving(rollout_app(committed_database)) as client:
        plan_id = (await start(client, PROBE)).json()["id"]
        killed = await client.post(
            "/admin/kill-switch", json={"reason": "stop everything"}, headers=AUTH
        )
        plan = await plan_of(client, plan_id)

    assert killed.status_code == 200, killed.text
    assert killed.json()["aborted_plans"] == [plan_id]
    assert plan["state"] == "aborted"
    assert ("aborted", "ops", "stop everything") in [
        (e["kind"], e["actor"], e["reason"]) for e in plan["events"]
    ]


async def test_a_fast_trip_fails_the_plan_fleet_wide(committed_database: str) -> None:
    steps = [{"mode": "canary", "percent": 50, "duration": 3600}, {"mode": "async"}]
    on_async = [key for key in map(str, range(100)) if bucket(key, PROBE) < 5000][:5]
    app = rollout_app(committed_database, fails=lambda n: True, rollback_fast_trip_errors=3)
    async with serving(app) as client:
        plan_id = (await start(client, PROBE, steps=steps)).json()["id"]
        await wait_until_counted(app, PROBE)
        answers = [
            (await client.get("/probe/1", headers={"X-Gateway-Sticky-Key": key})).headers[
                "x-gateway-impl"
            ]
            for key in on_async
        ]
        plan = await wait_for_state(client, plan_id, "failed")

    assert answers[:3] == ["async"] * 3 and answers[3:] == ["legacy"] * 2
    fail = next(e for e in plan["events"] if e["verdict"] == "fail")
    assert "3 consecutive 5xx" in fail["detail"]["reason"]
    assert ("rolled_back", 0, None) in kinds(plan)


async def test_a_rollback_that_cannot_be_stored_holds_locally_and_is_retried(
    committed_database: str,
) -> None:
    """The route's row is locked elsewhere: storing fails, reloads still read canary."""
    app = rollout_app(
        committed_database,
        fails=lambda n: True,
        rollback_fast_trip_errors=2,
        statement_timeout_ms=300,
    )
    async with serving(app) as client:
        changed = await client.put(
            "/admin/routes/GET%20%2Fprobe%2F%7Bn%7D",
            json={"mode": "canary", "percent": 100},
            headers=AUTH,
        )
        assert changed.status_code == 200, changed.text
        table = app.state.route_table
        async with table.database.connect() as blocker:
            await blocker.exec_driver_sql("LOCK TABLE gateway_routes IN EXCLUSIVE MODE")
            tripped = [(await client.get(f"/probe/{n}")).status_code for n in range(2)]
            await anyio.sleep(1.0)  # several failed attempts to store it
            await table.reload()  # reads the stored canary: the local rollback must hold
            held = (await client.get("/probe/9")).headers["x-gateway-impl"]
            await blocker.rollback()
        stored = await wait_for_route_mode(client, PROBE, "legacy")

    assert tripped == [500, 500]
    assert held == "legacy"
    assert stored["changed_by"] == "gateway" and "consecutive 5xx" in stored["reason"]


async def wait_until_counted(app: FastAPI, key: str) -> None:
    """Until this worker's driver has seen the plan (it counts the route from then on)."""
    with anyio.fail_after(10):
        while key not in app.state.route_table.planned:
            await anyio.sleep(0.02)


async def wait_for_state(client: httpx.AsyncClient, plan_id: int, state: str) -> dict[str, Any]:
    with anyio.fail_after(10):
        while (plan := await plan_of(client, plan_id))["state"] != state:
            await anyio.sleep(0.05)
    return plan


async def wait_for_route_mode(client: httpx.AsyncClient, key: str, mode: str) -> dict[str, Any]:
    with anyio.fail_after(15):
        while True:
            routes = (await client.get("/admin/routes")).json()
            route: dict[str, Any] = next(r for r in routes if r["route"] == key)
            if route["mode"] == mode and route["changed_by"] != "ops":
                return route
            await anyio.sleep(0.1)


async def test_plan_events_reach_the_webhooks_from_the_driving_worker(
    committed_database: str,
) -> None:
    steps = [{"mode": "canary", "percent": 50, "duration": 3600}, {"mode": "async"}]
    with receiving() as receiver:
        app = rollout_app(committed_database, webhook_urls={"ops-chat": receiver.url})
        async with serving(app) as client:
            await anyio.sleep(0.3)  # the webhook's cursor starts at the events present
            plan_id = (await start(client, PROBE, steps=steps, reason="go")).json()["id"]
            await client.post(
                f"/admin/rollouts/{plan_id}/abort", json={"reason": "stop"}, headers=AUTH
            )
            with anyio.fail_after(10):
                while len(receiver.accepted()) < 5:
                    await anyio.sleep(0.05)

    received = [r.body for r in receiver.accepted()]
    rollout = [
        (b["event"]["kind"], b["event"]["reason"]) for b in received if b["source"] == "rollout"
    ]
    assert rollout == [("started", "go"), ("step", "go"), ("aborted", "stop")]
    route = [b["event"]["new_mode"] for b in received if b["source"] == "route"]
    assert route == ["canary", "legacy"]
    assert all(b["text"] for b in received)


async def test_the_trim_keeps_only_the_samples_a_step_in_progress_needs(
    committed_database: str,
) -> None:
    insert = (
        "INSERT INTO gateway_route_samples (route, worker, kind, requests, errors, latency, at) "
        "VALUES ($1, 'old/1', 'async', 5, 0, '{5}', now() - $2 * interval '1 minute')"
    )
    steps = [{"mode": "canary", "percent": 5}, {"mode": "async"}]
    app = rollout_app(committed_database)
    async with serving(app) as client:
        plan_id = (await start(client, PROBE, steps=steps)).json()["id"]
        engine = app.state.route_table.database
        async with engine.begin() as connection:
            await connection.exec_driver_sql(
                "UPDATE gateway_rollouts SET step_started_at = now() - interval '1 hour' "
                "WHERE id = $1",
                (plan_id,),
            )
            for route, minutes in [(PROBE, 10), (PROBE, 90), (WRITE, 10), (WRITE, 1)]:
                await connection.exec_driver_sql(insert, (route, minutes))
            await connection.execute(TRIM)
            rows = await connection.exec_driver_sql(
                "SELECT route, round(extract(epoch FROM now() - at) / 60) FROM "
                "gateway_route_samples WHERE worker = 'old/1' ORDER BY 1, 2"
            )
            kept = [(route, int(minutes)) for route, minutes in rows]

    # the plan's step (begun an hour ago) needs its 10-minute-old row, not the older one;
    # a route without a plan keeps only what is too recent to judge safely
    assert kept == [(PROBE, 10), (WRITE, 1)], kept


DURATIONS_ACCEPTED = [
    "0",
    "90",
    " 90s ",
    "10m",
    "10 m",
    "1.5h",
    "604800",
    "0604800",
    "10080m",
    "168h",
]
DURATIONS_REFUSED = [
    "604801",
    "604800.5",
    "10081m",
    "168.1h",
    "6886450788",
    "\t10m",
    "10m\n",
    "1e3",
]


@pytest.mark.parametrize("text", DURATIONS_ACCEPTED + DURATIONS_REFUSED)
def test_the_schema_of_a_duration_accepts_exactly_what_the_api_does(text: str) -> None:
    """Clients generated from the OpenAPI schema never send a duration the API refuses."""
    (_, text_schema) = TypeAdapter(Duration).json_schema()["anyOf"]
    in_schema = re.fullmatch(text_schema["pattern"].removeprefix("^").removesuffix("$"), text)
    try:
        TypeAdapter(Duration).validate_python(text)
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted == (text in DURATIONS_ACCEPTED)
    assert bool(in_schema) == accepted
