"""A real Prometheus scrapes a real gateway under load: the advisor reads the same from both."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from demo.database import install as upgrade
from gateway.database.engines import sync_url
from shared_models.seed import DemoSize, seed
from tests.conftest import create_database, drop_database
from tests.processes import (
    LOCALHOST,
    RunningProcess,
    child_env,
    free_port,
    gateway_command,
    running_prometheus,
    running_server,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

RULES = Path(__file__).resolve().parent.parent / "deploy" / "rules" / "gateway.rules.yml"
# Enough order lines that the sales report (an aggregate over all of them) takes tens of
# milliseconds of database time per request, against a few for the other routes.
HEAVY_SIZE = DemoSize(users=200, items=50, orders=12_000, documents=0)
HEAVY_ROUTE = "GET /reports/sales"
HEAVY_PATH = "/reports/sales"
HEAVY_CLIENTS = 2
LIGHT_PATHS = ("/users/1", "/items/2", "/orders/1", "/users?limit=5")
LIGHT_PAUSE_SECONDS = 0.02
GATEWAY_WINDOW_SECONDS = 4
PROMETHEUS_WINDOW_SECONDS = 8
# A report is a process that spends seconds importing the gateway before it reads anything
# (at least this long): the gateway's starts soon after the load, Prometheus' so that it
# queries once a whole window of load has been scraped.
REPORT_IMPORT_SECONDS = 1.5
GATEWAY_REPORT_AFTER_SECONDS = 0.5
PROMETHEUS_REPORT_AFTER_SECONDS = PROMETHEUS_WINDOW_SECONDS - REPORT_IMPORT_SECONDS
SCRAPE_INTERVAL = "1s"
TARGET_UP_SECONDS = 15.0
REPORT_SECONDS = 30.0
TEST_DEADLINE_SECONDS = 50.0
SHARE_TOLERANCE = 0.2
RATE_RATIO_LIMIT = 1.5
P95_RATIO_LIMIT = 2.0


def prometheus_config(gateway_port: int) -> dict[str, Any]:
    """Scrape the gateway every second and evaluate deploy/'s recording rules as often."""
    return {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": SCRAPE_INTERVAL,
            "evaluation_interval": SCRAPE_INTERVAL,
        },
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "gateway",
                "static_configs": [{"targets": [f"{LOCALHOST}:{gateway_port}"]}],
            }
        ],
    }


@pytest.fixture
def heavy_database(server_url: str) -> Iterator[str]:
    """A database made from nothing, with so many orders that the sales report is heavy."""
    name = f"gateway_prom_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name)
    try:
        upgrade(url)
        engine = create_engine(sync_url(url), poolclass=NullPool)
        try:
            seed(engine, HEAVY_SIZE)
        finally:
            engine.dispose()
        yield url
    finally:
        drop_database(server_url, name)


@pytest.fixture
def gateway_port() -> int:
    return free_port()


@pytest.fixture
def prometheus_server(gateway_port: int, tmp_path: Path) -> Iterator[RunningProcess]:
    """Prometheus scraping `gateway_port`; started before the gateway, as it takes a few
    seconds to begin scraping a target."""
    with running_prometheus(prometheus_config(gateway_port), tmp_path) as server:
        yield server


@pytest.fixture
def gateway_server(
    prometheus_server: RunningProcess, heavy_database: str, gateway_port: int, tmp_path: Path
) -> Iterator[RunningProcess]:
    env = child_env({"GATEWAY_DATABASE_URL": heavy_database, "GATEWAY_LOG_LEVEL": "WARNING"})
    command = gateway_command("serve", "--host", LOCALHOST, "--port", str(gateway_port))
    with running_server(command, env, gateway_port, tmp_path / "gateway.log") as server:
        yield server


