"""A real Prometheus scrapes two real gateways: one `route` label, annotations, alerts, report.

Both gateways serve `tests.canary_probe:app` on one database. Through the admin API of the
first, a route goes to shadow and the probe to canary (the second follows through the
database); the probe's async twin fails, so its canary rolls back. Then, against what
Prometheus scraped and evaluated:

- the dashboard's annotation queries mark the routes whose mode changed, and the rollback,
  and nothing for an untouched route;
- the rollback alert fires for the probe, and every rule evaluates without error;
- the dashboard's queries, with the `route` variable set as Grafana sets it, return only
  that route;
- `gateway report --prometheus` sums a route's requests over both instances.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml  # type: ignore[import-untyped]

from tests.canary_probe import PROBE_KEY
from tests.processes import (
    LOCALHOST,
    RunningProcess,
    child_env,
    free_port,
    gateway_command,
    running_prometheus,
    running_server,
)

pytestmark = pytest.mark.slow

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
RULE_FILES = [DEPLOY / "rules" / "gateway.rules.yml", DEPLOY / "rules" / "gateway.alerts.yml"]
DASHBOARD = DEPLOY / "grafana" / "gateway-dashboard.json"
INSTANCES = 2
SCRAPE_INTERVAL = "1s"
# What Grafana puts for $__rate_interval with a 1 s scrape interval and a 1 s step:
# max(step + scrape interval, 4 scrape intervals).
RATE_INTERVAL = "4s"
SCRAPES_SECONDS = 3.0  # long enough for two scrapes and two rule evaluations
DEADLINE_SECONDS = 20.0
TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STICKY_HEADER = "X-Gateway-Sticky-Key"
ROLLBACK_MIN_REQUESTS = 10
USER_KEY = "GET /users/{user_id}"
UNTOUCHED_KEY = "GET /items/{item_id}"
USERS_SEEDED = 12
USER_REQUESTS = (40, 60)  # to the first and to the second instance
REPORT_WINDOW_SECONDS = 20
COUNT_TOLERANCE = 0.15
GRAFANA_VARIABLE = re.compile(r"\$\{?(\w+)\}?")
GRAFANA_REGEX_SPECIAL = re.compile(r"[$^*{}\[\]'+?.()|]")


def grafana_regex_value(value: str) -> str:
    """A value of a multi-value variable as Grafana's Prometheus data source writes it in
    a query (its `prometheusSpecialRegexEscape`)."""
    return GRAFANA_REGEX_SPECIAL.sub(lambda m: "\\\\" + m.group(0), value.replace("\\", "\\" * 4))


def as_query(expression: str, route: str = ".*") -> str:
    """A dashboard expression with Grafana's variables set: `route` (already escaped) and
    the intervals Grafana would use here."""
    values = {"route": route, "__rate_interval": RATE_INTERVAL, "__interval": SCRAPE_INTERVAL}
    return GRAFANA_VARIABLE.sub(lambda match: values[match.group(1)], expression)


def prometheus_config(ports: list[int]) -> dict[str, Any]:
    return {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": SCRAPE_INTERVAL,
            "evaluation_interval": SCRAPE_INTERVAL,
        },
        "rule_files": [str(path) for path in RULE_FILES],
        "scrape_configs": [
            {
                "job_name": "gateway",
                "static_configs": [{"targets": [f"{LOCALHOST}:{port}" for port in ports]}],
            }
        ],
    }


@pytest.fixture
def gateway_ports() -> list[int]:
    ports: list[int] = []
    while len(ports) < INSTANCES:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@pytest.fixture
def prometheus_server(gateway_ports: list[int], tmp_path: Path) -> Iterator[RunningProcess]:
    with running_prometheus(prometheus_config(gateway_ports), tmp_path) as server:
        yield server


@pytest.fixture
def gateways(
    prometheus_server: RunningProcess,
    committed_database: str,
    gateway_ports: list[int],
    tmp_path: Path,
) -> Iterator[list[RunningProcess]]:
    env = child_env(
        {
            "GATEWAY_APP": "tests.canary_probe:app",
            "GATEWAY_DATABASE_URL": committed_database,
            "GATEWAY_LOG_LEVEL": "WARNING",
            "GATEWAY_ADMIN_TOKENS": json.dumps({"ops": TOKEN}),
            "GATEWAY_ROLLBACK_MIN_REQUESTS": str(ROLLBACK_MIN_REQUESTS),
            "GATEWAY_ROLLBACK_WINDOW_SECONDS": "60",
        }
    )
    with ExitStack() as stack:
        servers = [
            stack.enter_context(
                running_server(
                    gateway_command("serve", "--host", LOCALHOST, "--port", str(port)),
                    env,
                    port,
                    tmp_path / f"gateway-{index}.log",
                )
            )
            for index, port in enumerate(gateway_ports)
        ]
        yield servers


def until(condition: Any, what: str, seconds: float = DEADLINE_SECONDS) -> Any:
    """Poll `condition()` until it returns something true; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        found = condition()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@dataclass
