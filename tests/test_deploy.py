"""deploy/: the Prometheus config, rules, alerts and Grafana dashboard fit the gateway."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import jsonschema
import psycopg
import pytest
import yaml  # type: ignore[import-untyped]
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from demo.app import create_demo_app
from demo.settings import DemoSettings
from gateway.metrics.registry import GatewayMetrics

pytestmark = pytest.mark.anyio

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus.yml"
RULES = DEPLOY / "rules" / "gateway.rules.yml"
ALERTS = DEPLOY / "rules" / "gateway.alerts.yml"
ALERT_TESTS_DIR = DEPLOY / "rules" / "tests"
ALERT_TESTS = ALERT_TESTS_DIR / "gateway.alerts.test.yml"
DASHBOARD = DEPLOY / "grafana" / "gateway-dashboard.json"
DASHBOARD_SCHEMA = DEPLOY / "schemas" / "grafana-dashboard.jsonschema.json"
ROUTE_FILTER = 'route=~"$route"'
# A selector: a metric or recorded name, and its label matchers if it has any.
SELECTOR = re.compile(r"(?<![\w:])([a-zA-Z_][\w:]*)(\{[^{}]*\})?")
BY_CLAUSE = re.compile(r"\b(?:by|on|ignoring|without)\s*\(([^)]*)\)")
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


def dashboard_rows() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] == "row"]


def dashboard_panels() -> list[dict[str, Any]]:
    """The panels that query: those on the grid and those inside collapsed rows, not the rows."""
    panels: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        if panel["type"] != "row":
            panels.append(panel)
        panels.extend(panel.get("panels", ()))
    return panels


def alerting_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def annotation_queries() -> list[dict[str, Any]]:
    """The dashboard's annotation queries against Prometheus (not Grafana's built-in one)."""
    return [
        query
        for query in dashboard()["annotations"]["list"]
        if query.get("datasource", {}).get("type") == "prometheus"
    ]


def panel_expressions() -> list[str]:
    return [
        target["expr"]
        for panel in dashboard_panels()
        for target in panel.get("targets", ())
        if "expr" in target
    ]


def dashboard_expressions() -> list[str]:
    """Every PromQL expression of the dashboard: its panels' and its annotations'."""
    return [*panel_expressions(), *(query["expr"] for query in annotation_queries())]


def alert_texts() -> list[str]:
    """Alert expressions, and annotations (their templates may query Prometheus too)."""
    return [
        text
        for rule in alerting_rules()
        for text in (rule["expr"], *rule.get("annotations", {}).values())
    ]


def route_labelled_series() -> set[str]:
    """Series names, raw and recorded, whose series carry a `route` label."""
    metrics = GatewayMetrics(CollectorRegistry(), (0.1, 1.0))
    names: set[str] = set()
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase) and "route" in metric._labelnames:
            suffixes = SAMPLE_SUFFIXES[metric._type]
            names |= {metric._name + suffix for suffix in suffixes}
    recorded = {rule["record"] for rule in recording_rules() if rule["record"].startswith("route")}
    return names | recorded


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
    assert "2 rule files found" in checked.stdout + checked.stderr


def test_promtool_accepts_the_rules() -> None:
    checked = run_promtool("check", "rules", RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(recording_rules())} rules found" in checked.stdout + checked.stderr


def test_promtool_accepts_the_alerts() -> None:
    checked = run_promtool("check", "rules", ALERTS)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(alerting_rules())} rules found" in checked.stdout + checked.stderr
    assert all("alert" in rule for rule in alerting_rules())


def test_config_scrapes_the_gateway_and_loads_the_rules() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["global"]["scrape_interval"] == "15s"
    assert [(DEPLOY / path).resolve() for path in config["rule_files"]] == [RULES, ALERTS]
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
    ids = [panel["id"] for panel in [*panels, *dashboard_rows()]]
    assert len(set(ids)) == len(ids)
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


async def test_rules_alerts_and_dashboard_name_only_metrics_the_gateway_exposes(
    gateway_exposition: str,
) -> None:
    exposed = set().union(*exposed_series(gateway_exposition).values())
    in_rules = metric_names(rule["expr"] for rule in recording_rules())
    in_alerts = metric_names(alert_texts())
    in_dashboard = metric_names(dashboard_expressions())
    assert in_rules and in_alerts and in_dashboard
    assert in_rules <= exposed, sorted(in_rules - exposed)
    assert in_alerts <= exposed, sorted(in_alerts - exposed)
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
    """Input series 15 s apart; counters grow at fixed rates; expected values from those rates.

    Inputs carry the labels the gateway exports (`method` too); the rules keep `route`, the
    route key, alone.
    """
    users = {"route": "GET /users"}
    sales = {"route": "GET /reports/sales"}
    unmatched = {"route": "UNMATCHED"}
    get = {"method": "GET", "job": "gateway"}
    requests = "gateway_request_duration_seconds_count"
    threads = "gateway_threadpool_seconds_total"
    shadow = "gateway_shadow_comparisons_total"
    input_series = [
        series(requests, "0+45x40", **users, **get, impl="legacy", status="200"),
        series(requests, "0+15x40", **users, **get, impl="async", status="200"),
        series(requests, "0+7.5x40", **sales, **get, impl="legacy", status="500"),
        series(requests, "0+7.5x40", **sales, **get, impl="legacy", status="200"),
        series(requests, "0+150x40", **unmatched, **get, impl="none", status="404"),
        series(threads, "0+3x40", **users, method="GET"),
        series(threads, "0+9x40", **sales, method="GET"),
        series(shadow, "0+15x40", route="GET /users", result="mismatch"),
        series(shadow, "0+45x40", route="GET /items", result="match"),
        series(shadow, "0+15x40", route="GET /items", result="error"),
        series(shadow, "0+150x40", route="GET /items", result="dropped"),
        *(  # a route with two implementations, never shadowed: its counters stay at zero
            series(shadow, "0x40", route="GET /orders", result=result)
            for result in ("match", "mismatch", "error", "dropped")
        ),
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


def test_alert_unit_tests_pass() -> None:
    tested = run_promtool("test", "rules", ALERT_TESTS)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr


def alert_unit_tests() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(ALERT_TESTS.read_text())
    return loaded


def alert_cases(name: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(test, alert_rule_test) pairs about the alert `name`."""
    return [
        (test, case)
        for test in alert_unit_tests()["tests"]
        for case in test.get("alert_rule_test", ())
        if case["alertname"] == name
    ]


