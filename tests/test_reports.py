"""The legacy-only sales report, checked against an aggregate computed here in SQL."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.conftest import ApiClient, MakeApi
from tests.helpers import assert_served_by, invalid_locations

pytestmark = pytest.mark.anyio

SALES_SQL = """
    SELECT i.id, i.sku, i.name,
           count(DISTINCT l.order_id), sum(l.quantity), sum(l.quantity * l.unit_price)
    FROM order_lines AS l JOIN items AS i ON i.id = l.item_id
    GROUP BY i.id
"""

Row = tuple[int, str, str, int, int, Decimal]


def expected_sales(api: ApiClient) -> dict[int, Row]:
    rows = api.sync_connection.exec_driver_sql(SALES_SQL).all()
    return {row[0]: (row[0], row[1], row[2], row[3], row[4], row[5]) for row in rows}


def as_tuple(row: dict[str, Any]) -> Row:
    return (
        row["item_id"],
        row["sku"],
        row["name"],
        row["orders"],
        row["units_sold"],
        Decimal(row["revenue"]),
    )


async def sales(api: ApiClient, **params: object) -> list[Row]:
    response = await api.get("/reports/sales", params=params)
    assert response.status_code == 200, response.text
    assert_served_by(response, "legacy")
    return [as_tuple(row) for row in response.json()]


def assert_sorted_by_revenue(rows: list[Row]) -> None:
    keys = [(-row[5], row[0]) for row in rows]
    assert keys == sorted(keys)


async def test_report_matches_sql_aggregate(legacy_api: ApiClient) -> None:
    expected = expected_sales(legacy_api)
    rows = await sales(legacy_api)
    assert len(expected) > 1
    assert {row[0]: row for row in rows} == expected
    assert len(rows) == len(expected)
    assert_sorted_by_revenue(rows)


async def test_report_respects_limit(legacy_api: ApiClient) -> None:
    everything = await sales(legacy_api, limit=100)
    for limit in (1, 2, len(everything) - 1):
        assert await sales(legacy_api, limit=limit) == everything[:limit]


async def test_report_rejects_bad_limit(legacy_api: ApiClient) -> None:
    for limit in (0, 101, "all"):
        response = await legacy_api.get("/reports/sales", params={"limit": limit})
        assert invalid_locations(response) == ["query.limit"], limit


async def test_report_follows_a_new_order(legacy_api: ApiClient) -> None:
    before = {row[0]: row for row in await sales(legacy_api)}
    item_id, quantity = min(before, key=lambda key: before[key][5]), 9
    price = Decimal(str(legacy_api.scalar("SELECT price FROM items WHERE id = :id", id=item_id)))
    body = {"user_id": 2, "lines": [{"item_id": item_id, "quantity": quantity}]}
    placed = await legacy_api.post("/orders", json=body)
    assert placed.status_code == 201, placed.text

    after_rows = await sales(legacy_api)
    after = {row[0]: row for row in after_rows}
    _, sku, name, orders, units, revenue = before[item_id]
    assert after[item_id] == (
        item_id,
        sku,
        name,
        orders + 1,
        units + quantity,
        revenue + price * quantity,
    )
    assert {key: row for key, row in after.items() if key != item_id} == {
        key: row for key, row in before.items() if key != item_id
    }
    assert after == expected_sales(legacy_api)
    assert_sorted_by_revenue(after_rows)


async def test_report_lists_first_sale_of_unsold_item(legacy_api: ApiClient) -> None:
    created = await legacy_api.post(
        "/items", json={"sku": "FRESH-1", "name": "Fresh", "price": "9000.00", "stock": 5}
    )
    assert created.status_code == 201, created.text
    item_id = created.json()["id"]
    assert item_id not in {row[0] for row in await sales(legacy_api)}
    body = {"user_id": 1, "lines": [{"item_id": item_id, "quantity": 2}]}
    assert (await legacy_api.post("/orders", json=body)).status_code == 201
    top = (await sales(legacy_api, limit=1))[0]
    assert top == (item_id, "FRESH-1", "Fresh", 1, 2, Decimal("18000.00"))


async def test_report_is_served_by_legacy_when_async_is_the_default(make_api: MakeApi) -> None:
    async with make_api(impl="async") as api:
        assert {row[0]: row for row in await sales(api)} == expected_sales(api)
