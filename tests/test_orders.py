"""The legacy-only order routes: placing orders against stock, reading them, listing a user's."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest

from shared_models.seed import item_row, order_rows
from tests.conftest import TEST_SIZE, ApiClient, MakeApi
from tests.helpers import (
    assert_error,
    assert_served_by,
    error_message,
    invalid_locations,
    scalar_int,
)

pytestmark = pytest.mark.anyio

Lines = Sequence[tuple[int, int]]


def order_body(user_id: int, lines: Lines) -> dict[str, object]:
    return {
        "user_id": user_id,
        "lines": [{"item_id": item_id, "quantity": quantity} for item_id, quantity in lines],
    }


def stock_of(api: ApiClient, item_id: int) -> int:
    return scalar_int(api, "SELECT stock FROM items WHERE id = :id", id=item_id)


def price_of(api: ApiClient, item_id: int) -> Decimal:
    return Decimal(str(api.scalar("SELECT price FROM items WHERE id = :id", id=item_id)))


def row_counts(api: ApiClient) -> tuple[object, object]:
    return api.scalar("SELECT count(*) FROM orders"), api.scalar("SELECT count(*) FROM order_lines")


def seeded_order_ids_of(user_id: int) -> list[int]:
    orders, _ = order_rows(TEST_SIZE)
    return [int(str(order["id"])) for order in orders if order["user_id"] == user_id]


def user_with_most_orders() -> int:
    orders, _ = order_rows(TEST_SIZE)
    user_ids = [int(str(order["user_id"])) for order in orders]
    return max(set(user_ids), key=user_ids.count)


def lines_of(order: dict[str, Any]) -> list[tuple[int, int, Decimal]]:
    return [
        (line["item_id"], line["quantity"], Decimal(line["unit_price"])) for line in order["lines"]
    ]


async def place(api: ApiClient, user_id: int, lines: Lines) -> dict[str, Any]:
    response = await api.post("/orders", json=order_body(user_id, lines))
    assert response.status_code == 201, response.text
    assert_served_by(response, "legacy")
    order: dict[str, Any] = response.json()
    return order


async def test_place_order(legacy_api: ApiClient) -> None:
    lines = [(4, 3), (2, 1)]
    stock_before = {item_id: stock_of(legacy_api, item_id) for item_id, _ in lines}
    prices = {item_id: price_of(legacy_api, item_id) for item_id, _ in lines}
    next_id = legacy_api.scalar("SELECT max(id) + 1 FROM orders")

    order = await place(legacy_api, 3, lines)

    assert order["id"] == next_id
    assert order["user_id"] == 3
    assert Decimal(order["total"]) == sum(prices[i] * quantity for i, quantity in lines)
    assert sorted(lines_of(order)) == sorted((i, q, prices[i]) for i, q in lines)
    for item_id, quantity in lines:
        assert stock_of(legacy_api, item_id) == stock_before[item_id] - quantity
    stored_lines = legacy_api.scalar(
        "SELECT count(*) FROM order_lines WHERE order_id = :id", id=order["id"]
    )
    assert stored_lines == len(lines)


async def test_place_order_for_whole_stock(legacy_api: ApiClient) -> None:
    available = stock_of(legacy_api, 6)
    order = await place(legacy_api, 1, [(6, available)])
    assert Decimal(order["total"]) == price_of(legacy_api, 6) * available
    assert stock_of(legacy_api, 6) == 0


async def test_order_routes_are_served_by_legacy_when_async_is_the_default(
    make_api: MakeApi,
) -> None:
    async with make_api(impl="async") as api:
        order = await place(api, 2, [(1, 1)])
        assert stock_of(api, 1) == int(str(item_row(1)["stock"])) - 1
        for path in [f"/orders/{order['id']}", "/users/2/orders", "/orders/999"]:
            response = await api.get(path)
            assert_served_by(response, "legacy")
        users = await api.get("/users/2")
        assert_served_by(users, "async")


async def test_order_for_unknown_user_is_404(legacy_api: ApiClient) -> None:
    counts = row_counts(legacy_api)
    response = await legacy_api.post("/orders", json=order_body(999, [(1, 1)]))
    assert_error(response, 404, "not_found")
    assert error_message(response) == "user 999 not found"
    assert_served_by(response, "legacy")
    assert row_counts(legacy_api) == counts


async def test_order_for_unknown_item_is_404(legacy_api: ApiClient) -> None:
    counts = row_counts(legacy_api)
    stock = stock_of(legacy_api, 1)
    response = await legacy_api.post("/orders", json=order_body(1, [(1, 1), (999, 1)]))
    details = assert_error(response, 404, "not_found")
    assert error_message(response) == "item 999 not found"
    assert details == {"entity": "item", "id": 999}
    assert row_counts(legacy_api) == counts
    assert stock_of(legacy_api, 1) == stock


async def test_order_beyond_stock_is_409_and_writes_nothing(legacy_api: ApiClient) -> None:
    counts = row_counts(legacy_api)
    stock = {item_id: stock_of(legacy_api, item_id) for item_id in (1, 2, 3)}
    lines = [(1, 1), (2, stock[2] + 1), (3, stock[3] + 5)]

    response = await legacy_api.post("/orders", json=order_body(1, lines))

    details = assert_error(response, 409, "conflict")
    assert error_message(response) == "not enough stock"
    assert details["shortages"] == [
        {"item_id": 2, "requested": stock[2] + 1, "available": stock[2]},
        {"item_id": 3, "requested": stock[3] + 5, "available": stock[3]},
    ]
    assert row_counts(legacy_api) == counts
    assert {item_id: stock_of(legacy_api, item_id) for item_id in stock} == stock
    ordered = await legacy_api.get("/users/1/orders")
    assert ordered.json()["total"] == len(seeded_order_ids_of(1))


async def test_order_rejects_invalid_body(legacy_api: ApiClient) -> None:
    counts = row_counts(legacy_api)
    cases: list[tuple[dict[str, object], list[str]]] = [
        (order_body(1, [(2, "1")]), ["body.lines.0.quantity"]),
        (order_body(1, [(2, True)]), ["body.lines.0.quantity"]),
        ({**order_body(1, [(2, 1)]), "coupon": "FREE"}, ["body.coupon"]),
        (order_body(1, []), ["body.lines"]),
        (order_body(1, [(2, 0)]), ["body.lines.0.quantity"]),
        (order_body(1, [(2, 1), (3, -2)]), ["body.lines.1.quantity"]),
        (order_body(1, [(2, 1001)]), ["body.lines.0.quantity"]),
        (order_body(1, [(0, 1)]), ["body.lines.0.item_id"]),
        (order_body(0, [(2, 1)]), ["body.user_id"]),
        ({"user_id": 1}, ["body.lines"]),
        ({"lines": [{"item_id": 1}]}, ["body.user_id", "body.lines.0.quantity"]),
    ]
    for payload, locations in cases:
        response = await legacy_api.post("/orders", json=payload)
        assert invalid_locations(response) == locations, payload
        assert_served_by(response, "legacy")
    assert row_counts(legacy_api) == counts


async def test_lines_naming_one_item_are_added_up(legacy_api: ApiClient) -> None:
    before = stock_of(legacy_api, 2)
    placed = await place(legacy_api, 1, [(2, 1), (3, 1), (2, 4)])
    assert [(line["item_id"], line["quantity"]) for line in placed["lines"]] == [(2, 5), (3, 1)]
    assert stock_of(legacy_api, 2) == before - 5


async def test_get_placed_order(legacy_api: ApiClient) -> None:
    placed = await place(legacy_api, 5, [(3, 2), (5, 1), (1, 4)])
    response = await legacy_api.get(f"/orders/{placed['id']}")
    assert response.status_code == 200
    assert_served_by(response, "legacy")
    assert response.json() == placed


async def test_get_seeded_order_matches_its_rows(legacy_api: ApiClient) -> None:
    order_id = 3
    stored = legacy_api.sync_connection.exec_driver_sql(
        "SELECT item_id, quantity, unit_price FROM order_lines WHERE order_id = %(id)s ORDER BY id",
        {"id": order_id},
    ).all()
    response = await legacy_api.get(f"/orders/{order_id}")
    assert response.status_code == 200
    order = response.json()
    assert order["id"] == order_id
    assert order["user_id"] == legacy_api.scalar("SELECT user_id FROM orders WHERE id = 3")
    assert lines_of(order) == [tuple(row) for row in stored]
    assert Decimal(order["total"]) == sum(quantity * price for _, quantity, price in stored)


async def test_get_unknown_order_is_404(legacy_api: ApiClient) -> None:
    response = await legacy_api.get("/orders/999")
    details = assert_error(response, 404, "not_found")
    assert error_message(response) == "order 999 not found"
    assert details == {"entity": "order", "id": 999}
    assert_served_by(response, "legacy")


async def test_get_order_rejects_bad_id(legacy_api: ApiClient) -> None:
    for order_id in ["0", str(2**31), "latest"]:
        response = await legacy_api.get(f"/orders/{order_id}")
        assert invalid_locations(response) == ["path.order_id"], order_id


async def test_list_user_orders(legacy_api: ApiClient) -> None:
    user_id = user_with_most_orders()
    expected = seeded_order_ids_of(user_id)
    response = await legacy_api.get(f"/users/{user_id}/orders")
    assert response.status_code == 200
    assert_served_by(response, "legacy")
    page = response.json()
    assert [order["id"] for order in page["items"]] == expected
    assert (page["total"], page["limit"], page["offset"]) == (len(expected), 20, 0)
    assert all(order["user_id"] == user_id and order["lines"] for order in page["items"])


async def test_list_user_orders_pages(legacy_api: ApiClient) -> None:
    user_id = user_with_most_orders()
    expected = seeded_order_ids_of(user_id)
    assert len(expected) > 2
    seen: list[int] = []
    for offset in range(0, len(expected), 2):
        response = await legacy_api.get(
            f"/users/{user_id}/orders", params={"limit": 2, "offset": offset}
        )
        page = response.json()
        assert page["total"] == len(expected)
        seen.extend(order["id"] for order in page["items"])
    assert seen == expected


async def test_list_user_orders_includes_new_order(legacy_api: ApiClient) -> None:
    placed = await place(legacy_api, 2, [(4, 1)])
    page = (await legacy_api.get("/users/2/orders")).json()
    assert page["items"][-1] == placed
    assert page["total"] == len(seeded_order_ids_of(2)) + 1


async def test_list_orders_of_user_without_orders_is_empty(legacy_api: ApiClient) -> None:
    user_id = next(n for n in range(1, TEST_SIZE.users + 1) if not seeded_order_ids_of(n))
    page = (await legacy_api.get(f"/users/{user_id}/orders")).json()
    assert (page["items"], page["total"]) == ([], 0)


async def test_list_orders_of_unknown_user_is_404(legacy_api: ApiClient) -> None:
    response = await legacy_api.get("/users/999/orders")
    assert_error(response, 404, "not_found")
    assert error_message(response) == "user 999 not found"
    assert_served_by(response, "legacy")


async def test_list_user_orders_rejects_bad_query(legacy_api: ApiClient) -> None:
    for params, location in [({"limit": 0}, "query.limit"), ({"offset": -1}, "query.offset")]:
        response = await legacy_api.get("/users/1/orders", params=params)
        assert invalid_locations(response) == [location], params
