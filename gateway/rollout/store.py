"""Rollout plans and their events in PostgreSQL; every action one transaction with its mode change.

A plan's row holds its steps, its state (running, paused, completed, aborted,
failed), the step it is on, when that step began and when it is due. Each
action locks the row, checks the state it expects, moves the route's mode
(`gateway.routing.store`, with its own event and NOTIFY) and appends a plan
event (who, why, the verdict and its evidence), all in one transaction: a
step is entered once, or not at all. Actions of the driver are also fenced by
its lease (`gateway.rollout.lease`): a driver that lost the lease changes
nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.errors import Conflict, NotFound
from gateway.rollout.plans import Analysis, Step
from gateway.routing import store as route_store
from gateway.routing.modes import RouteMode
from gateway.routing.schema import rollout_events_table, rollouts_table
from gateway.routing.table import RouteTable

ACTIVE = ("running", "paused")


def later(seconds: float) -> Any:
    """The database's now, plus `seconds`."""
    return func.now() + func.make_interval(0, 0, 0, 0, 0, 0, seconds)


@dataclass(frozen=True)
class Plan:
    id: int
    route: str
    steps: list[Step]
    analysis: Analysis
    state: str
    step: int
    step_started_at: datetime
    step_due_at: datetime
    created_by: str
    reason: str
    now: datetime  # the database's clock when the plan was read

    @property
    def current(self) -> Step:
        return self.steps[self.step]

    @property
    def seconds_in_step(self) -> float:
        return max((self.now - self.step_started_at).total_seconds(), 0.0)

    @property
    def due(self) -> bool:
        return self.now >= self.step_due_at

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "route": self.route,
            "state": self.state,
            "step": self.step,
            "step_label": self.current.label(),
            "steps": [step.model_dump() | {"label": step.label()} for step in self.steps],
            "analysis": self.analysis.model_dump(),
            "step_started_at": self.step_started_at,
            "step_due_at": self.step_due_at,
            "seconds_in_step": round(self.seconds_in_step, 3),
            "created_by": self.created_by,
            "reason": self.reason,
        }


def as_plan(row: Mapping[str, Any]) -> Plan:
    return Plan(
        id=row["id"],
        route=row["route"],
        steps=[Step.model_validate(step) for step in row["steps"]],
        analysis=Analysis.model_validate(row["analysis"]),
        state=row["state"],
        step=row["step"],
        step_started_at=row["step_started_at"],
        step_due_at=row["step_due_at"],
        created_by=row["created_by"],
        reason=row["reason"],
        now=row["now"],
    )


def plans_query() -> Any:
    return select(rollouts_table, func.now().label("now")).order_by(rollouts_table.c.id)


async def latest_plans(connection: AsyncConnection) -> list[Plan]:
    """Each route's newest plan, whatever its state."""
    query = (
        plans_query()
        .order_by(None)
        .order_by(rollouts_table.c.route, rollouts_table.c.id.desc())
        .ext(distinct_on(rollouts_table.c.route))
    )
    return [as_plan(dict(row._mapping)) for row in await connection.execute(query)]


async def list_plans(
    engine: AsyncEngine, *, route: str | None = None, limit: int = 100
) -> list[Plan]:
    query = plans_query().order_by(None).order_by(rollouts_table.c.id.desc()).limit(limit)
    if route is not None:
        query = query.where(rollouts_table.c.route == route)
    async with engine.connect() as connection:
        return [as_plan(dict(row._mapping)) for row in await connection.execute(query)]


async def get_plan(engine: AsyncEngine, plan_id: int) -> Plan:
    async with engine.connect() as connection:
        return await _read(connection, plan_id, lock=False)


async def plan_events(engine: AsyncEngine, plan_id: int) -> list[dict[str, Any]]:
    query = (
        select(rollout_events_table)
        .where(rollout_events_table.c.rollout_id == plan_id)
        .order_by(rollout_events_table.c.id)
    )
    async with engine.connect() as connection:
        return [dict(row._mapping) for row in await connection.execute(query)]


async def events_of(
    connection: AsyncConnection, plan_ids: list[int]
) -> dict[int, list[dict[str, Any]]]:
    """The events of each of `plan_ids`, oldest first."""
    query = (
        select(rollout_events_table)
        .where(rollout_events_table.c.rollout_id.in_(plan_ids))
        .order_by(rollout_events_table.c.id)
    )
    found: dict[int, list[dict[str, Any]]] = {plan_id: [] for plan_id in plan_ids}
    for row in await connection.execute(query):
        found[row.rollout_id].append(dict(row._mapping))
    return found