def series_labels(selector: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', selector))


def test_every_alert_is_tested_firing_and_quiet() -> None:
    """Each alert: a case where it fires, one where it does not, and quiet series beside it.

    A series group (the labels an alert keeps, besides its fixed ones) that is in the input
    but not among the expected alerts is one promtool checks does not fire.
    """
    assert [(ALERT_TESTS_DIR / path).resolve() for path in alert_unit_tests()["rule_files"]] == [
        ALERTS
    ]
    for rule in alerting_rules():
        cases = alert_cases(rule["alert"])
        firing = [(test, case) for test, case in cases if case.get("exp_alerts")]
        assert firing, f"{rule['alert']} is never expected to fire"
        assert any(not case.get("exp_alerts") for _, case in cases), rule["alert"]
        for test, case in firing:
            fixed = {"alertname", *rule.get("labels", {})}
            kept = set(case["exp_alerts"][0]["exp_labels"]) - fixed
            assert kept, rule["alert"]
            groups = {
                tuple(labels[name] for name in sorted(kept))
                for labels in map(series_labels, (s["series"] for s in test["input_series"]))
                if kept <= set(labels)
            }
            fired = {
                tuple(str(alert["exp_labels"][name]) for name in sorted(kept))
                for alert in case["exp_alerts"]
            }
            assert fired < groups, (rule["alert"], fired, groups)


@pytest.mark.parametrize("alert", [rule["alert"] for rule in alerting_rules()])
def test_an_alert_test_fails_when_its_alert_is_not_expected(alert: str, tmp_path: Path) -> None:
    """The cases do check something: expecting silence where an alert fires fails them."""
    tests = alert_unit_tests()
    tests["rule_files"] = [str(ALERTS)]
    for test in tests["tests"]:
        for case in test.get("alert_rule_test", ()):
            if case["alertname"] == alert:
                case["exp_alerts"] = []
    mutated = tmp_path / "mutated.test.yml"
    mutated.write_text(json.dumps(tests))
    tested = run_promtool("test", "rules", mutated)
    assert tested.returncode != 0, tested.stdout
    assert alert in tested.stdout + tested.stderr


def test_alerts_wait_carry_a_severity_and_name_what_they_are_about() -> None:
    for rule in alerting_rules():
        name, annotations = rule["alert"], rule.get("annotations", {})
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), name
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert annotations.get("summary") and annotations.get("description"), name
        kept = {
            label.strip()
            for clause in BY_CLAUSE.findall(rule["expr"])
            for label in clause.split(",")
        }
        text = annotations["summary"] + annotations["description"]
        for label in kept & {"route", "instance", "engine"}:
            assert f"$labels.{label}" in annotations["summary"], (name, label)
        if "route" in kept:
            # one implementation (a label, or fixed), or both where they are compared
            named = "$labels.impl" in text or "impl" in rule["labels"]
            assert named or "legacy and async implementations" in text, name
            assert "implementation" in annotations["description"], name
        else:  # about an instance: the description names the route or implementation behind it
            assert "route" in text or "legacy" in text, name


