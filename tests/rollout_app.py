"""The demo shop plus two probe routes, for rollout plans on real processes.

`GET /probe/{n}` has a healthy async twin; the async twin of `GET /flaky/{n}`
fails every request whose n is a multiple of five (20 % of distinct n).
Served with `gateway serve --app tests.rollout_app:app`.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from demo.app import ASYNC_ROUTERS, LEGACY_ROUTERS, create_demo_app
from demo.settings import DemoSettings
from gateway.settings import load_settings


class Probe(BaseModel):
    n: int


legacy, migrated = APIRouter(), APIRouter()


@legacy.get("/probe/{n}", response_model=Probe)
def probe(n: int) -> Probe:
    return Probe(n=n)


@migrated.get("/probe/{n}", response_model=Probe)
async def probe_async(n: int) -> Probe:
    return Probe(n=n)


@legacy.get("/flaky/{n}", response_model=Probe)
def flaky(n: int) -> Probe:
    return Probe(n=n)


@migrated.get("/flaky/{n}", response_model=Probe)
async def flaky_async(n: int) -> Probe:
    if n % 5 == 0:
        raise RuntimeError("the async twin of /flaky fails one request in five")
    return Probe(n=n)


app = create_demo_app(
    load_settings(DemoSettings),
    legacy_routers=[*LEGACY_ROUTERS, legacy],
    async_routers=[*ASYNC_ROUTERS, migrated],
)
