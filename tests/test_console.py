"""The migration console at /admin: its page, its data, and the page in a real browser.

In-process: the page and its assets (no token, a strict policy, nothing from
elsewhere), the data endpoint's refusals and what it answers after traffic,
mode changes, a plan and shadow mismatches, and the metrics history it reads.

In headless Chromium (`tests.browser`), against `gateway serve --workers 2`
serving the demo plus a drifting twin (`tests.console_app`): every route
listed, numbers and charts after traffic, a canary set from the page reaching
the API and the traffic, a plan started and aborted from the page, refusals
of a wrong and a read-only token, every control by keyboard, and the README's
screenshot. Screenshots go to test-artifacts/console/. With a Prometheus
scraping two instances, the figures cover the fleet.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import psutil
import pytest
from fastapi import FastAPI
from playwright.sync_api import Page, expect
from prometheus_client import CollectorRegistry

from demo.app import ASYNC_ROUTERS, LEGACY_ROUTERS, create_demo_app
from demo.settings import DemoSettings
from gateway.metrics.history import (
    HISTORY_SECONDS,
    READINGS_PER_WINDOW,
    MetricsHistory,
    Point,
    thinned,
)
from gateway.metrics.registry import GatewayMetrics
from gateway.settings import DEFAULT_BUCKETS
from tests.browser import LAPTOP, WatchedPage, chromium_page, screenshot
from tests.console_app import QUOTE_ROUTE, legacy, migrated
from tests.helpers import IMPL_HEADER, assert_error, serving
from tests.processes import (
    LOCALHOST,
    RunningProcess,
    child_env,
    free_port,
    gateway_command,
    process_family,
    running_prometheus,
    running_server,
    stop_processes,
)

pytestmark = pytest.mark.version_independent

USERS = "GET /users/{user_id}"
ITEMS = "GET /items/{item_id}"
WRITE_TOKEN = "console-ops-token"
READ_TOKEN = "console-viewer-token"
WRITE = {"Authorization": f"Bearer {WRITE_TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
IMPL_ORDER = ("legacy", "async")
INSTANCE = "console-test"
WORKERS = 2
WAIT_SECONDS = 60.0  # generous: the suite runs many servers at once on small machines
SERVER_START_SECONDS = 90.0
LONG_EXPECT_MS = WAIT_SECONDS * 1000
LATENCY = re.compile(r"^\d+\.\d / \d+\.\d$")


def console_settings(url: str, **overrides: Any) -> DemoSettings:
    values: dict[str, Any] = {
        "database_url": url,
        "log_level": "WARNING",
        "admin_tokens": {"ops": WRITE_TOKEN},
        "admin_read_tokens": {"viewer": READ_TOKEN},
        "instance_name": INSTANCE,
        "console_sample_seconds": 0.05,
        "console_window_seconds": 5,
        "rollout_tick_seconds": 0.1,
        "rollout_lease_seconds": 1.0,
        **overrides,
    }
    return DemoSettings(**values)


def console_app(url: str, **overrides: Any) -> FastAPI:
    """The demo plus the drifting quote twin, sampled every 50 ms over a 5 s window."""
    return create_demo_app(
        console_settings(url, **overrides),
        legacy_routers=[*LEGACY_ROUTERS, legacy],
        async_routers=[*ASYNC_ROUTERS, migrated],
    )


def route_path(key: str) -> str:
    return "/admin/routes/" + quote(key, safe="")


# ---- the page and its assets ------------------------------------------------------------------

ASSET = re.compile(r'(?:src|href)="(?!#)([^"]+)"')
OUTSIDE = re.compile(r"https?://(?!www\.w3\.org/2000/svg)")


@pytest.mark.anyio
async def test_the_page_needs_no_token_and_loads_only_its_own_assets(
    committed_database: str,
) -> None:
    async with serving(console_app(committed_database), admin=False) as client:
        page = await client.get("/admin")
        assets = {link: await client.get(link) for link in ASSET.findall(page.text)}
        missing = await client.get("/admin/console/assets/passwords.txt")
        openapi = (await client.get("/admin/openapi.json", headers=READ)).json()
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "<script>" not in page.text and "style=" not in page.text and "<style" not in page.text
    assert set(assets) == {
        "/admin/console/assets/console.svg",
        "/admin/console/assets/console.css",
        "/admin/console/assets/console.js",
    }
    media = {
        link.rsplit(".", 1)[1]: answer.headers["content-type"] for link, answer in assets.items()
    }
    assert media["js"].startswith("text/javascript")
    assert media["css"].startswith("text/css")
    assert media["svg"] == "image/svg+xml"
    for link, answer in assets.items():
        assert answer.status_code == 200, link
        assert OUTSIDE.search(answer.text) is None, link
    assert OUTSIDE.search(page.text) is None
    assert missing.status_code == 404
    assert "/admin/console/data" in openapi["paths"]


@pytest.mark.anyio
async def test_under_a_path_prefix_the_page_links_carry_it(committed_database: str) -> None:
    app = console_app(committed_database)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, root_path="/gateway")
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            page = await client.get("/gateway/admin")
    assert page.status_code == 200, page.text
    assert set(ASSET.findall(page.text)) == {
        f"/gateway/admin/console/assets/{name}"
        for name in ("console.svg", "console.css", "console.js")
    }
    assert 'data-root="/gateway"' in page.text


@pytest.mark.anyio
async def test_the_console_is_not_measured_nor_listed_in_the_apps_openapi(
    committed_database: str,
) -> None:
    app = console_app(committed_database, admin_in_openapi=True)
    async with serving(app, admin=False) as client:
        await client.get("/admin")
        await client.get("/admin/console/assets/console.js")
        await client.get("/admin/console/data", headers=READ)
        metrics = (await client.get("/metrics")).text
        listed = (await client.get("/openapi.json")).json()["paths"]
    assert "/admin" not in listed
    assert not any(path.startswith("/admin/console/assets") for path in listed)
    assert "/admin/console/data" in listed
    assert 'route="UNMATCHED"' not in metrics
    assert "console" not in metrics


# ---- the data ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_data_needs_an_admin_token(committed_database: str) -> None:
    async with serving(console_app(committed_database), admin=False) as client:
        anonymous = await client.get("/admin/console/data")
        wrong = await client.get("/admin/console/data", headers={"Authorization": "Bearer nope"})
        viewer = await client.get("/admin/console/data", headers=READ)
        ops = await client.get("/admin/console/data", headers=WRITE)
    async with serving(
        console_app(committed_database, admin_tokens={}, admin_read_tokens={})
    ) as client:
        disabled = await client.get("/admin/console/data", headers=WRITE)
    assert_error(anonymous, 401, "unauthorized")
    assert_error(wrong, 401, "unauthorized")
    assert_error(disabled, 403, "forbidden")
    assert viewer.json()["access"] == {"token": "viewer", "may_change": False}
    assert ops.json()["access"] == {"token": "ops", "may_change": True}
    for answer in (anonymous, wrong, viewer, ops):
        assert WRITE_TOKEN not in answer.text and READ_TOKEN not in answer.text
        assert IMPL_HEADER not in answer.headers


async def wait_for_data(
    client: httpx.AsyncClient, done: Callable[[dict[str, Any]], bool], seconds: float = 10.0
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        data: dict[str, Any] = (await client.get("/admin/console/data")).json()
        if done(data) or time.monotonic() > deadline:
            return data
        await anyio.sleep(0.05)


def row_of(data: dict[str, Any], key: str) -> dict[str, Any]:
    found: dict[str, Any] = next(row for row in data["routes"] if row["route"] == key)
    return found


def has_both_lines(data: dict[str, Any], key: str) -> bool:
    lines = data["lines"].get(key, {})
    return all(
        any(value is not None for value in lines.get(impl, {}).get("p95", []))
        for impl in IMPL_ORDER
    )


@pytest.mark.anyio
async def test_the_data_shows_figures_modes_plans_events_and_mismatches(
    committed_database: str,
) -> None:
    async with serving(console_app(committed_database)) as client:
        for n in range(1, 21):
            await client.get(f"/users/{n % 10 + 1}")
        assert (
            await client.put(route_path(USERS), json={"mode": "canary", "percent": 100})
        ).is_success
        assert (await client.put(route_path(QUOTE_ROUTE), json={"mode": "shadow"})).is_success
        for n in range(1, 21):
            await client.get(f"/users/{n % 10 + 1}")
            await client.get(f"/quotes/{n}")
        steps = [{"mode": "canary", "percent": 20, "duration": 600}, {"mode": "async"}]
        started = await client.post("/admin/rollouts", json={"route": ITEMS, "steps": steps})
        plan_id = started.json()["id"]
        await client.post(f"/admin/rollouts/{plan_id}/abort", json={"reason": "not today"})
        data = await wait_for_data(
            client, lambda d: has_both_lines(d, USERS) and bool(d["mismatches"])
        )
        routes = (await client.get("/admin/routes")).json()

    users = row_of(data, USERS)
    assert users["mode"] == "canary" and users["percent"] == 100
    assert users["requests_per_second"] > 0
    for impl in IMPL_ORDER:
        assert users["by_impl"][impl]["p95_ms"] > 0
        assert users["by_impl"][impl]["p50_ms"] > 0
    assert has_both_lines(data, USERS)
    assert len(data["times"]) >= 2
    assert [row["rank"] for row in data["routes"]] == list(range(1, len(routes) + 1))
    assert {row["route"] for row in data["routes"]} == {route["route"] for route in routes}

    progress = data["progress"]
    assert progress["routes_total"] == len(routes)
    assert progress["routes_with_async"] == sum("async" in r["implementations"] for r in routes)
    assert progress["routes_on_async"] == sum(r["mode"] == "async" for r in routes)
    assert 0 < progress["async_request_share"] < 1

    plan = row_of(data, ITEMS)["plan"]
    assert plan["id"] == plan_id and plan["state"] == "aborted"
    assert [step["status"] for step in plan["steps"]] == ["aborted", "not reached"]
    assert [event["kind"] for event in plan["events"]] == ["started", "step", "aborted"]

    texts = [(event["route"], event["kind"], event["text"]) for event in data["events"]]
    assert (USERS, "mode", "legacy → canary 100 % by ops") in texts
    assert (ITEMS, "aborted", f"plan {plan_id}, step 1: aborted by ops: not today") in texts
    assert not any(kind == "step" for _, kind, _ in texts)  # shown as the mode change it made

    mismatch = data["mismatches"][0]
    assert mismatch["route"] == QUOTE_ROUTE
    assert "total" in mismatch["diff"]
    assert data["scope"] == {
        "source": "instance",
        "instance": INSTANCE,
        "workers": 1,
        "label": f"this instance ({INSTANCE}, 1 worker)",
    }
    assert data["database"] == "ok"
    assert data["sampling"]["every_seconds"] == 0.05
    assert 0 < data["sampling"]["covered_seconds"] <= 5 + 5 / READINGS_PER_WINDOW + 1


@pytest.mark.anyio
async def test_without_the_database_the_figures_and_modes_still_show() -> None:
    refused = f"postgresql://postgres@{LOCALHOST}:{free_port()}/nothing_listens_here"
    async with serving(console_app(refused), admin=False) as client:
        await client.get("/users/1")  # 503: the database does not answer
        client.headers.update(READ)
        data = await wait_for_data(client, lambda d: d["times"] != [])
    assert data["database"] == "unavailable"
    assert data["scope"]["label"] == f"this instance ({INSTANCE})"
    assert row_of(data, USERS)["mode"] == "legacy"
    assert data["events"] == [] and data["mismatches"] == []
    assert all(row["plan"] is None for row in data["routes"])


# ---- the history ------------------------------------------------------------------------------


def observed(metrics: GatewayMetrics, impl: str, seconds: float, times: int) -> None:
    child = metrics.request_duration.labels(method="GET", route=USERS, impl=impl, status="200")
    for _ in range(times):
        child.observe(seconds)


def test_the_history_has_a_point_per_sample_and_a_report_over_the_window() -> None:
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry, DEFAULT_BUCKETS)
    history = MetricsHistory(registry, None, every=1.0, window=10.0)
    known = {USERS: {"legacy", "async"}}
    history.sample(1000.0)
    observed(metrics, "legacy", 0.004, 10)
    history.sample(1001.0)
    observed(metrics, "async", 0.02, 5)
    history.sample(1002.0)

    recent = history.recent(known)
    assert recent.times == [1001.0, 1002.0]
    legacy_line, async_line = (recent.lines[USERS][impl] for impl in IMPL_ORDER)
    assert legacy_line["rps"] == [10.0, None]
    assert async_line["rps"] == [None, 5.0]
    assert 2.5 < legacy_line["p50"][0] <= 5  # in the (2.5 ms, 5 ms] bucket
    assert 10 < async_line["p95"][1] <= 25
    (users,) = recent.report.routes
    assert recent.report.window_seconds == 2.0
    assert users.by_impl["legacy"].requests_per_second == 5.0
    assert recent.report.async_request_share == pytest.approx(5 / 15)

    for second in range(1003, 1030):
        history.sample(float(second))
    later = history.recent(known)
    assert len(history.marks) <= READINGS_PER_WINDOW + 1
    assert 10 <= later.report.window_seconds < 10 + 10 / READINGS_PER_WINDOW + 1
    assert later.report.routes[0].requests_per_second == 0  # the traffic left the window


def test_the_history_is_bounded_and_shows_at_most_300_points() -> None:
    registry = CollectorRegistry()
    history = MetricsHistory(registry, None, every=0.5, window=60.0)
    for tick in range(5000):
        history.sample(tick * 0.5)
    assert len(history.points) == HISTORY_SECONDS / 0.5
    assert len(history.marks) <= READINGS_PER_WINDOW + 1
    points = [Point(float(n), {}) for n in range(1, 701)]
    shown = thinned(points, 300)
    assert len(shown) <= 300 and shown[-1].at == 700.0
    assert thinned(points[:10], 300) == points[:10]


# ---- in a real browser ------------------------------------------------------------------------


@contextmanager
def console_instance(
    database_url: str, log_path: Path, port: int | None = None, **settings: str
) -> Iterator[RunningProcess]:
    """`gateway serve --workers 2` of the console's test app; its workers stopped by PID after."""
    port = free_port() if port is None else port
    env = child_env(
        {
            "GATEWAY_APP": "tests.console_app:app",
            "GATEWAY_DATABASE_URL": database_url,
            "GATEWAY_ADMIN_TOKENS": json.dumps({"ops": WRITE_TOKEN}),
            "GATEWAY_ADMIN_READ_TOKENS": json.dumps({"viewer": READ_TOKEN}),
            "GATEWAY_INSTANCE_NAME": INSTANCE,
            "GATEWAY_CONSOLE_SAMPLE_SECONDS": "0.5",
            "GATEWAY_CONSOLE_WINDOW_SECONDS": "20",
            "GATEWAY_ROLLOUT_TICK_SECONDS": "0.25",
            "GATEWAY_ROLLOUT_LEASE_SECONDS": "1.5",
            "GATEWAY_LOG_LEVEL": "WARNING",
            **settings,
        }
    )
    command = gateway_command("serve", "--host", LOCALHOST, "--port", str(port), "--workers", "2")
    workers: list[psutil.Process] = []
    try:
        with running_server(
            command, env, port, log_path, deadline_seconds=SERVER_START_SECONDS
        ) as server:
            try:
                yield server
            finally:
                workers = process_family(server.process.pid)[1:]
    finally:
        stop_processes(workers)


