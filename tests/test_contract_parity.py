"""Contract parity: both implementations of every twin route answer each request identically."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from gateway import Settings, create_app
from shared_models.seed import order_rows
from tests.conftest import TEST_SIZE, MakeApi

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

    def label(self) -> str:
        query = "&".join(f"{name}={value}" for name, value in self.params.items())
        return f"{self.method} {self.path}{'?' + query if query else ''} {self.json!r}"


def twin_keys() -> list[str]:
    """The keys of the default app that have both a legacy and an async implementation."""
    app = create_app(
        Settings(database_url="postgresql://unused@127.0.0.1/unused", log_level="WARNING")
    )
    routes = app.state.route_table.routes
    return sorted(
        key for key, route in routes.items() if set(route.implementations) == {"legacy", "async"}
    )


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


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    impl: str | None


async def send(api: httpx.AsyncClient, case: Case) -> Answer:
    response = await api.request(case.method, case.path, json=case.json, params=case.params)
    body = response.json() if response.content else None
    return Answer(response.status_code, body, response.headers.get("x-gateway-impl"))


async def answers(make_api: MakeApi, impl: str, cases: list[Case]) -> list[Answer]:
    async with make_api(impl=impl) as api:
        return [await send(api.http, case) for case in cases]


def seed_size(path: str) -> int:
    return {"users": TEST_SIZE.users, "items": TEST_SIZE.items}[path.split("/")[1]]


def comparable(value: Any, seeded: int) -> Any:
    """`value` without the `created_at` of rows created by the requests (ids above the seed)."""
    if isinstance(value, list):
        return [comparable(entry, seeded) for entry in value]
    if not isinstance(value, dict):
        return value
    created = isinstance(value.get("id"), int) and value["id"] > seeded and "created_at" in value
    return {
        name: comparable(entry, seeded)
        for name, entry in value.items()
        if not (created and name == "created_at")
    }


def test_every_twin_route_has_parity_cases() -> None:
    twins = twin_keys()
    assert twins, "the default app pairs no route"
    assert [key for key in twins if not CASES.get(key)] == []
    assert sorted(set(CASES) - set(twins)) == []


@pytest.mark.parametrize("key", twin_keys())
async def test_both_implementations_answer_alike(make_api: MakeApi, key: str) -> None:
    cases = CASES.get(key)
    assert cases, f"{key} has both implementations but no parity cases"
    legacy = await answers(make_api, "legacy", cases)
    migrated = await answers(make_api, "async", cases)
    for case, left, right in zip(cases, legacy, migrated, strict=True):
        where = case.label()
        assert left.status == case.status, f"{where}: legacy answered {left.status} {left.body}"
        assert right.status == left.status, f"{where}: legacy {left.body} vs async {right.body}"
        seeded = seed_size(case.path)
        assert comparable(right.body, seeded) == comparable(left.body, seeded), where
        assert (left.impl, right.impl) == ("legacy", "async"), where


async def test_created_rows_carry_a_timestamp_on_both_sides(make_api: MakeApi) -> None:
    case = Case("POST", "/users", 201, {"email": "stamp@example.com", "name": "Stamp"})
    for impl in ("legacy", "async"):
        (answer,) = await answers(make_api, impl, [case])
        assert answer.status == 201
        assert answer.body["id"] == TEST_SIZE.users + 1
        assert isinstance(answer.body["created_at"], str) and answer.body["created_at"]
