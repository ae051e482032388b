"""Rollout plans under /admin/rollouts: start one, follow it, pause, resume, abort or promote it.

Reads take any admin token; actions a read-write one, whose name is recorded
with the reason on the plan's event (and on the route's mode change it
causes). A route has at most one plan in progress, and while it has one only
the plan (or the kill switch) moves it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from gateway.database.state import gateway_state
from gateway.ops.admin_access import (
    Table,
    Writer,
    admin_errors,
    admin_router,
    database_or_unavailable,
    known_route,
)
from gateway.rollout import store
from gateway.rollout.analysis import judge, thresholds_for
from gateway.rollout.evidence import gather
from gateway.rollout.plans import Analysis, Step, check_plan, default_steps
from gateway.routing.table import RouteTable

WRITE_ERRORS = admin_errors(
    {
        403: "this admin token may only read",
        404: "no such route or plan",
        409: "the route already has a plan in progress, or the plan's state does not allow this",
    },
    takes_body=True,
)

PlanId = Annotated[int, Path(ge=1, le=2**63 - 1)]
READ_ERRORS = admin_errors({404: "no such route or plan"}, takes_body=False)
router = admin_router("/admin/rollouts")


class PlanRequest(BaseModel):
    """A plan for `route`; without `steps`, shadow (safe methods), canary 5, 25, 50 %, async."""

    model_config = ConfigDict(extra="forbid")

    route: Annotated[str, Field(min_length=3, max_length=1000)]
    steps: Annotated[list[Step] | None, Field(min_length=1, max_length=50)] = None
    analysis: Analysis = Analysis()
    reason: Annotated[str, Field(max_length=1000)] = ""


class PlanAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, Field(max_length=1000)] = ""


def action(table: RouteTable, actor: str, reason: str) -> store.Action:
    return store.Action(actor, reason, table.default_for)


@router.post("", status_code=201, responses=WRITE_ERRORS)
async def post_rollout(
    request: Request, plan: PlanRequest, table: Table, actor: Writer
) -> dict[str, Any]:
    """Start a plan: the route moves to its first step at once, on every instance."""
    key = known_route(table, plan.route)
    steps = plan.steps or default_steps(key.split(" ", 1)[0])
    check_plan(key, table.implementations(key), steps)
    with database_or_unavailable():
        started = await store.create_plan(
            table.database, key, steps, plan.analysis, action(table, actor, plan.reason)
        )
        await table.reload()
        return await described(request, table, started)


@router.get("", responses=READ_ERRORS)
async def get_rollouts(
    table: Table,
    route: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The latest plans, newest first (of one route, with `route`)."""
    key = None if route is None else known_route(table, route)
    with database_or_unavailable():
        return [plan.describe() for plan in await store.list_plans(table.database, route=key)][
            :limit
        ]


@router.get("/{plan_id}", responses=READ_ERRORS)
async def get_rollout(request: Request, plan_id: PlanId, table: Table) -> dict[str, Any]:
    """One plan: its steps, its events (verdicts with their evidence) and, while it is in
    progress, the evidence gathered so far on its step and what it would be judged now."""
    with database_or_unavailable():
        plan = await store.get_plan(table.database, plan_id)
        return await described(request, table, plan)


@router.post("/{plan_id}/{verb}", responses=WRITE_ERRORS)
async def post_action(
    request: Request,
    plan_id: PlanId,
    verb: Literal["pause", "resume", "abort", "promote"],
    body: PlanAction,
    table: Table,
    actor: Writer,
) -> dict[str, Any]:
    """Pause (the step's clock stops being judged), resume (the step starts over), abort (the
    route back to legacy) or promote (the next step now, without a verdict)."""
    with database_or_unavailable():
        plan = await store.act(table.database, plan_id, verb, action(table, actor, body.reason))
        await table.reload()
        return await described(request, table, plan)


async def described(request: Request, table: RouteTable, plan: store.Plan) -> dict[str, Any]:
    shown = plan.describe()
    shown["events"] = await store.plan_events(table.database, plan.id)
    if plan.state not in store.ACTIVE:
        return shown
    async with table.database.connect() as connection:
        evidence = await gather(connection, plan.route, plan.step_started_at)
    settings = gateway_state(request.app).settings
    verdict = judge(plan.current, evidence, thresholds_for(plan.analysis, settings), due=plan.due)
    shown["evidence"] = evidence.as_dict()
    shown["judged_now"] = {
        "outcome": verdict.outcome,
        "reason": verdict.reason,
        "missing": verdict.missing,
    }
    return shown