class Scenario:
    prometheus: httpx.Client
    gateways: list[httpx.Client]
    started: float = 0.0  # once both targets were scraped after the warm-up
    changed: float = 0.0  # when the first mode change was made
    rolled_back: float = 0.0
    probe_statuses: dict[int, int] = field(default_factory=dict)

    def query(self, expression: str) -> list[dict[str, Any]]:
        response = self.prometheus.get("/api/v1/query", params={"query": expression})
        assert response.status_code == 200, (expression, response.text)
        results: list[dict[str, Any]] = response.json()["data"]["result"]
        return results

    def query_range(self, expression: str, start: float) -> list[dict[str, Any]]:
        params = {"query": expression, "start": start, "end": time.time(), "step": "1s"}
        response = self.prometheus.get("/api/v1/query_range", params=params)
        assert response.status_code == 200, (expression, response.text)
        results: list[dict[str, Any]] = response.json()["data"]["result"]
        return results

    def modes(self, client: httpx.Client) -> dict[str, str]:
        listed = client.get("/admin/routes", headers=AUTH).json()
        return {route["route"]: route["mode"] for route in listed}

    def set_mode(self, key: str, **change: Any) -> None:
        path = "/admin/routes/" + quote(key, safe="")
        response = self.gateways[0].put(path, json=change, headers=AUTH)
        assert response.status_code == 200, response.text


def targets_up(scenario: Scenario) -> bool:
    targets = scenario.prometheus.get("/api/v1/targets").json()["data"]["activeTargets"]
    return [target["health"] for target in targets] == ["up"] * INSTANCES


def run_scenario(scenario: Scenario) -> None:
    until(lambda: targets_up(scenario), "both gateways scraped")
    for client in scenario.gateways:  # every series the scenario counts exists before it starts
        for path in ("/users/1", "/items/1", "/probe/1"):
            assert client.get(path).status_code == 200, path
    time.sleep(SCRAPES_SECONDS)
    scenario.started = time.time()

    scenario.changed = time.time()
    scenario.set_mode(USER_KEY, mode="shadow", primary="legacy")
    scenario.set_mode(PROBE_KEY, mode="canary", percent=50)
    wanted = {USER_KEY: "shadow", PROBE_KEY: "canary"}
    for client in scenario.gateways:
        until(lambda c=client: wanted.items() <= scenario.modes(c).items(), "modes on both")
    time.sleep(SCRAPES_SECONDS)  # the canary is scraped before it rolls back

    for client, count in zip(scenario.gateways, USER_REQUESTS, strict=True):
        for n in range(count):
            assert client.get(f"/users/{n % USERS_SEEDED + 1}").status_code == 200

    first = scenario.gateways[0]
    sent = 0
    while scenario.modes(first)[PROBE_KEY] == "canary":
        assert sent < 20 * ROLLBACK_MIN_REQUESTS, "the probe's canary never rolled back"
        answer = first.get(f"/probe/{sent}", headers={STICKY_HEADER: f"client-{sent}"})
        scenario.probe_statuses[answer.status_code] = (
            scenario.probe_statuses.get(answer.status_code, 0) + 1
        )
        sent += 1
    scenario.rolled_back = time.time()
    for client in scenario.gateways:
        until(lambda c=client: scenario.modes(c)[PROBE_KEY] == "legacy", "rollback on both")
    time.sleep(SCRAPES_SECONDS)


def annotation_queries() -> dict[str, str]:
    annotations = json.loads(DASHBOARD.read_text())["annotations"]["list"]
    return {
        query["name"]: query["expr"]
        for query in annotations
        if query.get("datasource", {}).get("type") == "prometheus"
    }


def active(results: list[dict[str, Any]]) -> dict[tuple[str, ...], list[float]]:
    """Per series (its labels' values, by name), the times Grafana would annotate."""
    return {
        tuple(value for _, value in sorted(result["metric"].items())): [
            float(at) for at, value in result["values"] if float(value) >= 1
        ]
        for result in results
    }


