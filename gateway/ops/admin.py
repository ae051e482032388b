"""The control plane under /admin: route modes, their events, the fleet, shadow mismatches and
learned noise, the advisor.

Every endpoint needs an admin token (`gateway.ops.admin_access`): reads take a
read-only or a read-write token, mode changes a read-write one, whose name is
recorded as who made the change. Errors come in the gateway's own envelope.
Rollout plans have their own module (`gateway.ops.admin_rollouts`). The admin
API is left out of the app's OpenAPI (unless `GATEWAY_ADMIN_IN_OPENAPI`) and
documents itself, plans included, at /admin/openapi.json.
"""

from __future__ import annotations

import copy
import functools
import logging
from typing import Annotated, Any

import anyio
from fastapi import Query, Request, Response
from fastapi.openapi.utils import get_openapi
from prometheus_client import generate_latest
from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from gateway.database.state import gateway_state
from gateway.errors import Conflict, GatewayError
from gateway.impl import Impl
from gateway.json_types import JsonInteger
from gateway.metrics.advisor import build_report, increase, parse
from gateway.metrics.exposition import scraped_registry
from gateway.ops.admin_access import (
    Table,
    Writer,
    admin_errors,
    admin_router,
    database_or_unavailable,
    known_route,
)
from gateway.ops.admin_rollouts import router as rollouts_router
from gateway.ops.console_data import router as console_data_router
from gateway.rollout.store import kill_switch, plan_in_progress
from gateway.routing.fleet import fleet_status, lagging_on
from gateway.routing.modes import Mode, RouteMode
from gateway.routing.store import list_events
from gateway.routing.table import RouteTable

logger = logging.getLogger(__name__)


def only_with(mode: str, option: str, *, required: bool) -> dict[str, Any]:
    """JSON Schema: `option` may be set (and with `required` must be) only in `mode`."""
    given = {"required": [option], "properties": {option: {"not": {"type": "null"}}}}
    return {
        "if": {"properties": {"mode": {"const": mode}}},
        "then": given if required else {},
        "else": {"properties": {option: {"type": "null"}}},
    }


SHADOW_OPTIONS = ("primary", "sample", "calibrate")


class ModeChange(BaseModel):
    """A requested mode: `percent` only with canary (0 to 100); with shadow only, `primary`,
    `sample` (the percent of requests run twice, 1 to 100, all by default) and `calibrate` (the
    primary runs twice, to learn the route's noise)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "allOf": [
                only_with("canary", "percent", required=True),
                *(only_with("shadow", option, required=False) for option in SHADOW_OPTIONS),
            ]
        },
    )

    mode: Mode
    percent: Annotated[int | None, Field(ge=0, le=100), JsonInteger] = None
    primary: Impl | None = None
    sample: Annotated[int | None, Field(ge=1, le=100), JsonInteger] = None
    calibrate: StrictBool | None = None
    reason: Annotated[str, Field(max_length=1000)] = ""

    @model_validator(mode="after")
    def _options_fit_the_mode(self) -> ModeChange:
        if self.mode == "canary" and self.percent is None:
            raise ValueError("a canary needs a percent (0 to 100) of requests for async")
        if self.mode != "canary" and self.percent is not None:
            raise ValueError(f"percent applies to canary only, not to {self.mode}")
        given = [name for name in SHADOW_OPTIONS if getattr(self, name) is not None]
        if self.mode != "shadow" and given:
            raise ValueError(f"{given[0]} applies to shadow only, not to {self.mode}")
        return self

    def route_mode(self) -> RouteMode:
        """The mode asked for; each option only where the mode uses it."""
        return RouteMode(
            mode=self.mode,
            percent=self.percent or 0,
            primary=self.primary or "legacy",
            sample=100 if self.sample is None else self.sample,
            calibrating=bool(self.calibrate),
        )


WRITE_ERRORS = admin_errors(
    {403: "this admin token may only read", 404: "no such route"}, takes_body=True
)

router = admin_router("/admin")


@router.get("/routes")
async def get_routes(request: Request, table: Table) -> list[dict[str, Any]]:
    """Every route: its implementations, its mode, who changed it last and why.

    `lagging_workers` names the live workers (of every instance) that do not hold
    the route's latest change yet; null when the database does not answer.
    """
    described = table.describe()
    try:
        fleet = await fleet_status(table.database, reload_seconds(request))
    except Exception:
        fleet = None
    for route in described:
        route["lagging_workers"] = None if fleet is None else lagging_on(fleet, route["version"])
    return described


@router.get("/fleet")
async def get_fleet(request: Request, table: Table) -> dict[str, Any]:
    """Every worker of every instance: the route-table version it holds, who lags, who is stale."""
    with database_or_unavailable():
        return await fleet_status(table.database, reload_seconds(request))


def reload_seconds(request: Request) -> float:
    return gateway_state(request.app).settings.route_reload_seconds


@router.get("/routes/events")
async def get_events(
    table: Table,
    route: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The latest mode changes, newest first (of one route, with `route`)."""
    with database_or_unavailable():
        return await list_events(table.database, route=route, limit=limit)


@router.put("/routes/{route_key:path}", responses=WRITE_ERRORS)
async def put_route(
    route_key: str, change: ModeChange, table: Table, actor: Writer
) -> dict[str, Any]:
    """Move a route to another mode, on every instance (a read-write token)."""
    key = known_route(table, route_key)
    with database_or_unavailable():
        await refuse_under_plan(table, key)
        event = await table.change(key, change.route_mode(), actor=actor, reason=change.reason)
    current = next(route for route in table.describe() if route["route"] == key)
    return {"route": current, "event": event}


