"""deploy/: the Prometheus config, the recording rules and the Grafana dashboard fit the gateway."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml  # type: ignore[import-untyped]
from prometheus_client.parser import text_string_to_metric_families

from demo.app import create_demo_app
from demo.settings import DemoSettings

pytestmark = pytest.mark.anyio

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus.yml"
RULES = DEPLOY / "rules" / "gateway.rules.yml"
DASHBOARD = DEPLOY / "grafana" / "gateway-dashboard.json"
PROMTOOL_SECONDS = 30.0
SAMPLER_DEADLINE_SECONDS = 5.0
# A metric name stands alone; recorded names (level:metric:operations) contain colons.
METRIC_NAME = re.compile(r"(?<![\w:])gateway_[A-Za-z0-9_]+(?![\w:])")
RECORDED_NAME = re.compile(r"(?<![\w:])[a-z_]+:[A-Za-z0-9_:]+(?![\w:])")
SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "gauge": ("",),
}
RULE_TEST_PRECISION = 0.0001
GRAFANA_VARIABLE = re.compile(r"\$\{?(\w+)(?::\w+)?\}?")
TRAFFIC = (
    "/users/1",
    "/users?limit=3",
    "/items/2",
    "/orders/1",
    "/users/1/orders",
    "/reports/sales",
    "/documents/1",
    "/no/such/path",
)


def promtool() -> str:
    path = shutil.which("promtool")
    assert path is not None, "promtool is missing: install the Debian package 'prometheus'"
    return path


def run_promtool(*arguments: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *map(str, arguments)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=PROMTOOL_SECONDS,
        check=False,
    )


def recording_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_panels() -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", ()))
    return panels


def dashboard_expressions() -> list[str]:
    return [
        target["expr"]
        for panel in dashboard_panels()
        for target in panel.get("targets", ())
        if "expr" in target
    ]


def as_promql(expression: str) -> str:
    """A dashboard expression with Grafana's variables replaced by values Prometheus accepts."""

    def value(match: re.Match[str]) -> str:
        return "5m" if match.group(1).startswith("__") else ".*"

    return GRAFANA_VARIABLE.sub(value, expression)


def metric_names(expressions: Iterable[str]) -> set[str]:
    return {name for expression in expressions for name in METRIC_NAME.findall(expression)}


def exposed_series(exposition: str) -> dict[str, set[str]]:
    """Per metric family, the series names Prometheus would store from it, sampled yet or not.

    The `_created` companions of counters and histograms are left out: nothing reads them.
    """
    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exposition):
        names = {family.name + suffix for suffix in SAMPLE_SUFFIXES.get(family.type, ("",))}
        series[family.name] = names | {sample.name for sample in family.samples}
    return {
        family: names
        for family, names in series.items()
        if not (family.endswith("_created") and family.removesuffix("_created") in series)
    }


@pytest.fixture
async def gateway_exposition(committed_database: str) -> AsyncIterator[str]:
    """The text of /metrics of a real app after requests to every kind of route."""
    app = create_demo_app(DemoSettings(database_url=committed_database, log_level="WARNING"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for path in TRAFFIC:
                await client.get(path)
            yield await sampled_exposition(client)


async def sampled_exposition(client: httpx.AsyncClient) -> str:
    """/metrics once the sampler has set the pool gauges (it runs every 0.25 s)."""
    deadline = time.monotonic() + SAMPLER_DEADLINE_SECONDS
    while True:
        response = await client.get("/metrics")
        assert response.status_code == 200, response.text
        if 'gateway_db_pool_size{engine="sync"}' in response.text:
            return response.text
        assert time.monotonic() < deadline, "the pool gauges were never sampled"
        await anyio.sleep(0.05)


def test_promtool_accepts_the_config_and_its_rule_file() -> None:
    checked = run_promtool("check", "config", PROMETHEUS_CONFIG)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 rule files found" in checked.stdout + checked.stderr


def test_promtool_accepts_the_rules() -> None:
    checked = run_promtool("check", "rules", RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(recording_rules())} rules found" in checked.stdout + checked.stderr


def test_config_scrapes_the_gateway_and_loads_the_rules() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["global"]["scrape_interval"] == "15s"
    assert [(DEPLOY / path).resolve() for path in config["rule_files"]] == [RULES]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "gateway"
    assert job["static_configs"] == [{"targets": ["127.0.0.1:8000"]}]


def test_dashboard_expressions_are_valid_promql(tmp_path: Path) -> None:
    expressions = dashboard_expressions()
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:expression_{n}:check", "expr": as_promql(expression)}
                    for n, expression in enumerate(expressions)
                ],
            }
        ]
    }
    rule_file = tmp_path / "dashboard.rules.yml"
    rule_file.write_text(json.dumps(rules))
    checked = run_promtool("check", "rules", rule_file)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(expressions)} rules found" in checked.stdout + checked.stderr


