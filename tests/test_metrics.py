"""Prometheus metrics of a real app: exposition, values, bounded labels, blocking, the advisor."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import text

from demo.app import ASYNC_ROUTERS, LEGACY_ROUTERS, create_demo_app
from demo.settings import DemoSettings
from gateway import SyncDB
from gateway.metrics.advisor import (
    COUNTERS,
    GROUPING,
    Labels,
    Series,
    build_report,
    increase,
    quantile,
)
from tests.helpers import IMPL_HEADER, assert_error, serving

pytestmark = [pytest.mark.anyio, pytest.mark.version_independent]

PROMTOOL = Path("/usr/bin/promtool")
REQUESTS = "gateway_request_duration_seconds"
USER_KEY = "GET /users/{user_id}"
ITEM_KEY = "GET /items/{item_id}"
ORDER_KEY = "GET /orders/{order_id}"
ADMIN_TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
NEVER_JUDGED = 10**9
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
HOLD_SECONDS = 10.0
SLOW_SECONDS = 0.05
REPORT_WINDOW = 2

Routers = Sequence[APIRouter] | None


def gateway_app(
    url: str, *, legacy_routers: Routers = None, async_routers: Routers = None, **overrides: Any
) -> FastAPI:
    settings = DemoSettings(
        database_url=url,
        log_level="WARNING",
        admin_tokens={"ops": ADMIN_TOKEN},
        **{"rollback_min_requests": NEVER_JUDGED, **overrides},
    )
    return create_demo_app(settings, legacy_routers=legacy_routers, async_routers=async_routers)


def with_default_routes(package: str, *extra: APIRouter) -> list[APIRouter]:
    defaults = LEGACY_ROUTERS if package == "legacy_routes" else ASYNC_ROUTERS
    return [*defaults, *extra]


async def set_mode(client: httpx.AsyncClient, key: str, **change: Any) -> None:
    response = await client.put("/admin/routes/" + quote(key, safe=""), json=change, headers=AUTH)
    assert response.status_code == 200, response.text


async def get_ok(client: httpx.AsyncClient, path: str, impl: str | None = None) -> None:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    if impl is not None:
        assert response.headers[IMPL_HEADER] == impl


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return response.text


def all_samples(exposition: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(exposition) for s in family.samples]


def matching(exposition: str, name: str, **labels: str) -> list[Sample]:
    """Samples called `name` whose labels include `labels`."""
    return [
        sample
        for sample in all_samples(exposition)
        if sample.name == name and labels.items() <= sample.labels.items()
    ]


def labelled(exposition: str) -> list[Sample]:
    """Samples that name a route."""
    return [sample for sample in all_samples(exposition) if "route" in sample.labels]


def families_with(exposition: str, **labels: str) -> set[str]:
    """Names of the metric families with a sample whose labels include `labels` (no `_created`)."""
    return {
        family.name
        for family in text_string_to_metric_families(exposition)
        if not family.name.endswith("_created")
        and any(labels.items() <= sample.labels.items() for sample in family.samples)
    }


def value(exposition: str, name: str, **labels: str) -> float:
    """The sum of the matching samples' values (0 when there is none)."""
    return sum(sample.value for sample in matching(exposition, name, **labels))


def user_requests(exposition: str, impl: str, status: str = "200") -> float:
    labels = {"method": "GET", "route": USER_KEY, "impl": impl, "status": status}
    return value(exposition, f"{REQUESTS}_count", **labels)


