"""`gateway rollout`: start a route's plan, follow its timeline, pause, resume, abort, promote.

Plans are driven by the running gateways, so these commands talk to one of
them (`--url`, else `GATEWAY_URL`, else the host and port `gateway serve`
listens on) with the admin token in `GATEWAY_ADMIN_TOKEN`.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any

import typer

from gateway.cli.apps import fail
from gateway.cli.routes import call_admin, fail_with
from gateway.routing.keys import normalized
from gateway.settings import Settings, load_settings

app = typer.Typer(help="Rollout plans: a route moved to async step by step.", no_args_is_help=True)

UrlOption = Annotated[
    str | None, typer.Option(help="a running gateway's base URL (default: GATEWAY_URL)")
]
Reason = Annotated[str, typer.Option(help="why, recorded with the event")]
PERCENT = re.compile(r"^(\d+)%$")
MINIMUM = re.compile(r"^min=(\d+)$")


def gateway_url(url: str | None) -> str:
    if url:
        return url
    if os.environ.get("GATEWAY_URL"):
        return os.environ["GATEWAY_URL"]
    settings: Settings = load_settings()
    return f"http://{settings.host}:{settings.port}"


def parse_step(text: str) -> dict[str, Any]:
    """`"canary 5% 10m min=200"` -> {"mode": "canary", "percent": 5, ...}."""
    mode, *rest = text.split()
    step: dict[str, Any] = {"mode": mode}
    for token in rest:
        if found := PERCENT.match(token):
            step["percent" if mode == "canary" else "sample"] = int(found[1])
        elif found := MINIMUM.match(token):
            step["min_requests"] = int(found[1])
        else:
            step["duration"] = token
    return step


def answer(url: str | None, method: str, path: str, **request: Any) -> Any:
    response = call_admin(gateway_url(url), method, path, **request)
    if response.status_code >= 300:
        fail_with(response)
    return response.json()


@app.command()
def start(
    route: Annotated[str, typer.Argument(help='route key, e.g. "GET /users/{user_id}"')],
    step: Annotated[
        list[str] | None,
        typer.Option(
            help='a step, in order, e.g. "shadow 10m", "calibrate 5m", "canary 5% 10m min=200", '
            '"async"; none: shadow (safe methods), canary 5, 25, 50 %, ten minutes each, async'
        ),
    ] = None,
    min_match_rate: Annotated[
        float | None, typer.Option(help="shadow steps: the share that must match (0 to 1)")
    ] = None,
    extend: Annotated[
        str | None, typer.Option(help="how long an inconclusive step is extended, e.g. 1m")
    ] = None,
    reason: Reason = "",
    url: UrlOption = None,
) -> None:
    """Start a plan: the route moves to its first step at once."""
    analysis = {"min_match_rate": min_match_rate, "extend": extend}
    body: dict[str, Any] = {
        "route": normalized(route),
        "reason": reason,
        "analysis": {name: value for name, value in analysis.items() if value is not None},
    }
    if step:
        try:
            body["steps"] = [parse_step(text) for text in step]
        except ValueError:
            fail('a step names its mode first, e.g. "canary 5% 10m"')
    plan = answer(url, "POST", "/admin/rollouts", json=body)
    typer.echo(f"plan {plan['id']} started on {plan['route']}")
    print_plan(plan)


@app.command("list")
def list_plans(
    route: Annotated[str | None, typer.Option(help="only this route's plans")] = None,
    url: UrlOption = None,
) -> None:
    """The latest plans, newest first."""
    params = {} if route is None else {"route": normalized(route)}
    for plan in answer(url, "GET", "/admin/rollouts", params=params):
        typer.echo(
            f"{plan['id']:>5}  {plan['state']:<9}  step {plan['step'] + 1}/{len(plan['steps'])} "
            f"{plan['step_label']:<16} {plan['seconds_in_step']:>8.0f} s  {plan['route']}"
        )


@app.command()
def show(plan_id: int, url: UrlOption = None) -> None:
    """One plan: its steps, its timeline of events and verdicts, its evidence so far."""
    print_plan(answer(url, "GET", f"/admin/rollouts/{plan_id}"))


def make_action(verb: str, help_text: str) -> None:
    def action(plan_id: int, reason: Reason = "", url: UrlOption = None) -> None:
        plan = answer(url, "POST", f"/admin/rollouts/{plan_id}/{verb}", json={"reason": reason})
        typer.echo(f"plan {plan_id}: {plan['state']}, step {plan['step'] + 1} {plan['step_label']}")

    action.__doc__ = help_text
    app.command(verb)(action)


make_action("pause", "Pause a plan: its step is no longer judged.")
make_action("resume", "Resume a paused plan: its step starts over.")
make_action("abort", "Abort a plan: the route goes back to legacy.")
make_action("promote", "Move a plan to its next step now, without a verdict.")


def print_plan(plan: dict[str, Any]) -> None:
    typer.echo(f"plan {plan['id']} on {plan['route']}: {plan['state']}")
    for number, step in enumerate(plan["steps"]):
        marker = ">" if number == plan["step"] and plan["state"] in ("running", "paused") else " "
        typer.echo(
            f" {marker} {number + 1}. {step['label']:<24} at least {step['duration']:g} s, "
            f"{step['min_requests']} requests"
        )
    for event in plan.get("events", []):
        typer.echo(timeline_line(event))
    if "judged_now" in plan:
        judged = plan["judged_now"]
        typer.echo(f"now: {judged['outcome']} ({judged['reason']}); evidence {plan['evidence']}")


def timeline_line(event: dict[str, Any]) -> str:
    """One event of the plan's timeline: when, which step, what, by whom, why."""
    at = str(event["at"])[11:23]
    what = event["kind"] + (f" {event['verdict']}" if event["verdict"] else "")
    detail = event.get("detail") or {}
    why = detail.get("reason") or event["reason"]
    evidence = detail.get("evidence")
    counts = (
        " ["
        + ", ".join(f"{kind} {c['requests']}" for kind, c in evidence.items() if kind != "missing")
        + "]"
        if evidence
        else ""
    )
    return f"   {at}  step {event['step'] + 1}  {what:<22} {event['actor']:<10} {why}{counts}"
