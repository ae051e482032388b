"""The control plane under /admin: route modes, their events, shadow mismatches, the advisor.

Reads are open; writes need `Authorization: Bearer <token>` with a token from
`GATEWAY_ADMIN_TOKENS` (compared in constant time). The token's name is
recorded as who made the change. Tokens never appear in responses or logs.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query, Request
from prometheus_client import generate_latest
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.database.state import gateway_state
from gateway.errors import Forbidden, NotFound, Unauthorized, Unavailable
from gateway.failures import RateLimitedLog, unavailability
from gateway.impl import Impl
from gateway.metrics.advisor import build_report, increase, parse
from gateway.metrics.exposition import scraped_registry
from gateway.routing.keys import normalized
from gateway.routing.modes import Mode, RouteMode
from gateway.routing.store import list_events
from gateway.routing.table import RouteTable


class ModeChange(BaseModel):
    """A requested mode: `percent` only with canary (1 to 100), `primary` only with shadow."""

    model_config = ConfigDict(extra="forbid")

    mode: Mode
    percent: Annotated[int | None, Field(strict=True, ge=0, le=100)] = None
    primary: Impl | None = None
    reason: Annotated[str, Field(max_length=1000)] = ""

    @model_validator(mode="after")
    def _options_fit_the_mode(self) -> ModeChange:
        if self.mode == "canary" and self.percent is None:
            raise ValueError("a canary needs a percent (0 to 100) of requests for async")
        if self.mode != "canary" and self.percent is not None:
            raise ValueError(f"percent applies to canary only, not to {self.mode}")
        if self.mode != "shadow" and self.primary is not None:
            raise ValueError(f"primary applies to shadow only, not to {self.mode}")
        return self

    def route_mode(self) -> RouteMode:
        """The mode asked for; percent and primary only where the mode uses them."""
        return RouteMode(
            mode=self.mode, percent=self.percent or 0, primary=self.primary or "legacy"
        )


def route_table(request: Request) -> RouteTable:
    table: RouteTable = request.app.state.route_table
    return table


Table = Annotated[RouteTable, Depends(route_table)]


def admin_name(request: Request) -> str:
    """The name of the token the request carries; 401/403 when there is none to accept."""
    tokens = gateway_state(request.app).settings.admin_tokens
    if not tokens:
        raise Forbidden("admin writes are disabled: no GATEWAY_ADMIN_TOKENS are configured")
    scheme, _, offered = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not offered:
        raise Unauthorized("an admin token is required: Authorization: Bearer <token>")
    matched = None
    for name, token in tokens.items():
        if hmac.compare_digest(offered.encode(), token.get_secret_value().encode()):
            matched = name
    if matched is None:
        raise Unauthorized("the admin token is not valid")
    return matched


Admin = Annotated[str, Depends(admin_name)]

router = APIRouter(prefix="/admin", tags=["admin"], include_in_schema=False)


unavailable_log = RateLimitedLog()


@contextmanager
def database_or_unavailable() -> Iterator[None]:
    """The admin API answers 503 when the database cannot be used, whatever the app maps."""
    try:
        yield
    except Exception as error:
        kind = unavailability(error)
        if kind is None:
            raise
        unavailable_log.unavailable(kind)
        raise Unavailable(
            "the database is unavailable; retry shortly", {"resource": "database"}
        ) from None


def known_route(table: RouteTable, key: str) -> str:
    key = normalized(key)
    if key not in table.routes:
        raise NotFound(f"no route {key!r}", {"route": key, "known": sorted(table.routes)})
    return key


@router.get("/routes")
async def get_routes(table: Table) -> list[dict[str, Any]]:
    return table.describe()


@router.get("/routes/events")
async def get_events(
    table: Table,
    route: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    with database_or_unavailable():
        return await list_events(table.database, route=route, limit=limit)


@router.put("/routes/{route_key:path}")
async def put_route(
    route_key: str, change: ModeChange, table: Table, actor: Admin
) -> dict[str, Any]:
    key = known_route(table, route_key)
    with database_or_unavailable():
        event = await table.change(key, change.route_mode(), actor=actor, reason=change.reason)
    current = next(route for route in table.describe() if route["route"] == key)
    return {"route": current, "event": event}


@router.get("/report")
async def get_report(
    request: Request, window: Annotated[float, Query(gt=0, le=300)] = 5.0
) -> dict[str, Any]:
    """The advisor's report over the next `window` seconds of this gateway's traffic."""
    before = parse(generate_latest(scraped_registry(request)).decode())
    await anyio.sleep(window)
    after = parse(generate_latest(scraped_registry(request)).decode())
    return build_report(increase(before, after), window).as_dict()


@router.get("/shadow/mismatches")
async def get_mismatches(table: Table, route: str | None = None) -> dict[str, Any]:
    return table.shadows.report(route)
