"""The demo's contract parity, with gateway.testing: both implementations of every twin alike.

Each twin's cases run in order, writes included, once per implementation from
the same database state; statuses are checked against what the legacy side
must answer, and every difference between the two sides is a failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import APIRouter

from demo.app import create_demo_app
from demo.settings import DemoSettings
from gateway import AsyncDB, error_responses
from gateway.database.queries import read_or_404
from gateway.testing import ParityReport, ParityRequest, check_parity
from gateway.testing import twin_keys as parity_twins
from shared_models.models import User
from shared_models.params import UserId
from shared_models.schemas import UserRead
from shared_models.seed import order_rows
from tests.conftest import TEST_SIZE, MakeApi
from tests.conftest import test_settings as settings_for

UNUSED_URL = "postgresql://unused@127.0.0.1/unused"
IGNORED = ("created_at",)  # set by the database at each side's own insert time

pytestmark = pytest.mark.anyio

JsonBody = dict[str, Any] | list[Any] | str | None


@dataclass(frozen=True)
class Case:
    """One request and the status both implementations must answer it with."""

    method: str
    path: str
    status: int
    json: JsonBody = None
    params: dict[str, str | int] = field(default_factory=dict)

    def request(self) -> ParityRequest:
        return ParityRequest(self.method, self.path, self.params, self.json)


USERS_WITH_ORDERS = sorted({int(str(order["user_id"])) for order in order_rows(TEST_SIZE)[0]})
USERS_WITHOUT_ORDERS = sorted(set(range(1, TEST_SIZE.users + 1)) - set(USERS_WITH_ORDERS))
TOO_LARGE_ID = 2**31

CASES: dict[str, list[Case]] = {
    "GET /users": [
        Case("GET", "/users", 200),
        Case("GET", "/users", 200, params={"limit": 5, "offset": 3}),
        Case("GET", "/users", 200, params={"q": "user1"}),
        Case("GET", "/users", 200, params={"q": "HOPPER"}),
        Case("GET", "/users", 200, params={"active": "false"}),
        Case("GET", "/users", 200, params={"active": "true", "limit": 100}),
        Case("GET", "/users", 200, params={"offset": 50}),
        Case("GET", "/users", 200, params={"q": "nobody-matches-this"}),
        Case("GET", "/users", 422, params={"limit": 0}),
        Case("GET", "/users", 422, params={"limit": 101}),
        Case("GET", "/users", 422, params={"limit": "ten"}),
        Case("GET", "/users", 422, params={"offset": -1}),
        Case("GET", "/users", 422, params={"q": ""}),
        Case("GET", "/users", 422, params={"active": "maybe"}),
        Case("GET", "/users", 422, params={"limit": 0, "offset": -1}),
    ],
    "GET /users/{user_id}": [
        Case("GET", "/users/1", 200),
        Case("GET", "/users/10", 200),
        Case("GET", f"/users/{TEST_SIZE.users}", 200),
        Case("GET", "/users/99", 404),
        Case("GET", f"/users/{TOO_LARGE_ID - 1}", 404),
        Case("GET", "/users/0", 422),
        Case("GET", "/users/-3", 422),
        Case("GET", "/users/abc", 422),
        Case("GET", f"/users/{TOO_LARGE_ID}", 422),
    ],
    "POST /users": [
        Case("POST", "/users", 201, {"email": "new1@example.com", "name": "New One"}),
        Case(
            "POST",
            "/users",
            201,
            {"email": "new2@example.com", "name": "New Two", "is_active": False},
        ),
        Case("POST", "/users", 409, {"email": "user1@example.com", "name": "Copy"}),
        Case("POST", "/users", 409, {"email": "new1@example.com", "name": "Copy"}),
        Case("POST", "/users", 201, {"email": "new3@example.com", "name": "After conflicts"}),
        Case("GET", "/users", 200, params={"offset": TEST_SIZE.users - 1}),
        Case("GET", "/users", 200, params={"active": "false"}),
        Case("POST", "/users", 422, {"email": "not-an-email", "name": "Bad"}),
        Case("POST", "/users", 422, {"email": "ok@example.com", "name": ""}),
        Case("POST", "/users", 422, {"email": "ok@example.com"}),
        Case("POST", "/users", 422, {"email": "ok@example.com", "name": "N", "is_active": "often"}),
        Case("POST", "/users", 422, {"email": "x" * 250 + "@example.com", "name": "Long"}),
        Case("POST", "/users", 422, []),
        Case("POST", "/users", 422, "just text"),
        Case("POST", "/users", 422),
    ],
    "PATCH /users/{user_id}": [
        Case("PATCH", "/users/2", 200, {"name": "Renamed"}),
        Case("PATCH", "/users/3", 200, {"is_active": False, "email": "moved3@example.com"}),
        Case("GET", "/users/3", 200),
        Case("PATCH", "/users/3", 200, {"email": "user3@example.com"}),
        Case("PATCH", "/users/4", 409, {"email": "user5@example.com"}),
        Case("GET", "/users/4", 200),
        Case("PATCH", "/users/99", 404, {"name": "Ghost"}),
        Case("PATCH", "/users/2", 422, {}),
        Case("PATCH", "/users/2", 422, {"email": "bad"}),
        Case("PATCH", "/users/2", 422, {"name": ""}),
        Case("PATCH", "/users/0", 422, {"name": "Zero"}),
        Case("PATCH", "/users/abc", 422, {"name": "Letters"}),
        Case("PATCH", "/users/2", 422),
        Case("GET", "/users", 200, params={"limit": 5}),
    ],
    "DELETE /users/{user_id}": [
        Case("DELETE", f"/users/{USERS_WITHOUT_ORDERS[0]}", 204),
        Case("GET", f"/users/{USERS_WITHOUT_ORDERS[0]}", 404),
        Case("DELETE", f"/users/{USERS_WITHOUT_ORDERS[0]}", 404),
        Case("DELETE", f"/users/{USERS_WITH_ORDERS[0]}", 409),
        Case("GET", f"/users/{USERS_WITH_ORDERS[0]}", 200),
        Case("DELETE", "/users/99", 404),
        Case("DELETE", "/users/0", 422),
        Case("DELETE", "/users/abc", 422),
        Case("GET", "/users", 200, params={"limit": 100}),
    ],
    "GET /items": [
        Case("GET", "/items", 200),
        Case("GET", "/items", 200, params={"limit": 2, "offset": 1}),
        Case("GET", "/items", 200, params={"q": "KIT 3"}),
        Case("GET", "/items", 200, params={"in_stock": "true"}),
        Case("GET", "/items", 200, params={"in_stock": "false"}),
        Case("GET", "/items", 200, params={"offset": 100}),
        Case("GET", "/items", 422, params={"limit": 0}),
        Case("GET", "/items", 422, params={"in_stock": "perhaps"}),
        Case("GET", "/items", 422, params={"q": "x" * 101}),
        Case("GET", "/items", 422, params={"offset": 1_000_001}),
    ],
    "GET /items/{item_id}": [
        Case("GET", "/items/1", 200),
        Case("GET", f"/items/{TEST_SIZE.items}", 200),
        Case("GET", f"/items/{TEST_SIZE.items + 1}", 404),
        Case("GET", "/items/0", 422),
        Case("GET", "/items/x", 422),
        Case("GET", f"/items/{TOO_LARGE_ID}", 422),
    ],
    "POST /items": [
        Case("POST", "/items", 201, {"sku": "NEW-1", "name": "New", "price": "9.99", "stock": 3}),
        Case(
            "POST", "/items", 201, {"sku": "NEW-2", "name": "Sold out", "price": "0.50", "stock": 0}
        ),
        Case(
            "POST", "/items", 409, {"sku": "SKU-00001", "name": "Copy", "price": "1.00", "stock": 1}
        ),
        Case("POST", "/items", 409, {"sku": "NEW-1", "name": "Copy", "price": "1.00", "stock": 1}),
        Case(
            "POST", "/items", 201, {"sku": "NEW-3", "name": "After", "price": "12.00", "stock": 9}
        ),
        Case("GET", "/items", 200, params={"in_stock": "false"}),
        Case("GET", "/items", 200, params={"offset": TEST_SIZE.items - 1}),
        Case(
            "POST", "/items", 422, {"sku": "lower-case", "name": "Bad", "price": "1.00", "stock": 1}
        ),
        Case("POST", "/items", 422, {"sku": "NEG", "name": "Bad", "price": "-1", "stock": 1}),
        Case("POST", "/items", 422, {"sku": "CENTS", "name": "Bad", "price": "1.234", "stock": 1}),
        Case("POST", "/items", 422, {"sku": "STOCK", "name": "Bad", "price": "1.00", "stock": -1}),
        Case("POST", "/items", 422, {"name": "No sku", "price": "1.00", "stock": 1}),
        Case("POST", "/items", 422, {"sku": "", "name": "", "price": "free", "stock": "lots"}),
    ],
}


def twin_keys() -> list[str]:
    """The keys of the demo app that have both a legacy and an async implementation."""
    return parity_twins(create_demo_app(DemoSettings(database_url=UNUSED_URL, log_level="WARNING")))


def test_every_twin_route_has_parity_cases() -> None:
    twins = twin_keys()
    assert twins, "the demo pairs no route"
    assert [key for key in twins if not CASES.get(key)] == []
    assert sorted(set(CASES) - set(twins)) == []


async def parity(database_url: str, cases: list[Case], **routers: list[APIRouter]) -> ParityReport:
    app = create_demo_app(settings_for(database_url), **routers)
    requests = [case.request() for case in cases]
    return await check_parity(app, requests, database_url=database_url, ignore_fields=IGNORED)


@pytest.mark.parametrize("key", twin_keys())
async def test_both_implementations_answer_alike(database_url: str, key: str) -> None:
    cases = CASES[key]
    report = await parity(database_url, cases)
    assert report.ok, report.describe()
    assert key in report.covered
    for case, exchange in zip(cases, report.exchanges, strict=True):
        where = case.request().label()
        assert exchange.legacy.status == case.status, f"{where}: {exchange.legacy.body!r}"
        if exchange.key in report.twins:
            assert (exchange.legacy.impl, exchange.async_.impl) == ("legacy", "async"), where


def planted_twin() -> APIRouter:
    """GET /users/{user_id} as a careless migration might write it: one field differs."""
    router = APIRouter(prefix="/users")

    @router.get("/{user_id}", response_model=UserRead, responses=error_responses(404))
    async def get_user(user_id: UserId, db: AsyncDB) -> UserRead:
        user = await read_or_404(db, User, user_id, UserRead)
        return user.model_copy(update={"name": user.name.upper()})

    return router


async def test_a_planted_one_field_difference_is_reported(database_url: str) -> None:
    cases = [Case("GET", "/users/3", 200), Case("GET", "/users/99", 404)]
    report = await parity(database_url, cases, async_routers=[planted_twin()])
    assert [difference.request.path for difference in report.differences] == ["/users/3"]
    (difference,) = report.differences
    assert difference.key == "GET /users/{user_id}"
    changed = [line for line in difference.diff.splitlines() if line.startswith(("-  ", "+  "))]
    assert len(changed) == 2 and all('"name"' in line for line in changed), difference.diff
    assert "1 differences" in report.describe()


async def test_created_rows_carry_a_timestamp_on_both_sides(make_api: MakeApi) -> None:
    for impl in ("legacy", "async"):
        async with make_api(impl=impl) as api:
            response = await api.post("/users", json={"email": "stamp@example.com", "name": "S"})
        assert response.status_code == 201
        assert response.json()["id"] == TEST_SIZE.users + 1
        assert isinstance(response.json()["created_at"], str) and response.json()["created_at"]
