"""Automatic rollback: a canary whose async twin fails or lags goes back to legacy, and stays."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from demo.app import create_demo_app
from demo.settings import DemoSettings
from gateway.database.engines import sync_url
from gateway.routing.canary_guard import CanaryGuard
from gateway.routing.modes import RouteMode
from gateway.routing.table import RouteTable
from tests.helpers import IMPL_HEADER, serving

pytestmark = [pytest.mark.anyio, pytest.mark.version_independent]

PROBE_ROUTE = "GET /probe/{n}"
USER_ROUTE = "GET /users/{user_id}"
STICKY_HEADER = "X-Gateway-Sticky-Key"
AUTH = {"Authorization": "Bearer s3cret"}
SEEDED_USERS = 12
MIN_REQUESTS = 20


class Probe(BaseModel):
    n: int


def probe_routers(async_delay: float = 0.0, async_fails: bool = False) -> dict[str, Any]:
    """A GET /probe/{n} pair: legacy answers at once, the async twin may lag or fail."""
    legacy, migrated = APIRouter(), APIRouter()

    @legacy.get("/probe/{n}", response_model=Probe)
    def probe_legacy(n: int) -> Probe:
        return Probe(n=n)

    @migrated.get("/probe/{n}", response_model=Probe)
    async def probe_async(n: int) -> Probe:
        await anyio.sleep(async_delay)
        if async_fails:
            raise RuntimeError("the async twin fails")
        return Probe(n=n)

    return {"legacy_routers": [legacy], "async_routers": [migrated]}


def real_app(url: str, routers: dict[str, Any] | None = None) -> FastAPI:
    settings = DemoSettings(
        database_url=url,
        log_level="CRITICAL",
        admin_tokens={"ops": "s3cret"},
        rollback_min_requests=MIN_REQUESTS,
        rollback_window_seconds=30,
        rollback_fast_trip_errors=0,  # the window's judgement, not the emergency trip
    )
    return create_demo_app(settings, **(routers or {}))


async def set_mode(client: httpx.AsyncClient, key: str, **change: Any) -> None:
    path = "/admin/routes/" + quote(key, safe="")
    response = await client.put(path, json=change, headers=AUTH)
    assert response.status_code == 200, response.text


async def canary_traffic(
    client: httpx.AsyncClient, table: RouteTable, key: str, path: str, seconds: float
) -> list[httpx.Response]:
    """Requests with distinct sticky keys for `seconds`, or until the route leaves canary mode."""
    responses: list[httpx.Response] = []
    deadline = time.monotonic() + seconds
    while table.modes[key].mode == "canary" and time.monotonic() < deadline:
        n = len(responses)
        sticky = {STICKY_HEADER: f"client-{n}"}
        responses.append(await client.get(path.format(n=n % SEEDED_USERS + 1), headers=sticky))
    return responses


async def gateway_events(client: httpx.AsyncClient, key: str, seconds: float) -> list[Any]:
    """The route's events made by the gateway itself, once there is one (or the deadline passed)."""
    deadline = time.monotonic() + seconds
    while True:
        response = await client.get("/admin/routes/events", params={"route": key})
        found = [event for event in response.json() if event["actor"] == "gateway"]
        if found or time.monotonic() >= deadline:
            return found
        await anyio.sleep(0.02)


@pytest.fixture
def engine(committed_database: str) -> Iterator[Engine]:
    owned = create_engine(sync_url(committed_database), poolclass=NullPool)
    yield owned
    owned.dispose()


def stored_mode(engine: Engine, key: str) -> tuple[str, str] | None:
    with engine.connect() as connection:
        query = text("SELECT mode, changed_by FROM gateway_routes WHERE route = :key")
        row = connection.execute(query, {"key": key}).first()
    return None if row is None else (row.mode, row.changed_by)


async def eventually_stored(engine: Engine, key: str, wanted: tuple[str, str]) -> Any:
    deadline = time.monotonic() + 5
    found = stored_mode(engine, key)
    while found != wanted and time.monotonic() < deadline:
        await anyio.sleep(0.02)
        found = stored_mode(engine, key)
    return found


async def listed_mode(client: httpx.AsyncClient, key: str) -> str:
    response = await client.get("/admin/routes")
    return str(next(route["mode"] for route in response.json() if route["route"] == key))


@pytest.mark.parametrize(
    ("routers", "reason_mentions"),
    [
        pytest.param({"async_fails": True}, "5xx rate", id="errors"),
        pytest.param({"async_delay": 0.12}, "p95", id="latency"),
    ],
)
async def test_a_worse_async_twin_is_rolled_back(
    committed_database: str, engine: Engine, routers: dict[str, Any], reason_mentions: str
) -> None:
    app = real_app(committed_database, probe_routers(**routers))
    table: RouteTable = app.state.route_table
    async with serving(app) as client:
        await set_mode(client, PROBE_ROUTE, mode="canary", percent=50, reason="half")
        during = await canary_traffic(client, table, PROBE_ROUTE, "/probe/{n}", seconds=15)
        in_memory = table.modes[PROBE_ROUTE]
        listed = await listed_mode(client, PROBE_ROUTE)
        after = [await client.get(f"/probe/{n}") for n in range(10)]
        events = await gateway_events(client, PROBE_ROUTE, seconds=5)
        stored = await eventually_stored(engine, PROBE_ROUTE, ("legacy", "gateway"))

    assert in_memory == RouteMode(mode="legacy")
    assert len({r.headers[IMPL_HEADER] for r in during}) == 2
    assert listed == "legacy"
    assert {r.headers[IMPL_HEADER] for r in after} == {"legacy"}
    assert len(events) == 1
    assert (events[0]["old_mode"], events[0]["new_mode"]) == ("canary", "legacy")
    assert reason_mentions in events[0]["reason"]
    assert stored == ("legacy", "gateway")

    restarted = real_app(committed_database, probe_routers(**routers))
    async with serving(restarted):
        assert restarted.state.route_table.modes[PROBE_ROUTE] == RouteMode(mode="legacy")


