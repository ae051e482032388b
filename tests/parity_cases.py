"""The demo's parity cases: per twin route, requests in order and the status legacy answers.

Shared by the contract parity test and the migration assistant's draft tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.testing import ParityRequest
from shared_models.seed import order_rows
from tests.conftest import TEST_SIZE

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