def check_annotations(scenario: Scenario) -> None:
    queries = annotation_queries()
    since = scenario.started
    modes = active(scenario.query_range(as_query(queries["Route mode changes"]), since))
    assert {(PROBE_KEY, "canary"), (PROBE_KEY, "legacy"), (USER_KEY, "shadow")} == {
        (route, mode) for mode, route in modes
    }, modes
    assert all(modes.values()), modes
    first_change = min(at for times in modes.values() for at in times)
    assert scenario.changed - 1 <= first_change, (scenario.changed, modes)

    rollbacks = active(scenario.query_range(as_query(queries["Automatic rollbacks"]), since))
    assert list(rollbacks) == [(PROBE_KEY,)], rollbacks
    (times,) = rollbacks.values()
    assert times and scenario.changed - 1 <= min(times) <= scenario.rolled_back + 3, times

    only_users = grafana_regex_value(USER_KEY)
    modes = active(scenario.query_range(as_query(queries["Route mode changes"], only_users), since))
    assert {route for _, route in modes} == {USER_KEY}, modes
    rollbacks = scenario.query_range(as_query(queries["Automatic rollbacks"], only_users), since)
    assert rollbacks == []
    untouched = grafana_regex_value(UNTOUCHED_KEY)
    for name, expression in queries.items():
        assert scenario.query_range(as_query(expression, untouched), since) == [], name


def check_rules_and_alerts(scenario: Scenario) -> None:
    groups = scenario.prometheus.get("/api/v1/rules").json()["data"]["groups"]
    evaluated = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(evaluated) == rule_names(), sorted(evaluated)
    failed = {
        name: (rule.get("health"), rule.get("lastError"))
        for name, rule in evaluated.items()
        if rule_failed(rule)
    }
    assert failed == {}

    def rolled_back_alerts() -> list[dict[str, Any]]:
        return scenario.query('ALERTS{alertname="GatewayCanaryRolledBack", alertstate="firing"}')

    firing = until(rolled_back_alerts, "the rollback alert")
    assert [(alert["metric"]["route"], alert["metric"]["impl"]) for alert in firing] == [
        (PROBE_KEY, "async")
    ]


def rule_names() -> set[str]:
    """Every recording and alerting rule of the rule files."""
    return {
        rule.get("record") or rule["alert"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    }


def rule_failed(rule: dict[str, Any]) -> bool:
    return rule.get("health") != "ok" or bool(rule.get("lastError"))


def dashboard_targets() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [
        (panel["title"], target["expr"])
        for panel in panels
        for target in panel.get("targets", ())  # rows have none
    ]


def check_route_variable(scenario: Scenario) -> None:
    """With the variable on one route, a query returns that route or no route at all."""
    selected = grafana_regex_value(USER_KEY)
    answered: set[str] = set()
    for title, expression in dashboard_targets():
        if "$route" not in expression:
            continue
        results = scenario.query(as_query(expression, selected))
        routes = {result["metric"].get("route") for result in results}
        assert routes <= {USER_KEY, None}, (title, routes)
        if results:
            answered.add(title)
    assert {
        "Latency p50 / p95 / p99 by route and implementation",
        "Request rate by implementation (migration progress)",
        "Threadpool time by route",
        "Database share of request time",
        "Shadow comparisons by result",
        "Route modes",
    } <= answered, answered


def check_report(scenario: Scenario, prometheus_url: str) -> None:
    command = gateway_command(
        "report", "--prometheus", prometheus_url, "--window", str(REPORT_WINDOW_SECONDS), "--json"
    )
    finished = subprocess.run(
        command, env=child_env({}), capture_output=True, text=True, timeout=60, check=False
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    report = json.loads(finished.stdout)
    routes = {route["route"]: route for route in report["routes"]}
    assert {USER_KEY, PROBE_KEY, UNTOUCHED_KEY} <= set(routes)
    assert "UNMATCHED" not in routes
    users = routes[USER_KEY]
    assert users["mode"] == "shadow"
    assert routes[PROBE_KEY]["mode"] == "legacy"
    counted = users["by_impl"]["legacy"]["requests_per_second"] * REPORT_WINDOW_SECONDS
    print(f"\nGET /users/{{user_id}} over both instances: {counted:.1f} of {sum(USER_REQUESTS)}")
    assert math.isclose(counted, sum(USER_REQUESTS), rel_tol=COUNT_TOLERANCE), counted
    assert counted > max(USER_REQUESTS) * (1 + COUNT_TOLERANCE)
    assert users["shadow_match_rate"] is not None
    assert users["threadpool_share"] > 0


def test_one_route_label_for_annotations_alerts_variable_and_report(
    gateways: list[RunningProcess], prometheus_server: RunningProcess
) -> None:
    with ExitStack() as stack:
        scenario = Scenario(
            prometheus=stack.enter_context(
                httpx.Client(base_url=prometheus_server.base_url, timeout=10)
            ),
            gateways=[
                stack.enter_context(httpx.Client(base_url=gateway.base_url, timeout=10))
                for gateway in gateways
            ],
        )
        run_scenario(scenario)
        assert set(scenario.probe_statuses) == {200, 500}, scenario.probe_statuses
        check_annotations(scenario)
        check_rules_and_alerts(scenario)
        check_route_variable(scenario)
        check_report(scenario, prometheus_server.base_url)
