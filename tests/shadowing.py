"""Shadow-mode test helpers: a probe route pair, an app with an admin token, its shadow report."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import anyio
import httpx
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from demo.app import create_demo_app
from demo.settings import DemoSettings
from gateway.routing.shadow import RESULTS

PROBE_ROUTE = "GET /probe/{n}"
AUTH = {"Authorization": "Bearer s3cret"}


class Probe(BaseModel):
    n: int
    side: str


def probe_routers(
    async_side: str = "async", async_delay: float = 0.0, async_fails: bool = False
) -> dict[str, Any]:
    """A GET /probe/{n} pair with one contract; the async twin may differ, lag or fail."""
    legacy, migrated = APIRouter(), APIRouter()

    @legacy.get("/probe/{n}", response_model=Probe)
    def probe_legacy(n: int) -> Probe:
        return Probe(n=n, side="legacy")

    @migrated.get("/probe/{n}", response_model=Probe)
    async def probe_async(n: int) -> Probe:
        await anyio.sleep(async_delay)
        if async_fails:
            raise RuntimeError("the async twin fails")
        return Probe(n=n, side=async_side)

    return {"legacy_routers": [legacy], "async_routers": [migrated]}


def real_app(url: str, routers: dict[str, Any] | None = None, **overrides: Any) -> FastAPI:
    settings = DemoSettings(
        database_url=url, log_level="WARNING", admin_tokens={"ops": "s3cret"}, **overrides
    )
    return create_demo_app(settings, **(routers or {}))


async def put_mode(client: httpx.AsyncClient, key: str, **change: Any) -> httpx.Response:
    return await client.put("/admin/routes/" + quote(key, safe=""), json=change, headers=AUTH)


async def set_mode(client: httpx.AsyncClient, key: str, **change: Any) -> None:
    response = await put_mode(client, key, **change)
    assert response.status_code == 200, response.text


async def shadow_on(client: httpx.AsyncClient, key: str, primary: str = "legacy") -> None:
    await set_mode(client, key, mode="shadow", primary=primary, reason="compare")


def counted(**counts: int) -> dict[str, int]:
    """A route's comparison counts: the given ones, every other result at 0."""
    return {result: counts.get(result, 0) for result in RESULTS}


async def report(client: httpx.AsyncClient, key: str) -> dict[str, Any]:
    response = await client.get("/admin/shadow/mismatches", params={"route": key})
    assert response.status_code == 200, response.text
    routes: list[dict[str, Any]] = response.json()["routes"]
    return routes[0] if routes else {"counts": counted(), "mismatches": []}


async def settled_report(
    client: httpx.AsyncClient, key: str, runs: int, seconds: float = 10
) -> dict[str, Any]:
    """The route's report once `runs` shadows have finished (or the deadline has passed)."""
    deadline = time.monotonic() + seconds
    found = await report(client, key)
    while sum(found["counts"].values()) < runs and time.monotonic() < deadline:
        await anyio.sleep(0.02)
        found = await report(client, key)
    return found