async def refuse_under_plan(table: RouteTable, key: str) -> None:
    """409 while a rollout plan drives the route: the plan moves it (or pause and abort it)."""
    plan = await plan_in_progress(table.database, key)
    if plan is not None:
        raise Conflict(
            f"{key} is driven by rollout plan {plan}: abort the plan (or use the kill switch) "
            "before moving the route by hand",
            {"route": key, "rollout": plan},
        )


class KillSwitch(BaseModel):
    """Every route, or every route under `path_prefix` (e.g. a router's `/users`), to legacy."""

    model_config = ConfigDict(extra="forbid")

    path_prefix: Annotated[str | None, Field(pattern=r"^/", max_length=1000)] = None
    reason: Annotated[str, Field(min_length=1, max_length=1000)]


@router.post("/kill-switch", responses=WRITE_ERRORS)
async def post_kill_switch(switch: KillSwitch, table: Table, actor: Writer) -> dict[str, Any]:
    """Move every route (under `path_prefix`) to legacy on every instance, in one change."""
    with database_or_unavailable():
        return await kill_switch(table, switch.path_prefix, actor=actor, reason=switch.reason)


DEFAULT_WINDOW = 5.0


@router.get("/report", response_model=None)
async def get_report(
    request: Request, window: Annotated[float | None, Query(gt=0)] = None
) -> dict[str, Any] | Response:
    """The advisor's report over the next `window` seconds of this gateway's traffic.

    At most GATEWAY_ADMIN_REPORT_MAX_WINDOW; 5 s, or that if shorter, by default.
    A client that goes away ends the wait.
    """
    longest = gateway_state(request.app).settings.admin_report_max_window
    window = min(DEFAULT_WINDOW, longest) if window is None else window
    if window > longest:
        raise InvalidWindow(
            f"window may be at most {longest:g} s (GATEWAY_ADMIN_REPORT_MAX_WINDOW)",
            {"window": window, "max_window": longest},
        )
    before = parse(generate_latest(scraped_registry(request)).decode())
    if not await waited_with_client(request, window):
        return Response(status_code=499)  # nobody is left to read it
    after = parse(generate_latest(scraped_registry(request)).decode())
    return build_report(increase(before, after), window).as_dict()


class InvalidWindow(GatewayError):
    status_code = 422
    code = "invalid_request"


async def waited_with_client(request: Request, seconds: float) -> bool:
    """Wait `seconds`; False as soon as the client disconnects."""
    with anyio.move_on_after(seconds):
        while (await request.receive())["type"] != "http.disconnect":
            pass
        return False
    return True


ROUTE_FILTER_ERRORS = admin_errors({404: "no such route"}, takes_body=False)


@router.get("/shadow/mismatches", responses=ROUTE_FILTER_ERRORS)
async def get_mismatches(table: Table, route: str | None = None) -> dict[str, Any]:
    """Shadow comparisons per route (this worker's), and the latest mismatches of every
    instance with their (redacted) diffs."""
    with database_or_unavailable():
        return await table.shadows.report(None if route is None else known_route(table, route))


@router.get("/shadow/noise", responses=ROUTE_FILTER_ERRORS)
async def get_noise(table: Table, route: str | None = None) -> dict[str, Any]:
    """The noise calibration learned per route (of every instance): the field paths left out
    when the route is compared with its other implementation."""
    with database_or_unavailable():
        return await table.shadows.noise_report(
            None if route is None else known_route(table, route)
        )


NOISE_ERRORS = admin_errors(
    {403: "this admin token may only read", 404: "no such route"}, takes_body=False
)


@router.delete("/shadow/noise", responses=NOISE_ERRORS)
async def delete_noise(table: Table, actor: Writer, route: str) -> dict[str, Any]:
    """Forget the noise learned for `route`, on every instance (a read-write token)."""
    key = known_route(table, route)
    with database_or_unavailable():
        forgotten = await table.shadows.forget_noise(key)
    logger.info("%s forgot the shadow noise of %s (%d fields)", actor, key, forgotten)
    return {"route": key, "forgotten": forgotten}


@router.get("/openapi.json", include_in_schema=False)
async def admin_openapi(request: Request) -> dict[str, Any]:
    """The admin API's own OpenAPI schema, with its bearer security scheme."""
    return admin_schema(gateway_state(request.app).settings.admin_report_max_window)


@functools.cache
def admin_schema(max_window: float) -> dict[str, Any]:
    """The schema, with the longest report window this gateway allows."""
    routes = [
        documented(route)
        for route in [*router.routes, *rollouts_router.routes, *console_data_router.routes]
        if getattr(route, "name", "") != "admin_openapi"
    ]
    schema = get_openapi(
        title="Hybrid gateway admin API",
        version="1",
        description="Route modes, their events, shadow mismatches, the advisor's report, "
        "rollout plans and the console's data.",
        routes=routes,
    )
    for parameter in schema["paths"]["/admin/report"]["get"]["parameters"]:
        if parameter["name"] == "window":
            parameter["schema"] = {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": max_window,
                "default": min(DEFAULT_WINDOW, max_window),
            }
    return schema


def documented(route: Any) -> Any:
    shown = copy.copy(route)
    shown.include_in_schema = True
    return shown