def test_dashboard_is_importable_and_every_panel_queries_the_datasource() -> None:
    loaded = dashboard()
    assert loaded["title"] and loaded["uid"]
    assert 36 <= loaded["schemaVersion"] <= 41
    variables = {variable["name"]: variable for variable in loaded["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = dashboard_panels()
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target.get("datasource", panel["datasource"]) == panel["datasource"]
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]


def test_dashboard_covers_what_operators_watch() -> None:
    titles = " | ".join(panel["title"].lower() for panel in dashboard_panels())
    for topic in (
        "latency", "request rate", "threadpool", "pool", "event-loop", "blocked",
        "shadow", "rollback", "route modes",
    ):  # fmt: skip
        assert topic in titles, topic


def test_dashboard_uses_only_recorded_names_the_rules_define() -> None:
    recorded = {rule["record"] for rule in recording_rules()}
    used = {
        name for expression in dashboard_expressions() for name in RECORDED_NAME.findall(expression)
    }
    assert used, "the dashboard reads no recording rule"
    assert used <= recorded, sorted(used - recorded)


async def test_rules_and_dashboard_name_only_metrics_the_gateway_exposes(
    gateway_exposition: str,
) -> None:
    exposed = set().union(*exposed_series(gateway_exposition).values())
    in_rules = metric_names(rule["expr"] for rule in recording_rules())
    in_dashboard = metric_names(dashboard_expressions())
    assert in_rules and in_dashboard
    assert in_rules <= exposed, sorted(in_rules - exposed)
    assert in_dashboard <= exposed, sorted(in_dashboard - exposed)


async def test_every_exposed_metric_is_on_the_dashboard_or_in_a_rule(
    gateway_exposition: str,
) -> None:
    used = metric_names([*dashboard_expressions(), *(r["expr"] for r in recording_rules())])
    unused = {
        family
        for family, names in exposed_series(gateway_exposition).items()
        if family.startswith("gateway_") and not names & used
    }
    assert unused == set()


def test_recording_rules_compute_rates_shares_and_ratios(tmp_path: Path) -> None:
    rules_test = tmp_path / "gateway.rules.test.yml"
    rules_test.write_text(json.dumps(rules_unit_test()))
    tested = run_promtool("test", "rules", rules_test)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    selector = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return {"series": f"{name}{{{selector}}}", "values": values}


def expect(expression: str, *samples: tuple[dict[str, str], float]) -> dict[str, Any]:
    return {
        "expr": f"round({expression}, {RULE_TEST_PRECISION})",
        "eval_time": "5m",
        "exp_samples": [
            {"labels": "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}",
             "value": value}
            for labels, value in samples
        ],
    }  # fmt: skip


def rules_unit_test() -> dict[str, Any]:
    """Input series 15 s apart; counters grow at fixed rates; expected values from those rates."""
    users = {"method": "GET", "route": "/users"}
    sales = {"method": "GET", "route": "/reports/sales"}
    unmatched = {"method": "GET", "route": "UNMATCHED"}
    requests = "gateway_request_duration_seconds_count"
    threads = "gateway_threadpool_seconds_total"
    shadow = "gateway_shadow_comparisons_total"
    input_series = [
        series(requests, "0+45x40", **users, impl="legacy", status="200", job="gateway"),
        series(requests, "0+15x40", **users, impl="async", status="200", job="gateway"),
        series(requests, "0+7.5x40", **sales, impl="legacy", status="200", job="gateway"),
        series(requests, "0+7.5x40", **sales, impl="legacy", status="500", job="gateway"),
        series(requests, "0+150x40", **unmatched, impl="none", status="404", job="gateway"),
        series(threads, "0+3x40", **users),
        series(threads, "0+9x40", **sales),
        series(shadow, "0+15x40", route="GET /users", result="mismatch"),
        series(shadow, "0+45x40", route="GET /items", result="match"),
        series(shadow, "0+15x40", route="GET /items", result="error"),
        series(shadow, "0+150x40", route="GET /items", result="dropped"),
    ]
    tests = [
        expect(
            "route_impl:gateway_requests:rate1m",
            ({**users, "impl": "legacy"}, 3.0),
            ({**users, "impl": "async"}, 1.0),
            ({**sales, "impl": "legacy"}, 1.0),
        ),
        expect(
            "route_impl:gateway_request_errors:ratio_rate1m",
            ({**sales, "impl": "legacy"}, 0.5),
            ({**users, "impl": "legacy"}, 0.0),
            ({**users, "impl": "async"}, 0.0),
        ),
        expect("route:gateway_threadpool_seconds:rate1m", (users, 0.2), (sales, 0.6)),
        expect("route:gateway_threadpool_seconds:share_rate1m", (users, 0.25), (sales, 0.75)),
        expect("route:gateway_requests_async:ratio_rate1m", (users, 0.25), (sales, 0.0)),
        expect("job:gateway_requests_async:ratio_rate1m", ({"job": "gateway"}, 0.2)),
        expect(
            "route:gateway_shadow_comparisons_match:ratio_rate5m",
            ({"route": "GET /users"}, 0.0),
            ({"route": "GET /items"}, 0.75),
        ),
    ]
    return {
        "rule_files": [str(RULES)],
        "evaluation_interval": "15s",
        "tests": [{"interval": "15s", "input_series": input_series, "promql_expr_test": tests}],
    }