async def test_a_healthy_canary_stays(committed_database: str, engine: Engine) -> None:
    app = real_app(committed_database)
    table: RouteTable = app.state.route_table
    async with serving(app) as client:
        await set_mode(client, USER_ROUTE, mode="canary", percent=50, reason="half")
        responses = await canary_traffic(client, table, USER_ROUTE, "/users/{n}", seconds=2.5)
        events = (await client.get("/admin/routes/events")).json()
        judged = {impl: len(table.guard.outcomes[USER_ROUTE, impl]) for impl in ("legacy", "async")}
        verdict = table.guard.verdict(USER_ROUTE)

    assert {r.status_code for r in responses} == {200}
    assert table.modes[USER_ROUTE] == RouteMode(mode="canary", percent=50)
    assert min(judged.values()) >= MIN_REQUESTS
    assert verdict is None
    assert [event["actor"] for event in events] == ["ops"]
    assert stored_mode(engine, USER_ROUTE) == ("canary", "ops")


async def test_a_rollback_does_not_undo_a_newer_decision(
    committed_database: str, engine: Engine
) -> None:
    app = real_app(committed_database)
    table: RouteTable = app.state.route_table
    async with serving(app) as client:
        await set_mode(client, USER_ROUTE, mode="async", reason="fully migrated")
        table.roll_back(USER_ROUTE, "automatic rollback: a late verdict on the old canary")
        deadline = time.monotonic() + 5
        while table.modes[USER_ROUTE].mode != "async" and time.monotonic() < deadline:
            await anyio.sleep(0.02)
        response = await client.get("/users/1")
        events = (await client.get("/admin/routes/events")).json()

    assert response.headers[IMPL_HEADER] == "async"
    assert [event["actor"] for event in events] == ["ops"]
    assert stored_mode(engine, USER_ROUTE) == ("async", "ops")


class Verdicts:
    """What a guard asked its route table to roll back."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def roll_back(self, key: str, reason: str) -> None:
        self.calls.append((key, reason))


def guard(verdicts: Verdicts, window: float = 30.0) -> CanaryGuard:
    return CanaryGuard(
        window=window,
        min_requests=MIN_REQUESTS,
        error_margin=0.05,
        latency_ratio=2.0,
        latency_floor=0.0,
        roll_back=verdicts.roll_back,
    )


def record(
    guarded: CanaryGuard, impl: str, count: int, status: int = 200, seconds: float = 0.01
) -> None:
    for _ in range(count):
        guarded.record(PROBE_ROUTE, impl, status, seconds)


def test_no_verdict_until_both_sides_have_enough_requests() -> None:
    guarded = guard(Verdicts())
    record(guarded, "legacy", MIN_REQUESTS - 1)
    record(guarded, "async", MIN_REQUESTS * 3, status=500)
    assert guarded.verdict(PROBE_ROUTE) is None
    record(guarded, "legacy", 1)
    assert "5xx rate 100.0%" in str(guarded.verdict(PROBE_ROUTE))


@pytest.mark.parametrize(("async_failures", "rolled_back"), [(1, False), (2, True)])
def test_error_margin_is_a_strict_bound(async_failures: int, rolled_back: bool) -> None:
    guarded = guard(Verdicts())
    record(guarded, "legacy", MIN_REQUESTS)
    record(guarded, "async", MIN_REQUESTS - async_failures)
    record(guarded, "async", async_failures, status=503)
    assert (guarded.verdict(PROBE_ROUTE) is not None) is rolled_back


@pytest.mark.parametrize(("async_seconds", "rolled_back"), [(0.02, False), (0.021, True)])
def test_latency_ratio_compares_p95(async_seconds: float, rolled_back: bool) -> None:
    guarded = guard(Verdicts())
    record(guarded, "legacy", MIN_REQUESTS, seconds=0.01)
    record(guarded, "async", MIN_REQUESTS, seconds=async_seconds)
    verdict = guarded.verdict(PROBE_ROUTE)
    assert (verdict is not None) is rolled_back
    assert verdict is None or "p95" in verdict


def test_outcomes_older_than_the_window_are_forgotten() -> None:
    guarded = guard(Verdicts(), window=0.2)
    record(guarded, "async", MIN_REQUESTS, status=500)
    time.sleep(0.25)
    record(guarded, "legacy", MIN_REQUESTS)
    record(guarded, "async", MIN_REQUESTS)
    assert len(guarded.outcomes[PROBE_ROUTE, "async"]) == MIN_REQUESTS
    assert guarded.verdict(PROBE_ROUTE) is None


def test_record_judges_at_most_every_half_second_and_then_starts_afresh() -> None:
    verdicts = Verdicts()
    guarded = guard(verdicts)
    record(guarded, "legacy", MIN_REQUESTS)
    record(guarded, "async", MIN_REQUESTS, status=500)
    assert verdicts.calls == []
    time.sleep(0.55)
    record(guarded, "async", 1, status=500)
    assert [key for key, _ in verdicts.calls] == [PROBE_ROUTE]
    assert "5xx rate" in verdicts.calls[0][1]
    assert (PROBE_ROUTE, "async") not in guarded.outcomes
    assert guarded.verdict(PROBE_ROUTE) is None
