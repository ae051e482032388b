"""The /items routes, each run against both the legacy and the async implementation."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from shared_models.seed import item_row
from tests.conftest import TEST_SIZE, ApiClient
from tests.helpers import (
    assert_error,
    assert_served_by,
    error_message,
    invalid_locations,
    scalar_int,
)

pytestmark = pytest.mark.anyio

SEEDED_IDS = list(range(1, TEST_SIZE.items + 1))


def new_item(sku: str, **overrides: object) -> dict[str, object]:
    values: dict[str, object] = {"sku": sku, "name": f"Item {sku}", "price": "12.50", "stock": 4}
    values.update(overrides)
    return values


def as_row(item: dict[str, Any]) -> dict[str, object]:
    """An item of a response, comparable with `item_row`."""
    fields = {key: item[key] for key in ("id", "sku", "name", "stock")}
    return {**fields, "price": Decimal(item["price"])}


async def list_ids(api: ApiClient, **params: object) -> tuple[list[int], int]:
    response = await api.get("/items", params=params)
    assert response.status_code == 200, response.text
    page = response.json()
    return [item["id"] for item in page["items"]], page["total"]


async def test_list_items(api: ApiClient, impl: str) -> None:
    response = await api.get("/items")
    assert response.status_code == 200
    assert_served_by(response, impl)
    page = response.json()
    assert [as_row(item) for item in page["items"]] == [item_row(n) for n in SEEDED_IDS]
    assert (page["total"], page["limit"], page["offset"]) == (TEST_SIZE.items, 20, 0)


@pytest.mark.parametrize(("limit", "offset"), [(2, 0), (2, 2), (4, 4), (3, 10)])
async def test_list_items_pages(api: ApiClient, limit: int, offset: int) -> None:
    ids, total = await list_ids(api, limit=limit, offset=offset)
    assert ids == SEEDED_IDS[offset : offset + limit]
    assert total == TEST_SIZE.items


@pytest.mark.parametrize("q", ["POOL", "kit", "Kit 3", "vEcToR", "absent"])
async def test_list_items_filters_name_ignoring_case(api: ApiClient, q: str) -> None:
    expected = [n for n in SEEDED_IDS if q.lower() in str(item_row(n)["name"]).lower()]
    ids, total = await list_ids(api, q=q)
    assert ids == expected
    assert total == len(expected)


async def test_list_items_matches_wildcard_characters_literally(api: ApiClient) -> None:
    for q in ("_", "%", "kit_1"):
        assert await list_ids(api, q=q) == ([], 0), q


async def test_list_items_does_not_search_sku(api: ApiClient) -> None:
    ids, total = await list_ids(api, q="SKU-0000")
    assert (ids, total) == ([], 0)


async def test_list_items_filters_stock(api: ApiClient) -> None:
    sold_out = await api.post("/items", json=new_item("SOLD-OUT", stock=0))
    assert sold_out.status_code == 201, sold_out.text
    sold_out_id = sold_out.json()["id"]
    in_stock, in_stock_total = await list_ids(api, in_stock="true")
    assert in_stock == SEEDED_IDS
    assert in_stock_total == TEST_SIZE.items
    assert await list_ids(api, in_stock="false") == ([sold_out_id], 1)
    assert await list_ids(api, in_stock="false", q="kit") == ([], 0)


async def test_list_items_rejects_bad_query(api: ApiClient, impl: str) -> None:
    cases: list[tuple[dict[str, object], str]] = [
        ({"limit": 0}, "query.limit"),
        ({"limit": 101}, "query.limit"),
        ({"offset": -1}, "query.offset"),
        ({"in_stock": "plenty"}, "query.in_stock"),
        ({"q": "x" * 101}, "query.q"),
    ]
    for params, location in cases:
        response = await api.get("/items", params=params)
        assert invalid_locations(response) == [location], params
        assert_served_by(response, impl)


async def test_get_item(api: ApiClient, impl: str) -> None:
    response = await api.get("/items/5")
    assert response.status_code == 200
    assert_served_by(response, impl)
    assert as_row(response.json()) == item_row(5)
    assert datetime.fromisoformat(response.json()["created_at"]).tzinfo is not None


async def test_get_unknown_item_is_404(api: ApiClient, impl: str) -> None:
    response = await api.get("/items/999")
    details = assert_error(response, 404, "not_found")
    assert error_message(response) == "item 999 not found"
    assert details == {"entity": "item", "id": 999}
    assert_served_by(response, impl)


async def test_get_item_rejects_bad_id(api: ApiClient, impl: str) -> None:
    for item_id in ["0", "-3", str(2**31), "first"]:
        response = await api.get(f"/items/{item_id}")
        assert invalid_locations(response) == ["path.item_id"], item_id
        assert_served_by(response, impl)


async def test_create_item(api: ApiClient, impl: str) -> None:
    next_id = scalar_int(api, "SELECT max(id) + 1 FROM items")
    payload = new_item("NEW-42", name="Brand new", price="19.99", stock=7)
    response = await api.post("/items", json=payload)
    assert response.status_code == 201, response.text
    assert_served_by(response, impl)
    created = response.json()
    expected = {**payload, "id": next_id, "price": Decimal("19.99")}
    assert as_row(created) == expected
    assert datetime.fromisoformat(created["created_at"]).tzinfo is not None
    fetched = await api.get(f"/items/{next_id}")
    assert fetched.json() == created


async def test_create_free_item_with_whole_price(api: ApiClient) -> None:
    response = await api.post("/items", json=new_item("FREE-1", price=0, stock=0))
    assert response.status_code == 201, response.text
    assert Decimal(response.json()["price"]) == 0


@pytest.mark.parametrize(
    ("price", "stored"),
    [("9999999999.99", "9999999999.99"), (9999999999, "9999999999.00"), (7.0, "7.00")],
)
async def test_prices_take_decimal_strings_and_whole_numbers(
    api: ApiClient, price: object, stored: str
) -> None:
    response = await api.post("/items", json=new_item("PRICED-1", price=price))
    assert response.status_code == 201, response.text
    assert response.json()["price"] == stored


async def test_create_item_with_taken_sku_is_409(api: ApiClient, impl: str) -> None:
    response = await api.post("/items", json=new_item(str(item_row(2)["sku"])))
    details = assert_error(response, 409, "conflict")
    assert error_message(response) == "an item with this sku already exists"
    assert details == {"constraint": "uq_items_sku"}
    assert_served_by(response, impl)
    assert (await list_ids(api))[1] == TEST_SIZE.items


async def test_create_item_rejects_invalid_body(api: ApiClient, impl: str) -> None:
    cases: list[tuple[dict[str, object], str]] = [
        (new_item("NEG-1", price="-0.01"), "body.price"),
        (new_item("FINE-1", price="1.234"), "body.price"),
        (new_item("FINE-2", price=1.005), "body.price"),
        (new_item("lower-case"), "body.sku"),
        (new_item("HAS SPACE"), "body.sku"),
        (new_item(""), "body.sku"),
        (new_item("S" * 33), "body.sku"),
        (new_item("NEG-2", stock=-1), "body.stock"),
        (new_item("NAMELESS", name=""), "body.name"),
        ({"sku": "NO-PRICE", "name": "No price", "stock": 1}, "body.price"),
    ]
    for payload, location in cases:
        response = await api.post("/items", json=payload)
        assert invalid_locations(response) == [location], payload
        assert_served_by(response, impl)
    assert (await list_ids(api))[1] == TEST_SIZE.items