@pytest.fixture
def console_server(committed_database: str, tmp_path: Path) -> Iterator[RunningProcess]:
    with console_instance(committed_database, tmp_path / "gateway.log") as server:
        with httpx.Client(base_url=server.base_url, headers=READ, timeout=10) as api:
            wait_for(api, lambda data: data["scope"]["workers"] == WORKERS, "both workers")
        yield server


def wait_for(
    api: httpx.Client, done: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """The console's data once `done` holds (asked of whichever worker answers)."""
    deadline = time.monotonic() + WAIT_SECONDS
    data: dict[str, Any] = {}
    while time.monotonic() < deadline:
        data = api.get("/admin/console/data").json()
        if done(data):
            return data
        time.sleep(0.2)
    shown = {
        "scope": data.get("scope"),
        "plans": [row["plan"] for row in data.get("routes", []) if row["plan"]],
        "lines": {key: sorted(line) for key, line in data.get("lines", {}).items()},
        "mismatches": len(data.get("mismatches", [])),
    }
    raise AssertionError(f"no {what} within {WAIT_SECONDS} s: {json.dumps(shown, default=str)}")


@contextmanager
def traffic(base_url: str, paths: list[str], pause: float = 0.005) -> Iterator[None]:
    """A client requesting `paths` in turn, each with a new sticky key, until the block ends."""
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(base_url=base_url, timeout=10) as client:
            n = 0
            while not stop.is_set():
                n += 1
                for path in paths:
                    client.get(path.format(n=n % 12 + 1), headers={"X-Gateway-Sticky-Key": str(n)})
                time.sleep(pause)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        yield
    finally:
        stop.set()
        sender.join()


def sign_in(page: Page, base_url: str, token: str) -> None:
    page.goto(base_url + "/admin")
    page.fill("#token-input", token)
    page.click("#token-use")


def row(page: Page, key: str) -> Any:
    return page.locator(f'#routes tbody tr[data-route="{key}"]')


def cell(page: Page, key: str, column: str) -> Any:
    return row(page, key).locator(f'[data-column="{column}"]')


def choose_route(page: Page, key: str) -> None:
    row(page, key).locator("button.route-link").click()
    expect(page.locator("#detail-title")).to_have_text(f"Route {key}")


def no_horizontal_scroll(page: Page) -> bool:
    widths: list[int] = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    return widths[0] <= widths[1]


def assert_clean(watched: WatchedPage, *provoked: int) -> None:
    assert watched.errors_besides(provoked) == []


@pytest.mark.slow
def test_the_page_lists_every_route_with_its_implementations(
    console_server: RunningProcess,
) -> None:
    base = console_server.base_url
    routes = httpx.get(base + "/admin/routes", headers=READ, timeout=10).json()
    with chromium_page() as watched:
        page = watched.page
        answer = page.goto(base + "/admin")
        assert (
            answer is not None and "script-src 'self'" in answer.headers["content-security-policy"]
        )
        page.fill("#token-input", WRITE_TOKEN)
        page.click("#token-use")
        expect(page.locator("#routes tbody tr")).to_have_count(len(routes))
        shown = {
            found.get_attribute("data-route"): found.locator(".chip").all_inner_texts()
            for found in page.locator("#routes tbody tr").all()
        }
        expect(page.locator("#scope")).to_contain_text(f"this instance ({INSTANCE}, 2 workers)")
        expect(page.locator("#token-status")).to_contain_text("read-write")
        with_async = sum("async" in route["implementations"] for route in routes)
        expect(page.locator("#with-async")).to_have_text(f"{with_async} / {len(routes)}")
        stored = page.evaluate(
            "[sessionStorage.getItem('gateway-admin-token'), localStorage.length, document.cookie]"
        )
        assert no_horizontal_scroll(page)
        screenshot(page, "routes")
        assert_clean(watched)
    assert shown == {
        route["route"]: [impl for impl in IMPL_ORDER if impl in route["implementations"]]
        for route in routes
    }
    assert stored == [WRITE_TOKEN, 0, ""]


@pytest.mark.slow
def test_after_traffic_the_numbers_and_the_charts_appear(console_server: RunningProcess) -> None:
    base = console_server.base_url
    with (
        httpx.Client(base_url=base, headers=WRITE, timeout=10) as api,
        traffic(base, ["/users/{n}", "/items/{n}"]),
        chromium_page() as watched,
    ):
        page = watched.page
        sign_in(page, base, WRITE_TOKEN)
        expect(cell(page, USERS, "legacy")).to_have_text(LATENCY, timeout=LONG_EXPECT_MS)
        expect(cell(page, USERS, "rps")).not_to_have_text("0.00")
        expect(cell(page, USERS, "chart").locator("path.line.legacy")).to_have_count(1)
        assert api.put(route_path(USERS), json={"mode": "canary", "percent": 50}).is_success
        expect(cell(page, USERS, "async")).to_have_text(LATENCY, timeout=LONG_EXPECT_MS)
        expect(cell(page, USERS, "chart").locator("path.line.async")).to_have_count(1)
        choose_route(page, USERS)
        chart = page.locator("#detail-chart")
        for drawn in ("legacy.p95", "legacy.p50", "async.p95", "async.p50"):
            expect(chart.locator(f"path.line.{drawn}")).to_have_count(1)
        expect(page.locator("#async-share")).not_to_have_text("0 %")
        expect(page.locator("#share-window")).to_contain_text("last")
        assert no_horizontal_scroll(page)
        screenshot(page, "traffic")
        assert_clean(watched)


@pytest.mark.slow
def test_a_canary_of_50_percent_set_on_the_page_sends_requests_to_async(
    console_server: RunningProcess,
) -> None:
    base = console_server.base_url
    with chromium_page() as watched:
        page = watched.page
        sign_in(page, base, WRITE_TOKEN)
        choose_route(page, USERS)
        page.fill("#canary-percent", "50")
        expect(page.locator("#canary-output")).to_have_text("50 %")
        page.fill("#mode-reason", "half the users on async")
        page.click('#mode-controls button[data-mode="canary"]')
        expect(page.locator("#mode-outcome")).to_have_text(f"Done: {USERS} is now canary 50 %.")
        expect(cell(page, USERS, "mode")).to_have_text("canary 50 %")
        expect(page.locator("#events")).to_contain_text("legacy → canary 50 % by ops")
        screenshot(page, "canary")
        assert_clean(watched)
    with httpx.Client(base_url=base, timeout=10) as client:
        stored = row_of({"routes": client.get("/admin/routes", headers=READ).json()}, USERS)
        served = [
            client.get("/users/1", headers={"X-Gateway-Sticky-Key": f"client-{n}"}).headers[
                IMPL_HEADER
            ]
            for n in range(200)
        ]
    assert (stored["mode"], stored["percent"], stored["changed_by"]) == ("canary", 50, "ops")
    assert stored["reason"] == "half the users on async"
    assert 50 <= served.count("async") <= 150, served.count("async")


@pytest.mark.slow
def test_a_plan_started_and_aborted_on_the_page_shows_in_its_events(
    console_server: RunningProcess,
) -> None:
    base = console_server.base_url
    with chromium_page() as watched:
        page = watched.page
        sign_in(page, base, WRITE_TOKEN)
        choose_route(page, ITEMS)
        page.fill("#plan-steps-input", "canary 20% 10m min=50\nasync")
        page.fill("#plan-reason", "items to async")
        page.click("#plan-start")
        expect(page.locator("#plan-outcome")).to_contain_text("Done: plan")
        plan_id = int(re.findall(r"plan (\d+)", page.inner_text("#plan-outcome"))[0])
        expect(page.locator("#plan-events")).to_contain_text(
            f"plan {plan_id}, step 1: started by ops"
        )
        expect(page.locator("#plan-steps li")).to_have_count(2)
        expect(page.locator("#plan-steps li").first).to_contain_text("running")
        expect(cell(page, ITEMS, "mode")).to_contain_text(f"plan {plan_id}: step 1/2")
        page.click('#mode-controls button[data-mode="async"]')  # the plan drives the route
        expect(page.locator("#mode-outcome")).to_contain_text("Refused (409)")
        expect(page.locator("#mode-outcome")).to_contain_text(f"driven by rollout plan {plan_id}")
        page.fill("#plan-reason", "not this week")
        page.click('#plan-controls button[data-verb="abort"]')
        expect(page.locator("#plan-outcome")).to_contain_text(f"Done: plan {plan_id} is aborted")
        expect(page.locator("#plan-events")).to_contain_text("aborted by ops: not this week")
        expect(page.locator("#plan-steps li").first).to_contain_text("aborted")
        expect(page.locator("#events")).to_contain_text(f"plan {plan_id}, step 1: aborted by ops")
        screenshot(page, "plan")
        assert_clean(watched, 409)
    plan = httpx.get(f"{base}/admin/rollouts/{plan_id}", headers=READ, timeout=10).json()
    assert plan["state"] == "aborted"
    assert [(e["kind"], e["actor"]) for e in plan["events"]] == [
        ("started", "ops"),
        ("step", "ops"),
        ("aborted", "ops"),
    ]


@pytest.mark.slow
def test_a_wrong_or_a_read_only_token_shows_the_refusal(console_server: RunningProcess) -> None:
    base = console_server.base_url
    with chromium_page() as watched:
        page = watched.page
        sign_in(page, base, "not-a-token")
        expect(page.locator("#token-status")).to_contain_text("Refused (401)")
        expect(page.locator("#routes tbody tr")).to_have_count(0)
        assert page.evaluate("sessionStorage.getItem('gateway-admin-token')") is None
        page.fill("#token-input", READ_TOKEN)
        page.click("#token-use")
        expect(page.locator("#token-status")).to_contain_text("read-only")
        choose_route(page, USERS)
        page.click('#mode-controls button[data-mode="async"]')
        expect(page.locator("#mode-outcome")).to_contain_text("Refused (403)")
        expect(page.locator("#mode-outcome")).to_contain_text("may only read")
        page.click("#plan-start")
        expect(page.locator("#plan-outcome")).to_contain_text("Refused (403)")
        page.click("#kill-open")
        page.fill("#kill-reason", "just looking")
        page.click("#kill-confirm")
        expect(page.locator("#kill-outcome")).to_contain_text("Refused (403)")
        screenshot(page, "refused", full_page=False)
        page.keyboard.press("Escape")
        expect(page.locator("#kill-dialog")).not_to_be_visible()
        assert_clean(watched, 401, 403)
    with httpx.Client(base_url=base, headers=READ, timeout=10) as api:
        assert api.get("/admin/routes/events").json() == []
        assert api.get("/admin/rollouts").json() == []


NAMED = """(control) => {
  if (control === document.body) return "(body)";
  if (control.id) return `#${control.id}`;
  for (const kind of ["sort", "mode", "verb"]) {
    if (control.dataset[kind]) return `${kind}:${control.dataset[kind]}`;
  }
  return `${control.tagName.toLowerCase()}:${control.textContent.trim()}`;
}"""
CONTROLS = "a[href], button, input, select, textarea, summary"
FOCUSABLE = f"""() => [...document.querySelectorAll("{CONTROLS}")]
  .filter((control) => !control.disabled && control.getClientRects().length > 0)
  .map({NAMED})"""
FOCUSED = f"() => ({NAMED})(document.activeElement)"


def tab_order(page: Page, most: int = 250) -> list[str]:
    """What Tab reaches, in order, until it comes round again."""
    reached: list[str] = []
    for _ in range(most):
        page.keyboard.press("Tab")
        name = page.evaluate(FOCUSED)
        if reached and name == reached[0]:
            break
        reached.append(name)
    return reached


@pytest.mark.slow
def test_every_control_is_reachable_and_operable_by_keyboard(
    console_server: RunningProcess,
) -> None:
    base = console_server.base_url
    with httpx.Client(base_url=base, headers=WRITE, timeout=10) as api:
        assert api.put(route_path(QUOTE_ROUTE), json={"mode": "shadow"}).is_success
        for n in range(1, 9):
            httpx.get(f"{base}/quotes/{n}", timeout=10)
        wait_for(api, lambda data: bool(data["mismatches"]), "shadow mismatch")
        with chromium_page() as watched:
            page = watched.page
            page.goto(base + "/admin")
            page.keyboard.press("Tab")  # the skip link
            page.keyboard.press("Tab")
            page.keyboard.type(WRITE_TOKEN)
            page.keyboard.press("Enter")
            expect(page.locator("#token-status")).to_contain_text("read-write")
            expect(page.locator("#mismatches details").first).to_be_visible()
            expect(page.locator("#detail")).to_be_visible()

            page.click('th button[data-sort="route"]')  # an order the refreshes keep
            reached = tab_order(page)
            controls = page.evaluate(FOCUSABLE)
            assert len(controls) > 40
            assert set(controls) <= set(reached), set(controls) - set(reached)

            sort = page.locator('th button[data-sort="rps"]')
            sort.focus()
            page.keyboard.press("Enter")
            expect(page.locator("th:has(button[data-sort='rps'])")).to_have_attribute(
                "aria-sort", "descending"
            )
            page.keyboard.press("Space")
            expect(page.locator("th:has(button[data-sort='rps'])")).to_have_attribute(
                "aria-sort", "ascending"
            )

            row(page, USERS).locator("button.route-link").focus()
            page.keyboard.press("Enter")
            assert page.evaluate("document.activeElement.id") == "detail-title"
            expect(page.locator("#detail-title")).to_have_text(f"Route {USERS}")
            page.locator("#canary-percent").focus()
            page.keyboard.press("Home")
            for _ in range(25):
                page.keyboard.press("ArrowRight")
            expect(page.locator("#canary-output")).to_have_text("25 %")
            page.locator('#mode-controls button[data-mode="canary"]').focus()
            page.keyboard.press("Enter")
            expect(page.locator("#mode-outcome")).to_have_text(f"Done: {USERS} is now canary 25 %.")

            summary = page.locator("#mismatches summary").first
            summary.focus()
            page.keyboard.press("Enter")
            expect(page.locator("#mismatches pre.diff").first).to_be_visible()
            expect(page.locator("#mismatches pre.diff").first).to_contain_text("total")

            opener = page.locator("#kill-open")
            opener.focus()
            page.keyboard.press("Enter")
            expect(page.locator("#kill-dialog")).to_be_visible()
            assert page.evaluate("document.activeElement.id") == "kill-reason"
            page.keyboard.press("Escape")
            expect(page.locator("#kill-dialog")).not_to_be_visible()
            assert page.evaluate("document.activeElement.id") == "kill-open"
            assert api.get("/admin/routes/events").json()[0]["new_mode"] == "canary"

            page.keyboard.press("Enter")
            page.keyboard.press("Enter")  # submits without a reason
            expect(page.locator("#kill-outcome")).to_contain_text("Refused (422)")
            expect(page.locator("#kill-outcome")).to_contain_text("reason")
            page.keyboard.type("the users router misbehaves")
            page.keyboard.press("Tab")
            page.keyboard.type("/users")
            page.keyboard.press("Enter")
            expect(page.locator("#kill-dialog")).not_to_be_visible()
            expect(page.locator("#kill-status")).to_contain_text(
                "under /users moved back to legacy"
            )
            assert_clean(watched, 422)
        users = row_of({"routes": api.get("/admin/routes").json()}, USERS)
    assert users["mode"] == "legacy"
    assert users["reason"] == "the users router misbehaves"


@pytest.mark.slow
def test_the_overview_screenshot(console_server: RunningProcess) -> None:
    """The README's picture: traffic, a canary, a plan past its first step, a mismatch."""
    base = console_server.base_url
    paths = ["/users/{n}", "/items/{n}", "/users?limit=5", "/quotes/{n}", "/reports/sales"]
    steps = [
        {"mode": "shadow", "duration": 3, "min_requests": 20},
        {"mode": "canary", "percent": 25, "duration": "10m", "min_requests": 200},
        {"mode": "canary", "percent": 50, "duration": "10m", "min_requests": 200},
        {"mode": "async"},
    ]
    with (
        httpx.Client(base_url=base, headers=WRITE, timeout=10) as api,
        traffic(base, paths, pause=0.02),
    ):
        shadow = {"mode": "shadow", "reason": "compare the twins"}
        canary = {"mode": "canary", "percent": 25, "reason": "first users"}
        plan = {"route": ITEMS, "steps": steps, "reason": "items to async"}
        assert api.put(route_path(QUOTE_ROUTE), json=shadow).is_success
        assert api.put(route_path(USERS), json=canary).is_success
        assert api.post("/admin/rollouts", json=plan).is_success
        wait_for(
            api,
            lambda data: (
                row_of(data, ITEMS)["plan"]["step"] == 1
                and has_both_lines(data, USERS)
                and has_both_lines(data, ITEMS)
                and bool(data["mismatches"])
            ),
            "plan on its second step, with both lines charted",
        )
        time.sleep(8)  # a few more points on the charts
        with chromium_page(LAPTOP) as watched:
            page = watched.page
            sign_in(page, base, WRITE_TOKEN)
            expect(cell(page, ITEMS, "async")).to_have_text(LATENCY, timeout=LONG_EXPECT_MS)
            choose_route(page, ITEMS)
            expect(page.locator("#plan-steps li").first).to_contain_text("pass")
            page.locator("#mismatches summary").first.click()
            page.evaluate("window.scrollTo(0, 0)")
            assert no_horizontal_scroll(page)
            screenshot(page, "overview")
            assert_clean(watched)


# ---- the fleet, through Prometheus ------------------------------------------------------------


def scraping(ports: list[int]) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {
                "job_name": "gateway",
                "static_configs": [{"targets": [f"{LOCALHOST}:{port}" for port in ports]}],
            }
        ],
    }


