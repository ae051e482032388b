"""The demo plus `GET /probe/{n}`, whose async twin always fails: a canary of it rolls back.

Served as a real process: `gateway serve` with `GATEWAY_APP=tests.canary_probe:app`.
"""

from __future__ import annotations

from fastapi import APIRouter

from demo.app import ASYNC_ROUTERS, LEGACY_ROUTERS, create_demo_app

PROBE_KEY = "GET /probe/{n}"
legacy, migrated = APIRouter(), APIRouter()


@legacy.get("/probe/{n}")
def probe(n: int) -> dict[str, int]:
    return {"n": n}


@migrated.get("/probe/{n}")
async def probe_async(n: int) -> dict[str, int]:
    raise RuntimeError(f"the async probe fails ({n})")


app = create_demo_app(
    legacy_routers=[*LEGACY_ROUTERS, legacy], async_routers=[*ASYNC_ROUTERS, migrated]
)