async def wait_for_target_up(prometheus: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + TARGET_UP_SECONDS
    health: list[str] = []
    while time.monotonic() < deadline:
        response = await prometheus.get("/api/v1/targets")
        health = [target["health"] for target in response.json()["data"]["activeTargets"]]
        if health == ["up"]:
            return
        await anyio.sleep(0.2)
    raise AssertionError(f"the gateway target is not up: {health}")


async def drive(base_url: str, path: str, pause: float, statuses: Counter[tuple[str, int]]) -> None:
    """Request `path` in a loop until cancelled, `pause` seconds apart."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as client:
        while True:
            response = await client.get(path)
            statuses[path, response.status_code] += 1
            await anyio.sleep(pause)


async def gateway_report(*arguments: str) -> dict[str, Any]:
    with anyio.fail_after(REPORT_SECONDS):
        finished = await anyio.run_process(
            gateway_command("report", *arguments, "--json"), env=child_env({}), check=False
        )
    output = finished.stdout.decode()
    assert finished.returncode == 0, output + finished.stderr.decode()
    report: dict[str, Any] = json.loads(output)
    return report


async def report_later(
    delay: float, reports: dict[str, dict[str, Any]], source: str, *arguments: str
) -> None:
    """After `delay` seconds, run `gateway report` and keep its JSON under `source`."""
    await anyio.sleep(delay)
    reports[source] = await gateway_report(*arguments)


async def instant_query(prometheus: httpx.AsyncClient, query: str) -> list[dict[str, Any]]:
    response = await prometheus.get("/api/v1/query", params={"query": query})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["data"]["result"]
    return results


@dataclass
class Observed:
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    top_holders: list[dict[str, Any]] = field(default_factory=list)


async def observe_under_load(
    gateway: RunningProcess, prometheus: RunningProcess, prometheus_api: httpx.AsyncClient
) -> Observed:
    """Load the gateway; meanwhile take both reports and the rules' biggest threadpool holder."""
    observed = Observed()
    async with anyio.create_task_group() as load:
        for _ in range(HEAVY_CLIENTS):
            load.start_soon(drive, gateway.base_url, HEAVY_PATH, 0.0, observed.statuses)
        for path in LIGHT_PATHS:
            load.start_soon(drive, gateway.base_url, path, LIGHT_PAUSE_SECONDS, observed.statuses)
        async with anyio.create_task_group() as reports:
            reports.start_soon(
                report_later, GATEWAY_REPORT_AFTER_SECONDS, observed.reports, "gateway",
                "--url", gateway.base_url, "--window", str(GATEWAY_WINDOW_SECONDS),
            )  # fmt: skip
            reports.start_soon(
                report_later, PROMETHEUS_REPORT_AFTER_SECONDS, observed.reports, "prometheus",
                "--prometheus", prometheus.base_url, "--window", str(PROMETHEUS_WINDOW_SECONDS),
            )  # fmt: skip
        observed.top_holders = await instant_query(
            prometheus_api, "topk(1, route:gateway_threadpool_seconds:rate1m)"
        )
        load.cancel_scope.cancel()
    return observed


def route_entry(report: dict[str, Any], key: str) -> dict[str, Any]:
    return next(route for route in report["routes"] if route["route"] == key)


def summary(route: dict[str, Any]) -> str:
    legacy = route["by_impl"]["legacy"]
    return (
        f"{route['route']}: threadpool share {route['threadpool_share']:.2f}, "
        f"{route['requests_per_second']:.1f} req/s, legacy p95 {legacy['p95_ms']} ms"
    )


def ratio(a: float, b: float) -> float:
    return max(a, b) / min(a, b)


async def test_both_sources_rank_the_heavy_legacy_route_first_and_agree_on_it(
    gateway_server: RunningProcess, prometheus_server: RunningProcess
) -> None:
    with anyio.fail_after(TEST_DEADLINE_SECONDS):
        async with httpx.AsyncClient(base_url=prometheus_server.base_url, timeout=10.0) as api:
            await wait_for_target_up(api)
            observed = await observe_under_load(gateway_server, prometheus_server, api)

    assert {status for _, status in observed.statuses} == {200}, observed.statuses
    assert {path for path, _ in observed.statuses} == {HEAVY_PATH, *LIGHT_PATHS}
    assert [sample["metric"]["route"] for sample in observed.top_holders] == [HEAVY_ROUTE]
    from_gateway, from_prometheus = observed.reports["gateway"], observed.reports["prometheus"]
    assert from_gateway["routes"][0]["route"] == HEAVY_ROUTE, from_gateway["routes"][:3]
    assert from_prometheus["routes"][0]["route"] == HEAVY_ROUTE, from_prometheus["routes"][:3]
    live = route_entry(from_gateway, HEAVY_ROUTE)
    scraped = route_entry(from_prometheus, HEAVY_ROUTE)
    print(f"\n/metrics: {summary(live)}\nPrometheus: {summary(scraped)}")
    assert abs(live["threadpool_share"] - scraped["threadpool_share"]) <= SHARE_TOLERANCE
    assert ratio(live["requests_per_second"], scraped["requests_per_second"]) <= RATE_RATIO_LIMIT
    live_p95 = live["by_impl"]["legacy"]["p95_ms"]
    assert ratio(live_p95, scraped["by_impl"]["legacy"]["p95_ms"]) <= P95_RATIO_LIMIT