def test_route_alone_names_a_route_in_rules_alerts_and_dashboard() -> None:
    """No aggregation keeps `method` beside `route`, and no legend shows it."""
    expressions = [
        *(rule["expr"] for rule in recording_rules()),
        *alert_texts(),
        *dashboard_expressions(),
    ]
    clauses = [clause for expression in expressions for clause in BY_CLAUSE.findall(expression)]
    assert any("route" in clause for clause in clauses)
    assert not [clause for clause in clauses if "method" in clause]
    legends = [t.get("legendFormat", "") for p in dashboard_panels() for t in p["targets"]]
    assert not [legend for legend in legends if "{{method}}" in legend]


def test_every_per_route_query_follows_the_route_variable() -> None:
    """Every selector of a series that has a `route` label filters it by the variable."""
    per_route = route_labelled_series()
    assert {"gateway_request_duration_seconds_bucket", "gateway_route_mode"} <= per_route
    assert "gateway_threadpool_in_use" not in per_route
    variable = next(v for v in dashboard()["templating"]["list"] if v["name"] == "route")
    (metric,) = re.findall(r"label_values\((\w+), route\)", variable["query"])
    assert metric in per_route
    assert variable["multi"] and variable["includeAll"] and variable["allValue"] == ".*"
    unfiltered = [
        (name, expression)
        for expression in dashboard_expressions()
        for name, matchers in SELECTOR.findall(expression)
        if name in per_route and ROUTE_FILTER not in matchers
    ]
    assert unfiltered == []
    filtered_panels = [
        panel["title"]
        for panel in dashboard_panels()
        if any(ROUTE_FILTER in target["expr"] for target in panel["targets"])
    ]
    assert len(filtered_panels) >= 12, filtered_panels
    assert all(ROUTE_FILTER in query["expr"] for query in annotation_queries())


def test_dashboard_annotates_mode_changes_and_rollbacks() -> None:
    queries = {query["name"]: query for query in annotation_queries()}
    assert set(queries) == {"Route mode changes", "Automatic rollbacks"}
    assert "changes(gateway_route_mode" in queries["Route mode changes"]["expr"]
    assert "gateway_route_rollbacks_total" in queries["Automatic rollbacks"]["expr"]
    for query in queries.values():
        assert query["enable"] and not query["hide"], query["name"]
        assert query["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert "{{route}}" in query["titleFormat"], query["name"]
        assert "route" in query["tagKeys"].split(","), query["name"]
        assert "$__rate_interval" in query["expr"], query["name"]  # windows overlap by a scrape
    builtin = [query for query in dashboard()["annotations"]["list"] if query.get("builtIn")]
    assert len(builtin) == 1


def grafana_schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_SCHEMA.read_text())
    return loaded


def schema_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(grafana_schema())
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def test_dashboard_follows_grafanas_dashboard_schema() -> None:
    jsonschema.Draft7Validator.check_schema(grafana_schema())
    assert schema_errors(dashboard()) == []


