"""GET /admin/console/data: everything the migration console shows, in one answer, at once.

    progress    routes with an async implementation, routes on async alone, the share of the
                window's requests async answered
    routes      each route's mode (the route table), the advisor's rank and figures over the
                window, its latest rollout plan with each step's verdicts and the plan's events
    times,      per route and implementation, requests/s, p50 and p95 over the last minutes
    lines
    events      the latest mode changes and rollout events of every route, newest first
    mismatches  the latest shadow mismatches of every instance, with their diffs
    scope       what the figures cover: this instance (with its live workers, from the
                fleet's worker list) or, with GATEWAY_CONSOLE_PROMETHEUS_URL, the fleet

Figures come from the worker's metrics history (`gateway.metrics.history`) or
from Prometheus (`gateway.metrics.fleet_figures`), so the answer never waits
for a window. What PostgreSQL holds (plans, events, mismatches, workers) is
left empty, with `"database": "unavailable"`, when it does not answer: the
figures and modes still show. Any admin token may read it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from fastapi import FastAPI, Request

from gateway.database.state import gateway_state
from gateway.failures import RateLimitedLog, unavailability
from gateway.metrics.advisor import Report, RouteReport
from gateway.metrics.fleet_figures import FleetFigures
from gateway.metrics.history import HISTORY_SECONDS, MetricsHistory, Recent
from gateway.ops.admin_access import MayChange, Reader, Table, admin_router
from gateway.rollout import store
from gateway.rollout.notifications import mode_text
from gateway.routing.fleet import fleet_status
from gateway.routing.store import list_events
from gateway.routing.table import AUTOMATIC_ACTOR, RouteTable
from gateway.settings import Settings

EVENTS_SHOWN = 30
PLAN_EVENTS_SHOWN = 30
MISMATCHES_SHOWN = 10

router = admin_router("/admin/console")
unavailable_log = RateLimitedLog()


@dataclass
class Stored:
    """What the console reads from PostgreSQL."""

    plans: dict[str, dict[str, Any]] = field(default_factory=dict)  # route -> latest plan
    events: list[dict[str, Any]] = field(default_factory=list)
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    workers: int | None = None  # live workers of this instance


@router.get("/data")
async def get_console_data(
    request: Request, table: Table, token: Reader, writes: MayChange
) -> dict[str, Any]:
    """The console's figures, modes, plans, events and mismatches (any admin token)."""
    settings = gateway_state(request.app).settings
    recent, scope = await figures(request.app, table.implementations_by_key())
    stored = await stored_or_none(table, settings)
    described = table.describe()
    return {
        "generated_at": time.time(),
        "access": {"token": token, "may_change": writes},
        "database": "ok" if stored is not None else "unavailable",
        "scope": scoped(scope, settings, stored),
        "sampling": {
            "every_seconds": settings.console_sample_seconds,
            "window_seconds": settings.console_window_seconds,
            "covered_seconds": round(recent.report.window_seconds, 3),
            "history_seconds": HISTORY_SECONDS,
        },
        "progress": progress(described, recent.report),
        "routes": route_rows(described, recent.report, stored or Stored()),
        "times": recent.times,
        "lines": recent.lines,
        "events": (stored or Stored()).events,
        "mismatches": (stored or Stored()).mismatches,
    }


async def figures(
    app: FastAPI, known_routes: Mapping[str, set[str]]
) -> tuple[Recent, dict[str, Any]]:
    """The fleet's figures when a Prometheus is configured and answers, else the instance's."""
    fleet: FleetFigures | None = app.state.fleet_figures
    history: MetricsHistory = app.state.metrics_history
    if fleet is None:
        return history.recent(known_routes), {"source": "instance"}
    answer = await fleet.recent(known_routes)
    if answer is None:
        return history.recent(known_routes), {"source": "instance", "prometheus_failed": fleet.url}
    recent, instances = answer
    return recent, {"source": "fleet", "instances": instances, "prometheus": fleet.url}


def scoped(scope: dict[str, Any], settings: Settings, stored: Stored | None) -> dict[str, Any]:
    """`scope` with this instance's name and live workers, and a label the page shows."""
    workers = None if stored is None else stored.workers
    shown = {**scope, "instance": settings.instance_name, "workers": workers}
    if scope["source"] == "fleet":
        shown["label"] = f"the fleet: {scope['instances']} instance(s), from Prometheus"
        return shown
    counted = "" if workers is None else f", {workers} worker{'s' * (workers != 1)}"
    shown["label"] = f"this instance ({settings.instance_name}{counted})"
    if "prometheus_failed" in scope:
        shown["label"] += ": Prometheus did not answer"
    return shown


def progress(described: list[dict[str, Any]], report: Report) -> dict[str, Any]:
    return {
        "routes_total": len(described),
        "routes_with_async": sum("async" in route["implementations"] for route in described),
        "routes_on_async": sum(route["mode"] == "async" for route in described),
        "async_request_share": report.async_request_share,
        "window_seconds": round(report.window_seconds, 3),
    }


