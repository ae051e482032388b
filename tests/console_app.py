"""The demo shop plus a quote route whose async twin rounds differently, for the console's tests.

`GET /quotes/{n}` quotes n units at 0.125 each: legacy rounds half up, the
async twin half to even, so their totals differ for one n in four (1, 5, 9,
...) and shadow mode stores those mismatches. Served with
`gateway serve --app tests.console_app:app`.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

from fastapi import APIRouter
from pydantic import BaseModel

from demo.app import ASYNC_ROUTERS, LEGACY_ROUTERS, create_demo_app
from demo.settings import DemoSettings
from gateway.settings import load_settings

UNIT_PRICE = Decimal("0.125")
CENT = Decimal("0.01")
QUOTE_ROUTE = "GET /quotes/{n}"


class Quote(BaseModel):
    units: int
    total: str


legacy, migrated = APIRouter(), APIRouter()


@legacy.get("/quotes/{n}", response_model=Quote)
def quote(n: int) -> Quote:
    return Quote(units=n, total=str((UNIT_PRICE * n).quantize(CENT, ROUND_HALF_UP)))


@migrated.get("/quotes/{n}", response_model=Quote)
async def quote_async(n: int) -> Quote:
    return Quote(units=n, total=str((UNIT_PRICE * n).quantize(CENT, ROUND_HALF_EVEN)))


app = create_demo_app(
    load_settings(DemoSettings),
    legacy_routers=[*LEGACY_ROUTERS, legacy],
    async_routers=[*ASYNC_ROUTERS, migrated],
)