def broken_dashboards() -> dict[str, dict[str, Any]]:
    """Copies of the dashboard, each with one mistake Grafana's schema refuses."""
    broken: dict[str, dict[str, Any]] = {}
    edits = {
        "panel without height": lambda d: d["panels"][0]["gridPos"].pop("h"),
        "panel wider than the grid": lambda d: d["panels"][0]["gridPos"].update(w=30),
        "annotation without colour": lambda d: d["annotations"]["list"][1].pop("iconColor"),
        "annotation with a typo": lambda d: d["annotations"]["list"][1].update(exp="up"),
        "variable of no type": lambda d: d["templating"]["list"][1].update(type="regex"),
        "datasource as a name": lambda d: d["panels"][0]["datasource"].update(name="Prom"),
        "no templating": lambda d: d.pop("templating"),
    }
    for mistake, edit in edits.items():
        copied = copy.deepcopy(dashboard())
        edit(copied)
        broken[mistake] = copied
    return broken


@pytest.mark.parametrize("mistake", sorted(broken_dashboards()))
def test_grafanas_schema_refuses_a_broken_dashboard(mistake: str) -> None:
    assert schema_errors(broken_dashboards()[mistake]), mistake


def event_annotation_sql(start: datetime, end: datetime, routes: str) -> str:
    """The SQL annotation's query as Grafana sends it, for a time range and the Route variable."""
    (query,) = [
        query
        for query in dashboard()["annotations"]["list"]
        if query.get("datasource", {}).get("type") == "grafana-postgresql-datasource"
    ]
    assert query["enable"] and query["target"]["rawQuery"] and query["target"]["format"] == "table"
    between = f"BETWEEN '{start.isoformat()}' AND '{end.isoformat()}'"
    sql = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 {between}", query["target"]["rawSql"])
    sql = sql.replace("${route:regex}", routes)
    assert "$__" not in sql and "${" not in sql, sql  # every macro and variable replaced
    return str(sql)


def grafana_regex(*values: str) -> str:
    """A multi-value variable in Grafana's `regex` format: escaped values joined by `|`."""
    return "|".join(re.sub(r"([\\^$*+?.()|\[\]{}/])", r"\\\1", value) for value in values)


def test_the_event_annotation_query_runs_on_the_gateways_tables(committed_database: str) -> None:
    user, item = "GET /users/{user_id}", "GET /items/{item_id}"
    now = datetime.now(UTC)
    route_events = [
        (user, "legacy", 0, "canary", 25, "ops", "ramp", now - timedelta(minutes=2)),
        (user, "canary", 25, "legacy", 0, "gateway", "automatic rollback", now),
        (item, "legacy", 0, "async", 0, "ops", "", now - timedelta(days=2)),
    ]
    with psycopg.connect(committed_database, autocommit=True) as connection:
        cursor = connection.cursor()
        cursor.executemany(
            "INSERT INTO gateway_route_events (route, old_mode, old_percent, new_mode, percent, "
            "primary_impl, actor, reason, at) VALUES (%s, %s, %s, %s, %s, 'legacy', %s, %s, %s)",
            route_events,
        )
        cursor.execute(
            "INSERT INTO gateway_rollout_events (rollout_id, route, step, kind, verdict, actor, "
            "at) VALUES (3, %s, 1, 'judged', 'fail', 'gateway', %s)",
            (item, now - timedelta(minutes=1)),
        )
        hour = (now - timedelta(hours=1), now + timedelta(minutes=1))
        every_route = cursor.execute(event_annotation_sql(*hour, ".*")).fetchall()
        users_only = cursor.execute(event_annotation_sql(*hour, grafana_regex(user))).fetchall()
        both = cursor.execute(event_annotation_sql(*hour, grafana_regex(user, item))).fetchall()
        long_ago = cursor.execute(
            event_annotation_sql(now - timedelta(days=3), now - timedelta(days=1), ".*")
        ).fetchall()

    assert [(text, tags) for _, text, tags in every_route] == [
        (f"{user}: legacy -> canary 25 % by ops: ramp", f"{user},mode change,canary"),
        (f"{item}: rollout 3 step 1: judged (fail) by gateway", f"{item},rollout,judged,fail"),
        (
            f"{user}: canary 25 % -> legacy by gateway: automatic rollback",
            f"{user},mode change,legacy",
        ),
    ]
    assert all(isinstance(at, datetime) and at.tzinfo for at, _, _ in every_route)
    assert [text for _, text, _ in users_only] == [every_route[0][1], every_route[2][1]]
    assert both == every_route
    assert [text for _, text, _ in long_ago] == [f"{item}: legacy -> async by ops"]