async def recent_events(connection: AsyncConnection, *, limit: int) -> list[dict[str, Any]]:
    """The latest events of every plan, newest first."""
    query = select(rollout_events_table).order_by(rollout_events_table.c.id.desc()).limit(limit)
    return [dict(row._mapping) for row in await connection.execute(query)]


async def _read(connection: AsyncConnection, plan_id: int, *, lock: bool) -> Plan:
    query = plans_query().where(rollouts_table.c.id == plan_id)
    row = (await connection.execute(query.with_for_update() if lock else query)).first()
    if row is None:
        raise NotFound(f"no rollout plan {plan_id}", {"rollout": plan_id})
    return as_plan(dict(row._mapping))


DefaultOf = Callable[[str], RouteMode]


@dataclass(frozen=True)
class Action:
    """Who does something to a plan, and why."""

    actor: str
    reason: str
    default_of: DefaultOf


async def log_event(
    connection: AsyncConnection,
    plan: Plan,
    kind: str,
    action: Action,
    *,
    step: int | None = None,
    verdict: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    values = {
        "rollout_id": plan.id,
        "route": plan.route,
        "step": plan.step if step is None else step,
        "kind": kind,
        "verdict": verdict,
        "detail": dict(detail or {}),
        "actor": action.actor,
        "reason": action.reason,
    }
    inserted = await connection.execute(
        insert(rollout_events_table).values(**values).returning(rollout_events_table)
    )
    return dict(inserted.one()._mapping)


async def _move_route(
    connection: AsyncConnection, plan: Plan, mode: RouteMode, action: Action, why: str
) -> None:
    await route_store.record_change(
        connection,
        plan.route,
        mode,
        f"rollout {plan.id}",
        f"{why} ({action.actor}{': ' + action.reason if action.reason else ''})",
        action.default_of(plan.route),
        None,
    )
    await route_store.notify(connection, plan.route)


async def _set(connection: AsyncConnection, plan: Plan, **values: Any) -> None:
    await connection.execute(
        update(rollouts_table)
        .where(rollouts_table.c.id == plan.id)
        .values(updated_at=func.now(), **values)
    )


def step_clock(step: Step) -> dict[str, Any]:
    """Columns that start `step` now."""
    return {
        "step_started_at": func.now(),
        "step_due_at": later(step.duration),
    }


async def create_plan(
    engine: AsyncEngine, route: str, steps: list[Step], analysis: Analysis, action: Action
) -> Plan:
    """Start a plan on `route` at its first step; 409 if the route already has one running."""
    values = {
        "route": route,
        "steps": [step.model_dump() for step in steps],
        "analysis": analysis.model_dump(),
        "state": "running",
        "created_by": action.actor,
        "reason": action.reason,
        **step_clock(steps[0]),
    }
    try:
        async with engine.begin() as connection:
            created = await connection.execute(
                insert(rollouts_table).values(**values).returning(rollouts_table.c.id)
            )
            plan = await _read(connection, created.scalar_one(), lock=True)
            await log_event(connection, plan, "started", action)
            await _enter(connection, plan, 0, action, why="plan started")
    except IntegrityError:
        running = [p for p in await list_plans(engine, route=route) if p.state in ACTIVE]
        raise Conflict(
            f"{route} already has a rollout plan in progress"
            + (f" (plan {running[0].id}, {running[0].state})" if running else ""),
            {"route": route, "rollout": running[0].id if running else None},
        ) from None
    return await get_plan(engine, plan.id)


async def _enter(
    connection: AsyncConnection, plan: Plan, number: int, action: Action, *, why: str
) -> None:
    """Put the plan on step `number`: the route's mode, the clock, the event; async ends it."""
    step = plan.steps[number]
    label = f"step {number + 1}/{len(plan.steps)} {step.label()}"
    await _move_route(connection, plan, step.route_mode(), action, f"{label}: {why}")
    state = "completed" if step.mode == "async" else None
    await _set(
        connection, plan, step=number, **step_clock(step), **({"state": state} if state else {})
    )
    await log_event(connection, plan, "step", action, step=number, detail={"label": step.label()})
    if state:
        await log_event(connection, plan, "completed", action, step=number)


Fence = Callable[[AsyncConnection], Awaitable[None]]


async def _no_fence(connection: AsyncConnection) -> None:
    return None


async def judged(
    engine: AsyncEngine,
    plan: Plan,
    outcome: str,
    reason: str,
    evidence: Mapping[str, Any],
    action: Action,
    fence: Fence = _no_fence,
) -> bool:
    """Store a verdict on the plan's current step and what follows from it; False if stale.

    pass: the next step; fail: the route back to legacy, the plan failed;
    inconclusive: the step is extended by the plan's `extend` seconds.
    """
    async with engine.begin() as connection:
        await fence(connection)
        now = await _read(connection, plan.id, lock=True)
        if now.state != "running" or now.step != plan.step:
            return False
        detail = {"evidence": dict(evidence), "reason": reason}
        await log_event(connection, now, "verdict", action, verdict=outcome, detail=detail)
        if outcome == "pass":
            await _enter(connection, now, now.step + 1, action, why=f"step {now.step + 1} passed")
        elif outcome == "fail":
            await _roll_back(connection, now, action, f"step {now.step + 1} failed: {reason}")
        elif outcome == "inconclusive":
            await _set(connection, now, step_due_at=later(now.analysis.extend))
        return True


async def _roll_back(connection: AsyncConnection, plan: Plan, action: Action, why: str) -> None:
    await _move_route(connection, plan, RouteMode(mode="legacy"), action, why)
    await _set(connection, plan, state="failed")
    await log_event(connection, plan, "rolled_back", action, detail={"reason": why})


ACTIONS = ("pause", "resume", "abort", "promote")


async def act(engine: AsyncEngine, plan_id: int, verb: str, action: Action) -> Plan:
    """A person's action on a plan; 409 when the plan's state does not allow it."""
    async with engine.begin() as connection:
        plan = await _read(connection, plan_id, lock=True)
        allowed = {"pause": ("running",), "resume": ("paused",)}.get(verb, ACTIVE)
        if plan.state not in allowed:
            raise Conflict(
                f"plan {plan.id} is {plan.state}: it cannot {verb}",
                {"rollout": plan.id, "state": plan.state, "action": verb},
            )
        await log_event(connection, plan, verb + "d" if verb.endswith("e") else verb + "ed", action)
        await ACTION_STEPS[verb](connection, plan, action)
    return await get_plan(engine, plan_id)


async def _pause(connection: AsyncConnection, plan: Plan, action: Action) -> None:
    await _set(connection, plan, state="paused")


async def _resume(connection: AsyncConnection, plan: Plan, action: Action) -> None:
    """The step starts over: evidence from before the pause no longer counts."""
    await _set(connection, plan, state="running", **step_clock(plan.current))


async def _abort(connection: AsyncConnection, plan: Plan, action: Action) -> None:
    await _move_route(connection, plan, RouteMode(mode="legacy"), action, "plan aborted")
    await _set(connection, plan, state="aborted")


async def _promote(connection: AsyncConnection, plan: Plan, action: Action) -> None:
    await _enter(connection, plan, plan.step + 1, action, why="promoted without a verdict")


ACTION_STEPS = {"pause": _pause, "resume": _resume, "abort": _abort, "promote": _promote}


async def abort_under(connection: AsyncConnection, routes: list[str], action: Action) -> list[int]:
    """Abort the plans in progress on `routes` (their modes are being moved by the caller)."""
    query = (
        plans_query()
        .where(rollouts_table.c.state.in_(ACTIVE), rollouts_table.c.route.in_(routes))
        .with_for_update()
    )
    plans = [as_plan(dict(row._mapping)) for row in await connection.execute(query)]
    for plan in plans:
        await log_event(connection, plan, "aborted", action)
        await _set(connection, plan, state="aborted")
    return [plan.id for plan in plans]


async def fail_on_trip(engine: AsyncEngine, route: str, reason: str, action: Action) -> bool:
    """A process's fast trip on `route`, stored as its plan's failure; False if no plan runs."""
    async with engine.begin() as connection:
        query = (
            plans_query()
            .where(rollouts_table.c.state.in_(ACTIVE), rollouts_table.c.route == route)
            .with_for_update()
        )
        row = (await connection.execute(query)).first()
        if row is None:
            return False
        plan = as_plan(dict(row._mapping))
        detail = {"reason": reason}
        await log_event(connection, plan, "verdict", action, verdict="fail", detail=detail)
        await _roll_back(connection, plan, action, f"step {plan.step + 1} tripped: {reason}")
        return True


async def plan_in_progress(engine: AsyncEngine, route: str) -> int | None:
    """The id of the plan running or paused on `route`, if any."""
    query = select(rollouts_table.c.id).where(
        rollouts_table.c.state.in_(ACTIVE), rollouts_table.c.route == route
    )
    async with engine.connect() as connection:
        return (await connection.execute(query)).scalar_one_or_none()


async def kill_switch(
    table: RouteTable, path_prefix: str | None, *, actor: str, reason: str
) -> dict[str, Any]:
    """The route table's kill switch, aborting the plans in progress on the routes it covers."""
    action = Action(actor, reason, table.default_for)

    async def abort_plans(connection: AsyncConnection, routes: list[str]) -> list[int]:
        return await abort_under(connection, routes, action)

    return await table.kill_switch(
        path_prefix=path_prefix, actor=actor, reason=reason, also=abort_plans
    )