@pytest.mark.slow
def test_with_a_prometheus_the_figures_cover_the_fleet(
    committed_database: str, tmp_path: Path
) -> None:
    """Two instances scraped by one Prometheus: one's console shows the other's traffic."""
    ports = {name: free_port() for name in ("a", "b")}
    prometheus_dir = tmp_path / "prometheus"
    prometheus_dir.mkdir()
    with ExitStack() as stack:
        prometheus = stack.enter_context(
            running_prometheus(scraping(list(ports.values())), prometheus_dir)
        )
        a, b = (
            stack.enter_context(
                console_instance(
                    committed_database,
                    tmp_path / f"gateway-{name}.log",
                    port,
                    GATEWAY_INSTANCE_NAME=name,
                    GATEWAY_CONSOLE_PROMETHEUS_URL=prometheus.base_url,
                    GATEWAY_CONSOLE_WINDOW_SECONDS="10",
                )
            )
            for name, port in ports.items()
        )
        api = stack.enter_context(httpx.Client(base_url=a.base_url, headers=READ, timeout=10))
        with traffic(b.base_url, ["/users/{n}"]):
            data = wait_for(
                api,
                lambda d: (
                    d["scope"].get("instances") == 2
                    and row_of(d, USERS)["requests_per_second"] > 0
                    and any(
                        v is not None
                        for v in d["lines"].get(USERS, {}).get("legacy", {}).get("p95", [])
                    )
                ),
                "the other instance's traffic, from Prometheus",
            )
    assert data["scope"]["label"] == "the fleet: 2 instance(s), from Prometheus"
    assert data["scope"]["instances"] == 2
    assert row_of(data, USERS)["by_impl"]["legacy"]["p95_ms"] > 0
    assert any(value is not None for value in data["lines"][USERS]["legacy"]["p95"])