def promtool(*arguments: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool; a machine without it fails the test (the tests need the Debian package)."""
    if not PROMTOOL.exists():
        pytest.fail(
            f"{PROMTOOL} is missing: install the Debian package 'prometheus', "
            "which provides promtool"
        )
    return subprocess.run(
        [str(PROMTOOL), *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def wait_for(condition: Callable[[], Awaitable[bool]], seconds: float = 5.0) -> None:
    with anyio.fail_after(seconds):
        while not await condition():
            await anyio.sleep(0.02)


async def mixed_traffic(client: httpx.AsyncClient) -> None:
    """Legacy, async, canary and shadow requests, a 404, a 422 and unmatched paths."""
    await set_mode(client, ITEM_KEY, mode="async")
    await set_mode(client, "GET /users", mode="canary", percent=50)
    await set_mode(client, "GET /items", mode="shadow", primary="legacy")
    await get_ok(client, "/users/1", "legacy")
    await get_ok(client, "/items/1", "async")
    for _ in range(4):
        await get_ok(client, "/users")
        await get_ok(client, "/items", "legacy")
    assert (await client.get("/users/999999")).status_code == 404
    assert (await client.get("/users/not-a-number")).status_code == 422
    assert (await client.get("/nowhere/1")).status_code == 404
    assert (await client.request("BREW", "/nowhere/2")).status_code == 404


async def test_exposition_passes_promtool_and_speaks_openmetrics(committed_database: str) -> None:
    async with serving(gateway_app(committed_database)) as client:
        await mixed_traffic(client)

        async def compared() -> bool:
            return value(await scrape(client), "gateway_shadow_comparisons_total") >= 4

        await wait_for(compared)
        exposition = await scrape(client)
        openmetrics = await client.get("/metrics", headers={"accept": OPENMETRICS})

    checked = promtool("check", "metrics", stdin=exposition)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for status in ("200", "404", "422"):
        assert matching(exposition, f"{REQUESTS}_count", status=status), status
    assert matching(exposition, f"{REQUESTS}_count", route="UNMATCHED", method="OTHER")
    assert openmetrics.status_code == 200
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.endswith("# EOF\n")
    parsed = {
        sample.name
        for family in openmetrics_families(openmetrics.text)
        for sample in family.samples
    }
    assert {f"{REQUESTS}_count", "gateway_threadpool_seconds_total"} <= parsed


async def test_request_and_database_counts_per_implementation(committed_database: str) -> None:
    legacy_requests, async_requests = 5, 3
    async with serving(gateway_app(committed_database)) as client:
        for user_id in range(1, legacy_requests + 1):
            await get_ok(client, f"/users/{user_id}", "legacy")
        assert (await client.get("/users/999999")).status_code == 404
        after_legacy = await scrape(client)
        await set_mode(client, USER_KEY, mode="async")
        for user_id in range(1, async_requests + 1):
            await get_ok(client, f"/users/{user_id}", "async")
        after_async = await scrape(client)

    assert user_requests(after_async, "legacy") == legacy_requests
    assert user_requests(after_async, "async") == async_requests
    assert user_requests(after_async, "legacy", "404") == 1
    assert not [s for s in all_samples(after_async) if "999999" in s.labels.get("route", "")]
    served = {"legacy": legacy_requests + 1, "async": async_requests}
    for impl, count in served.items():
        labels = {"route": USER_KEY, "impl": impl}
        database_sum = value(after_async, "gateway_db_query_duration_seconds_sum", **labels)
        assert value(after_async, "gateway_db_query_duration_seconds_count", **labels) == count
        assert 0 < database_sum <= value(after_async, f"{REQUESTS}_sum", **labels)
    waits = {"route": USER_KEY}
    assert value(after_legacy, "gateway_threadpool_wait_seconds_count", **waits) == served["legacy"]
    assert value(after_async, "gateway_threadpool_wait_seconds_count", **waits) == served["legacy"]


async def test_threadpool_seconds_grow_with_legacy_requests_only(committed_database: str) -> None:
    route = {"route": USER_KEY}
    async with serving(gateway_app(committed_database)) as client:
        await get_ok(client, "/users/1", "legacy")
        first = value(await scrape(client), "gateway_threadpool_seconds_total", **route)
        await get_ok(client, "/users/2", "legacy")
        second = value(await scrape(client), "gateway_threadpool_seconds_total", **route)
        await set_mode(client, USER_KEY, mode="async")
        await get_ok(client, "/users/3", "async")
        after_async = await scrape(client)

    assert 0 < first < second
    assert value(after_async, "gateway_threadpool_seconds_total", **route) == second


async def test_async_default_records_no_threadpool_wait(committed_database: str) -> None:
    async with serving(gateway_app(committed_database, default_mode="async")) as client:
        for user_id in (1, 2, 3):
            await get_ok(client, f"/users/{user_id}", "async")
        exposition = await scrape(client)

    assert user_requests(exposition, "async") == 3
    assert not matching(exposition, "gateway_threadpool_wait_seconds_count", route=USER_KEY)
    assert not matching(exposition, "gateway_threadpool_seconds_total", route=USER_KEY)


def held_router(entered: threading.Event, release: threading.Event) -> APIRouter:
    router = APIRouter()

    @router.get("/held")
    def held() -> dict[str, bool]:
        entered.set()
        return {"released": release.wait(HOLD_SECONDS)}

    return router


async def test_requests_in_progress_while_an_endpoint_runs(committed_database: str) -> None:
    entered, release = threading.Event(), threading.Event()
    routers = with_default_routes("legacy_routes", held_router(entered, release))
    held = {"method": "GET", "route": "GET /held", "impl": "legacy"}
    responses: list[httpx.Response] = []
    readings: list[str] = []
    async with serving(gateway_app(committed_database, legacy_routers=routers)) as client:

        async def call_held() -> None:
            responses.append(await client.get("/held"))

        async def running() -> bool:
            return entered.is_set()

        async def thread_in_use_sampled() -> bool:
            readings.append(await scrape(client))
            return value(readings[-1], "gateway_threadpool_in_use") >= 1

        try:
            async with anyio.create_task_group() as group:
                group.start_soon(call_held)
                await wait_for(running)
                await wait_for(thread_in_use_sampled)
                release.set()
        finally:
            release.set()
        after = await scrape(client)

    assert responses[0].json() == {"released": True}
    assert {value(reading, "gateway_requests_in_progress", **held) for reading in readings} == {1}
    assert value(readings[-1], "gateway_requests_in_progress") == 1
    assert matching(after, "gateway_requests_in_progress", **held)
    assert value(after, "gateway_requests_in_progress") == 0
    assert value(after, f"{REQUESTS}_count", **held, status="200") == 1


async def test_sampled_gauges_follow_the_settings(committed_database: str) -> None:
    sizes: dict[str, Any] = {"threadpool_size": 7, "sync_pool_size": 3, "sync_max_overflow": 4}
    app = gateway_app(committed_database, async_pool_size=5, **sizes)
    async with serving(app) as client:
        await get_ok(client, "/users/1")
        await anyio.sleep(1.1)
        exposition = await scrape(client)

    assert value(exposition, "gateway_threadpool_capacity") == sizes["threadpool_size"]
    assert value(exposition, "gateway_db_pool_size", engine="sync") == sizes["sync_pool_size"]
    assert value(exposition, "gateway_db_pool_size", engine="async") == 5
    for gauge in ("gateway_db_pool_in_use", "gateway_db_pool_idle", "gateway_db_pool_overflow"):
        for engine in ("sync", "async"):
            assert len(matching(exposition, gauge, engine=engine)) == 1, (gauge, engine)
    assert value(exposition, "gateway_db_pool_idle") >= 1
    assert value(exposition, "gateway_event_loop_lag_seconds_count") >= 2


def route_gauges(exposition: str, name: str, route: str, label: str) -> dict[str, float]:
    return {s.labels[label]: s.value for s in matching(exposition, name, route=route)}


async def test_routing_gauges_follow_mode_changes(committed_database: str) -> None:
    async with serving(gateway_app(committed_database)) as client:
        initial = await scrape(client)
        await set_mode(client, USER_KEY, mode="canary", percent=30)
        canary = await scrape(client)
        await set_mode(client, USER_KEY, mode="canary", percent=60)
        more = await scrape(client)
        await set_mode(client, USER_KEY, mode="shadow", primary="legacy")
        shadow = await scrape(client)
        listed = (await client.get("/admin/routes")).json()

    modes = {"legacy": 0.0, "async": 0.0, "canary": 0.0, "shadow": 0.0}
    assert route_gauges(initial, "gateway_route_mode", USER_KEY, "mode") == {**modes, "legacy": 1}
    assert route_gauges(canary, "gateway_route_mode", USER_KEY, "mode") == {**modes, "canary": 1}
    assert route_gauges(shadow, "gateway_route_mode", USER_KEY, "mode") == {**modes, "shadow": 1}
    readings = (initial, canary, more, shadow)
    percents = [value(r, "gateway_route_canary_percent", route=USER_KEY) for r in readings]
    assert percents == [0, 30, 60, 0]
    twin = route_gauges(initial, "gateway_route_implementations", USER_KEY, "impl")
    assert twin == {"legacy": 1, "async": 1}
    only = route_gauges(initial, "gateway_route_implementations", ORDER_KEY, "impl")
    assert only == {"legacy": 1}
    results = route_gauges(initial, "gateway_shadow_comparisons_total", USER_KEY, "result")
    assert results == dict.fromkeys(("match", "mismatch", "error", "dropped", "calibration"), 0)
    assert [
        s.value for s in matching(initial, "gateway_route_rollbacks_total", route=USER_KEY)
    ] == [0]
    assert not matching(initial, "gateway_shadow_comparisons_total", route=ORDER_KEY)
    assert not matching(initial, "gateway_route_rollbacks_total", route=ORDER_KEY)
    for row in listed:
        assert value(shadow, "gateway_route_mode", route=row["route"], mode=row["mode"]) == 1
        assert value(shadow, "gateway_route_mode", route=row["route"]) == 1


ROUTE_FAMILIES = {
    REQUESTS,
    "gateway_requests_in_progress",
    "gateway_threadpool_wait_seconds",
    "gateway_threadpool_seconds",
    "gateway_db_query_duration_seconds",
    "gateway_event_loop_blocked",
    "gateway_route_implementations",
    "gateway_route_mode",
    "gateway_route_canary_percent",
    "gateway_shadow_comparisons",
    "gateway_route_rollbacks",
    "gateway_rollout_verdicts",  # at zero for every route with two implementations
}


async def test_every_metric_names_a_route_by_its_key(committed_database: str) -> None:
    shadowed = "GET /items"
    async with serving(blocking_app(committed_database)) as client:
        await mixed_traffic(client)
        await get_ok(client, "/blocking", "async")

        async def compared() -> bool:
            return value(await scrape(client), "gateway_shadow_comparisons_total") >= 4

        await wait_for(compared)
        exposition = await scrape(client)
        keys = {row["route"] for row in (await client.get("/admin/routes")).json()}

    assert {"GET /blocking", USER_KEY, shadowed} <= keys
    for sample in labelled(exposition):
        route = sample.labels["route"]
        assert route in keys or route == "UNMATCHED", sample
        assert (sample.labels.get("impl") == "none") == (route == "UNMATCHED"), sample
        if "method" in sample.labels and route != "UNMATCHED":
            assert sample.labels["method"] == route.partition(" ")[0], sample
    assert families_with(exposition, route=shadowed) == ROUTE_FAMILIES - {
        "gateway_event_loop_blocked"
    }
    assert "gateway_event_loop_blocked" in families_with(exposition, route="GET /blocking")


NOT_API = (
    "/metrics",
    "/healthz",
    "/readyz",
    "/docs",
    "/openapi.json",
    "/admin/routes",
    "/admin/routes/events",
    "/admin/report?window=0.1",
)


async def test_operations_endpoints_are_not_recorded_as_routes(committed_database: str) -> None:
    recorded: dict[str, float] = {}
    async with serving(gateway_app(committed_database)) as client:
        for path in NOT_API:
            before = value(await scrape(client), f"{REQUESTS}_count")
            response = await client.get(path)
            assert response.status_code == 200, (path, response.text)
            recorded[path] = value(await scrape(client), f"{REQUESTS}_count") - before
        await get_ok(client, "/users/1")
        with_api = await scrape(client)

    assert {path: count for path, count in recorded.items() if count} == {}
    assert not matching(with_api, "gateway_db_query_duration_seconds_count", impl="none")
    assert user_requests(with_api, "legacy") == 1
    paths = {sample.labels["route"].partition(" ")[2] for sample in labelled(with_api)}
    assert not {path for path in paths if path.startswith(("/metrics", "/healthz", "/admin"))}
    assert not paths & {"/readyz", "/docs", "/openapi.json"}


def label_sets(exposition: str, prefix: str) -> set[frozenset[tuple[str, str]]]:
    return {
        frozenset(sample.labels.items())
        for sample in all_samples(exposition)
        if sample.name.startswith(prefix)
    }


ODD_METHODS = ("PROPFIND", "BREW", "MKCOL", "X-CUSTOM")


async def flood(client: httpx.AsyncClient, unknown_paths: int, odd_requests: int) -> None:
    limiter = anyio.CapacityLimiter(50)

    async def send(method: str) -> None:
        async with limiter:
            response = await client.request(method, f"/x/{uuid.uuid4()}")
        assert response.status_code == 404, response.text

    async with anyio.create_task_group() as group:
        for _ in range(unknown_paths):
            group.start_soon(send, "GET")
        for index in range(odd_requests):
            group.start_soon(send, ODD_METHODS[index % len(ODD_METHODS)])


async def test_unknown_paths_and_methods_add_no_label_values(committed_database: str) -> None:
    async with serving(gateway_app(committed_database)) as client:
        await flood(client, unknown_paths=1, odd_requests=1)
        baseline = await scrape(client)
        await flood(client, unknown_paths=1_000, odd_requests=200)
        flooded = await scrape(client)

    unmatched = {"route": "UNMATCHED", "impl": "none"}
    assert value(baseline, f"{REQUESTS}_count", method="GET", **unmatched) == 1
    assert value(baseline, f"{REQUESTS}_count", method="OTHER", **unmatched) == 1
    assert value(flooded, f"{REQUESTS}_count", method="GET", **unmatched) == 1_001
    assert value(flooded, f"{REQUESTS}_count", method="OTHER", **unmatched) == 201
    assert label_sets(flooded, REQUESTS) == label_sets(baseline, REQUESTS)
    for name in ("gateway_requests_in_progress", "gateway_db_query_duration_seconds"):
        assert label_sets(flooded, name) == label_sets(baseline, name)


async def test_a_body_refused_by_its_declared_length_is_counted(committed_database: str) -> None:
    async with serving(gateway_app(committed_database)) as client:
        refused = await client.post(
            "/users", content=b"{}", headers={"content-length": str(2 * 1024 * 1024)}
        )
        exposition = await scrape(client)
    assert refused.status_code == 413
    unmatched = {"route": "UNMATCHED", "impl": "none", "method": "POST", "status": "413"}
    assert value(exposition, f"{REQUESTS}_count", **unmatched) == 1


def blocking_router() -> APIRouter:
    router = APIRouter()

    @router.get("/blocking")
    async def blocking(db: SyncDB) -> dict[str, int]:
        return {"one": db.execute(text("SELECT 1")).scalar_one()}

    @router.get("/blocking-too")
    async def blocking_too(db: SyncDB) -> dict[str, int]:
        return {"two": db.execute(text("SELECT 2")).scalar_one()}

    return router


@contextmanager
def gateway_records(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """The records the `gateway` logger (which does not propagate) emits inside the block."""
    logger = logging.getLogger("gateway")
    logger.addHandler(caplog.handler)
    try:
        yield caplog.records
    finally:
        logger.removeHandler(caplog.handler)


def blocking_app(url: str, **overrides: Any) -> FastAPI:
    routers = with_default_routes("async_routes", blocking_router())
    return gateway_app(url, async_routers=routers, **overrides)


def blocked(exposition: str, route: str) -> float:
    labels = {"method": "GET", "route": route, "impl": "async"}
    return value(exposition, "gateway_event_loop_blocked_total", **labels)


async def test_sync_session_on_the_event_loop_is_counted_and_warned_once(
    committed_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    with gateway_records(caplog) as records:
        async with serving(blocking_app(committed_database)) as client:
            await get_ok(client, "/users/1", "legacy")
            await set_mode(client, ITEM_KEY, mode="async")
            await get_ok(client, "/items/1", "async")
            for _ in range(3):
                await get_ok(client, "/blocking", "async")
            await get_ok(client, "/blocking-too", "async")
            exposition = await scrape(client)

    assert blocked(exposition, "GET /blocking") == 3
    assert blocked(exposition, "GET /blocking-too") == 1
    assert value(exposition, "gateway_event_loop_blocked_total") == 4
    warnings = [r for r in records if r.name == "gateway.metrics.instrumentation"]
    assert [r.levelno for r in warnings] == [logging.WARNING, logging.WARNING]
    assert warnings[0].getMessage().startswith("GET /blocking (async): ")
    assert warnings[1].getMessage().startswith("GET /blocking-too (async): ")


async def test_raise_on_blocking_fails_the_request_and_still_counts(
    committed_database: str,
) -> None:
    async with serving(blocking_app(committed_database, raise_on_blocking=True)) as client:
        failed = await client.get("/blocking")
        await get_ok(client, "/users/1", "legacy")
        exposition = await scrape(client)

    assert_error(failed, 500, "internal_error")
    assert failed.headers[IMPL_HEADER] == "async"
    assert blocked(exposition, "GET /blocking") == 1
    assert value(exposition, "gateway_event_loop_blocked_total") == 1
    labels = {"method": "GET", "route": "GET /blocking", "impl": "async", "status": "500"}
    assert value(exposition, f"{REQUESTS}_count", **labels) == 1


def slow_router() -> APIRouter:
    router = APIRouter()

    @router.get("/slow")
    def slow() -> dict[str, float]:
        time.sleep(SLOW_SECONDS)
        return {"slept": SLOW_SECONDS}

    return router


@asynccontextmanager
async def load(client: httpx.AsyncClient, paths: Sequence[str]) -> AsyncIterator[None]:
    """One request loop per path until the block ends."""
    stop = anyio.Event()

    async def loop(path: str) -> None:
        while not stop.is_set():
            await get_ok(client, path)

    async with anyio.create_task_group() as group:
        for path in paths:
            group.start_soon(loop, path)
        try:
            yield
        finally:
            stop.set()


async def test_report_ranks_the_slow_legacy_route_first(committed_database: str) -> None:
    routers = with_default_routes("legacy_routes", slow_router())
    app = gateway_app(committed_database, legacy_routers=routers)
    async with serving(app) as client:
        await set_mode(client, ITEM_KEY, mode="async")
        paths = [*["/slow"] * 4, "/users/1", "/items/1", "/items/2"]
        async with load(client, paths):
            response = await client.get(f"/admin/report?window={REPORT_WINDOW}", timeout=30)
        listed = (await client.get("/admin/routes")).json()

    assert response.status_code == 200, response.text
    report = response.json()
    first = report["routes"][0]
    assert first["route"] == "GET /slow", json.dumps(report["routes"][:3], indent=1)
    assert first["threadpool_share"] > 0.5
    assert "threadpool time" in first["why"]
    assert first["by_impl"]["legacy"]["requests_per_second"] > 0
    assert report["window_seconds"] == REPORT_WINDOW
    assert report["routes_total"] == len(listed)
    assert report["routes_with_async"] == sum("async" in r["implementations"] for r in listed)
    by_route = {route["route"]: route for route in report["routes"]}
    assert set(by_route[ITEM_KEY]["by_impl"]) == {"async"}
    assert by_route[ITEM_KEY]["thread_seconds_per_second"] == 0


BUCKET_CASES: list[tuple[dict[float, float], float]] = [
    ({0.1: 10, 0.5: 30, 1.0: 40, math.inf: 40}, 0.5),
    ({0.1: 10, 0.5: 30, 1.0: 40, math.inf: 40}, 0.25),
    ({0.1: 10, 0.5: 30, 1.0: 40, math.inf: 40}, 0.95),
    ({0.1: 10, 0.5: 30, 1.0: 40, math.inf: 40}, 0.99),
    ({0.005: 3, 0.01: 3, 0.025: 9, 0.05: 12, math.inf: 12}, 0.5),
    ({0.1: 10, 1.0: 20, math.inf: 30}, 0.9),
    ({0.1: 0, 1.0: 0, math.inf: 7}, 0.5),
    ({0.25: 4, 0.5: 4, 1.0: 8, math.inf: 8}, 0.5),
]


@pytest.mark.parametrize(
    ("buckets", "q", "expected"),
    [
        ({0.1: 10, 0.5: 30, 1.0: 40, math.inf: 40}, 0.5, 0.3),
        ({0.1: 10, 0.5: 30, 1.0: 40, math.inf: 40}, 0.25, 0.1),
        ({0.1: 10, 0.5: 30, 1.0: 40, math.inf: 40}, 0.95, 0.9),
        ({0.1: 10, 1.0: 20, math.inf: 30}, 0.9, 1.0),
        ({0.25: 4, 0.5: 4, 1.0: 8, math.inf: 8}, 0.5, 0.25),
    ],
)
def test_quantile_interpolates_within_the_bucket(
    buckets: dict[float, float], q: float, expected: float
) -> None:
    assert quantile(q, buckets) == pytest.approx(expected)


def test_quantile_of_no_observations_is_none() -> None:
    assert quantile(0.5, {0.1: 0, 1.0: 0, math.inf: 0}) is None
    assert quantile(0.5, {}) is None


def bucket_series(name: str, buckets: dict[float, float]) -> list[dict[str, str]]:
    return [
        {"series": f'{name}{{le="{"+Inf" if math.isinf(b) else b}"}}', "values": f"{c:g}x1"}
        for b, c in buckets.items()
    ]


def promtool_quantile_tests(path: Path) -> None:
    """A `promtool test rules` file expecting histogram_quantile to equal `quantile` each time."""
    input_series: list[dict[str, str]] = []
    expressions = []
    for index, (buckets, q) in enumerate(BUCKET_CASES):
        name = f"case_{index}_bucket"
        input_series += bucket_series(name, buckets)
        ours = quantile(q, buckets)
        assert ours is not None
        expressions.append(
            {
                "expr": f"histogram_quantile({q}, {name})",
                "eval_time": "0m",
                "exp_samples": [{"labels": "{}", "value": ours}],
            }
        )
    tests = [{"interval": "1m", "input_series": input_series, "promql_expr_test": expressions}]
    path.write_text(json.dumps({"rule_files": [], "tests": tests}))


def test_quantile_agrees_with_prometheus_histogram_quantile(tmp_path: Path) -> None:
    tests = tmp_path / "quantiles.yml"
    promtool_quantile_tests(tests)
    result = promtool("test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr


def test_report_sums_a_route_over_instances_and_ignores_unmatched() -> None:
    """Series as several scraped instances give them: each route summed, whatever else differs."""
    requests = f"{REQUESTS}_count"
    series: Series = {}
    for instance, count in (("a:8000", 30.0), ("b:8000", 50.0)):
        where = {"instance": instance, "route": USER_KEY}
        series[series_key(requests, **where, impl="legacy", status="200")] = count
        series[series_key(requests, **where, impl="async", status="200")] = count / 10
        series[series_key("gateway_threadpool_seconds_total", **where, method="GET")] = count / 100
        series[series_key("gateway_event_loop_blocked_total", **where, impl="async")] = 1.0
        series[series_key("gateway_route_mode", **where, mode="shadow")] = 1.0
        series[series_key("gateway_route_implementations", **where, impl="legacy")] = 1.0
        series[series_key("gateway_route_implementations", **where, impl="async")] = 1.0
        series[series_key(requests, instance=instance, route="UNMATCHED", impl="none")] = 99.0
    report = build_report(series, 10.0)
    (route,) = report.routes
    assert route.route == USER_KEY
    assert route.mode == "shadow"
    assert route.by_impl["legacy"].requests_per_second == pytest.approx(8.0)
    assert route.by_impl["async"].requests_per_second == pytest.approx(0.8)
    assert route.thread_seconds_per_second == pytest.approx(0.08)
    assert route.event_loop_blocked == 2


def test_prometheus_queries_group_by_route_only() -> None:
    grouping = {label.strip() for label in GROUPING.split(",")}
    assert "route" in grouping
    assert not grouping & {"method", "instance", "job"}


def series_key(name: str, **labels: str) -> tuple[str, Labels]:
    return name, tuple(sorted(labels.items()))


def test_increase_treats_a_drop_as_a_counter_reset() -> None:
    requests = series_key(f"{REQUESTS}_count", route=USER_KEY)
    threads = series_key("gateway_threadpool_seconds_total", route="GET /slow")
    fresh = series_key("gateway_event_loop_blocked_total", route="GET /blocking")
    mode = series_key("gateway_route_mode", mode="legacy")
    assert {requests[0], threads[0], fresh[0]} <= set(COUNTERS)
    before: Series = {requests: 10.0, threads: 4.5, mode: 1.0}
    after: Series = {requests: 3.0, threads: 6.0, fresh: 2.0, mode: 1.0}
    assert increase(before, after) == {requests: 3.0, threads: 1.5, fresh: 2.0, mode: 1.0}
    assert increase(after, after) == {requests: 0.0, threads: 0.0, fresh: 0.0, mode: 1.0}