def route_rows(
    described: list[dict[str, Any]], report: Report, stored: Stored
) -> list[dict[str, Any]]:
    """Each route's mode, rank, figures and plan, in the advisor's order."""
    ranked = {route.route: (rank, route) for rank, route in enumerate(report.routes, 1)}
    unranked = len(ranked) + 1
    rows = []
    for mode in described:
        rank, figured = ranked.get(mode["route"], (unranked, None))
        rows.append(
            {
                **mode,
                "rank": rank,
                **route_figures(figured),
                "plan": stored.plans.get(mode["route"]),
            }
        )
    return sorted(rows, key=lambda row: (row["rank"], row["route"]))


def route_figures(route: RouteReport | None) -> dict[str, Any]:
    if route is None:
        return {"requests_per_second": 0.0, "by_impl": {}}
    figured = asdict(route)
    for name in ("route", "implementations", "mode"):
        del figured[name]  # the route table's, which are current
    return figured


async def stored_or_none(table: RouteTable, settings: Settings) -> Stored | None:
    try:
        return await read_stored(table, settings)
    except Exception as error:
        kind = unavailability(error)
        if kind is None:
            raise
        unavailable_log.unavailable(kind)
        return None


async def read_stored(table: RouteTable, settings: Settings) -> Stored:
    async with table.database.connect() as connection:
        plans = await store.latest_plans(connection)
        plan_events = await store.events_of(connection, [plan.id for plan in plans])
        rollout_events = await store.recent_events(connection, limit=EVENTS_SHOWN)
    route_events = await list_events(table.database, limit=EVENTS_SHOWN)
    fleet = await fleet_status(table.database, settings.route_reload_seconds)
    shadows = await table.shadows.report()
    return Stored(
        plans={plan.route: timeline(plan, plan_events[plan.id]) for plan in plans},
        events=merged_events(route_events, rollout_events),
        mismatches=latest_mismatches(shadows["routes"]),
        workers=sum(
            worker["instance"] == settings.instance_name and not worker["stale"]
            for worker in fleet["workers"]
        ),
    )


def timeline(plan: store.Plan, events: list[dict[str, Any]]) -> dict[str, Any]:
    """The plan with each step's state, when it was entered, its verdicts; the plan's events."""
    shown = plan.describe()
    for number, step in enumerate(shown["steps"]):
        step["status"] = step_status(plan, number)
        step["entered_at"] = next(
            (e["at"] for e in events if e["kind"] == "step" and e["step"] == number), None
        )
        step["verdicts"] = [
            {"verdict": e["verdict"], "reason": e["detail"].get("reason", ""), "at": e["at"]}
            for e in events
            if e["kind"] == "verdict" and e["step"] == number
        ]
    shown["events"] = [event_item("rollout", event) for event in events[-PLAN_EVENTS_SHOWN:]]
    return shown


def step_status(plan: store.Plan, number: int) -> str:
    if number < plan.step:
        return "done"
    if number == plan.step:
        return plan.state
    return "pending" if plan.state in store.ACTIVE else "not reached"


def merged_events(
    route_events: list[dict[str, Any]], rollout_events: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Mode changes and plan events, newest first; a plan entering a step shows as the route's
    mode change it made."""
    items = [event_item("route", event) for event in route_events]
    items += [event_item("rollout", event) for event in rollout_events if event["kind"] != "step"]
    items.sort(key=lambda item: item["at"], reverse=True)
    return items[:EVENTS_SHOWN]


def event_item(source: str, event: Mapping[str, Any]) -> dict[str, Any]:
    """One event as the page lists it: when, which route, what kind, one line of text."""
    return {
        "source": source,
        "id": event["id"],
        "at": event["at"],
        "route": event["route"],
        "kind": event_kind(source, event),
        "verdict": event.get("verdict"),
        "actor": event["actor"],
        "reason": event["reason"],
        "text": event_text(source, event),
    }


def event_text(source: str, event: Mapping[str, Any]) -> str:
    """What happened, by whom and why, without the route (the page shows it beside)."""
    if source == "route":
        what = (
            f"{mode_text(event['old_mode'], event['old_percent'])} → "
            f"{mode_text(event['new_mode'], event['percent'])}"
        )
    else:
        verdict = f" {event['verdict']}" if event["verdict"] else ""
        what = f"plan {event['rollout_id']}, step {event['step'] + 1}: {event['kind']}{verdict}"
    why = f": {event['reason']}" if event["reason"] else ""
    return f"{what} by {event['actor']}{why}"


def event_kind(source: str, event: Mapping[str, Any]) -> str:
    """mode, rollback, verdict, or the plan event's own kind (started, step, aborted, ...)."""
    if source == "route":
        automatic = event["actor"] == AUTOMATIC_ACTOR and event["new_mode"] == "legacy"
        return "rollback" if automatic else "mode"
    kind = str(event["kind"])
    return "rollback" if kind == "rolled_back" else kind


def latest_mismatches(routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = [mismatch for route in routes for mismatch in route["mismatches"]]
    found.sort(key=lambda mismatch: mismatch["at"], reverse=True)
    return found[:MISMATCHES_SHOWN]
