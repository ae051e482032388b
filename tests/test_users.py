"""The /users routes, each run against both the legacy and the async implementation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from shared_models.seed import user_row
from tests.conftest import TEST_SIZE, ApiClient
from tests.helpers import (
    assert_error,
    assert_served_by,
    error_message,
    invalid_locations,
    scalar_int,
)

pytestmark = pytest.mark.anyio

SEEDED_IDS = list(range(1, TEST_SIZE.users + 1))
DUPLICATE_EMAIL = "a user with this email already exists"


def seeded_ids_where(keep: Any) -> list[int]:
    return [n for n in SEEDED_IDS if keep(user_row(n))]


def user_id_without_orders(api: ApiClient) -> int:
    query = "SELECT min(id) FROM users WHERE id NOT IN (SELECT user_id FROM orders)"
    return scalar_int(api, query)


def user_id_with_orders(api: ApiClient) -> int:
    return scalar_int(api, "SELECT min(user_id) FROM orders")


async def list_ids(api: ApiClient, **params: object) -> tuple[list[int], int]:
    response = await api.get("/users", params=params)
    assert response.status_code == 200, response.text
    page = response.json()
    return [user["id"] for user in page["items"]], page["total"]


async def test_list_users_is_ordered_by_id(api: ApiClient, impl: str) -> None:
    response = await api.get("/users", params={"limit": 100})
    assert response.status_code == 200
    assert_served_by(response, impl)
    page = response.json()
    assert [user["id"] for user in page["items"]] == SEEDED_IDS
    assert page["total"] == TEST_SIZE.users
    assert (page["limit"], page["offset"]) == (100, 0)
    first = page["items"][0]
    assert {key: first[key] for key in ("id", "email", "name", "is_active")} == user_row(1)


async def test_list_users_default_page(api: ApiClient) -> None:
    response = await api.get("/users")
    page = response.json()
    assert (page["limit"], page["offset"]) == (20, 0)
    assert len(page["items"]) == min(20, TEST_SIZE.users)


@pytest.mark.parametrize(("limit", "offset"), [(5, 0), (5, 5), (5, 10), (3, 11), (4, 50)])
async def test_list_users_pages(api: ApiClient, limit: int, offset: int) -> None:
    response = await api.get("/users", params={"limit": limit, "offset": offset})
    page = response.json()
    assert [user["id"] for user in page["items"]] == SEEDED_IDS[offset : offset + limit]
    assert page["total"] == TEST_SIZE.users
    assert (page["limit"], page["offset"]) == (limit, offset)


@pytest.mark.parametrize("q", ["HOPPER", "grace", "USER1", "example.COM", "nobody-matches"])
async def test_list_users_filters_name_and_email_ignoring_case(api: ApiClient, q: str) -> None:
    needle = q.lower()
    expected = seeded_ids_where(
        lambda row: needle in str(row["name"]).lower() or needle in str(row["email"]).lower()
    )
    ids, total = await list_ids(api, q=q, limit=100)
    assert ids == expected
    assert total == len(expected)


@pytest.mark.parametrize("active", [True, False])
async def test_list_users_filters_active(api: ApiClient, active: bool) -> None:
    expected = seeded_ids_where(lambda row: row["is_active"] is active)
    ids, total = await list_ids(api, active=str(active).lower(), limit=100)
    assert ids == expected
    assert total == len(expected)


async def test_list_users_matches_wildcard_characters_literally(api: ApiClient) -> None:
    for q in ("_", "%", "user_", "Gr%ce"):
        assert await list_ids(api, q=q) == ([], 0), q


async def test_list_users_combines_filters_and_paging(api: ApiClient) -> None:
    expected = seeded_ids_where(
        lambda row: "hopper" in str(row["name"]).lower() and row["is_active"]
    )
    ids, total = await list_ids(api, q="hopper", active="true", limit=2, offset=1)
    assert ids == expected[1:3]
    assert total == len(expected)


BAD_LIST_QUERIES: list[tuple[dict[str, object], str]] = [
    ({"limit": 0}, "query.limit"),
    ({"limit": 101}, "query.limit"),
    ({"offset": -1}, "query.offset"),
    ({"limit": "many"}, "query.limit"),
    ({"q": ""}, "query.q"),
    ({"active": "maybe"}, "query.active"),
]


async def test_list_users_rejects_bad_query(api: ApiClient, impl: str) -> None:
    for params, location in BAD_LIST_QUERIES:
        response = await api.get("/users", params=params)
        assert invalid_locations(response) == [location], params
        assert_served_by(response, impl)


async def test_get_user(api: ApiClient, impl: str) -> None:
    response = await api.get("/users/3")
    assert response.status_code == 200
    assert_served_by(response, impl)
    body = response.json()
    assert {key: body[key] for key in ("id", "email", "name", "is_active")} == user_row(3)
    assert datetime.fromisoformat(body["created_at"]).tzinfo is not None


@pytest.mark.parametrize("user_id", [TEST_SIZE.users + 1, 2**31 - 1])
async def test_get_unknown_user_is_404(api: ApiClient, impl: str, user_id: int) -> None:
    response = await api.get(f"/users/{user_id}")
    details = assert_error(response, 404, "not_found")
    assert error_message(response) == f"user {user_id} not found"
    assert details == {"entity": "user", "id": user_id}
    assert_served_by(response, impl)


async def test_get_user_rejects_bad_id(api: ApiClient, impl: str) -> None:
    for user_id in ["0", "-1", str(2**31), "abc", "1.5"]:
        response = await api.get(f"/users/{user_id}")
        assert invalid_locations(response) == ["path.user_id"], user_id
        assert_served_by(response, impl)


async def test_create_user(api: ApiClient, impl: str) -> None:
    next_id = scalar_int(api, "SELECT max(id) + 1 FROM users")
    payload = {"email": "new.person@example.org", "name": "New Person"}
    response = await api.post("/users", json=payload)
    assert response.status_code == 201, response.text
    assert_served_by(response, impl)
    created = response.json()
    assert created["id"] == next_id
    assert created["email"] == payload["email"]
    assert created["name"] == payload["name"]
    assert created["is_active"] is True
    assert datetime.fromisoformat(created["created_at"]).tzinfo is not None
    fetched = await api.get(f"/users/{next_id}")
    assert fetched.json() == created


async def test_create_inactive_user(api: ApiClient) -> None:
    payload = {"email": "dormant@example.org", "name": "Dormant", "is_active": False}
    response = await api.post("/users", json=payload)
    assert response.status_code == 201, response.text
    assert response.json()["is_active"] is False


async def test_create_user_with_taken_email_is_409(api: ApiClient, impl: str) -> None:
    response = await api.post("/users", json={"email": "user2@example.com", "name": "Twin"})
    details = assert_error(response, 409, "conflict")
    assert error_message(response) == DUPLICATE_EMAIL
    assert details == {"constraint": "uq_users_email"}
    assert_served_by(response, impl)
    _, total = await list_ids(api)
    assert total == TEST_SIZE.users


INVALID_CREATE_BODIES: list[tuple[dict[str, object], str]] = [
    ({"email": "not-an-email", "name": "X"}, "body.email"),
    ({"email": "a b@example.com", "name": "X"}, "body.email"),
    ({"email": "x@example.com", "name": ""}, "body.name"),
    ({"email": "x@example.com", "name": "n" * 101}, "body.name"),
    ({"name": "No Email"}, "body.email"),
    ({"email": "x@example.com"}, "body.name"),
    ({"email": "x@example.com", "name": 42}, "body.name"),
    ({"email": "x@example.com", "name": "X", "is_active": "sometimes"}, "body.is_active"),
]


async def test_create_user_rejects_invalid_body(api: ApiClient, impl: str) -> None:
    for payload, location in INVALID_CREATE_BODIES:
        response = await api.post("/users", json=payload)
        assert invalid_locations(response) == [location], payload
        assert_served_by(response, impl)
    _, total = await list_ids(api)
    assert total == TEST_SIZE.users


async def test_create_user_rejects_non_object_body(api: ApiClient) -> None:
    response = await api.post("/users", json=["user@example.com"])
    assert_error(response, 422, "invalid_request")


async def test_patch_user_changes_only_given_fields(api: ApiClient, impl: str) -> None:
    response = await api.patch("/users/4", json={"name": "Renamed Four"})
    assert response.status_code == 200, response.text
    assert_served_by(response, impl)
    updated = response.json()
    assert updated["name"] == "Renamed Four"
    assert updated["email"] == user_row(4)["email"]
    assert updated["is_active"] is True
    fetched = await api.get("/users/4")
    assert fetched.json() == updated


async def test_patch_user_email_and_active(api: ApiClient) -> None:
    changes = {"email": "four@example.net", "is_active": False}
    response = await api.patch("/users/4", json=changes)
    assert response.status_code == 200, response.text
    assert {key: response.json()[key] for key in changes} == changes
    ids, _ = await list_ids(api, q="four@example.net")
    assert ids == [4]


async def test_patch_unknown_user_is_404(api: ApiClient, impl: str) -> None:
    response = await api.patch("/users/999", json={"name": "Ghost"})
    assert_error(response, 404, "not_found")
    assert error_message(response) == "user 999 not found"
    assert_served_by(response, impl)


async def test_patch_with_empty_body_is_422(api: ApiClient, impl: str) -> None:
    response = await api.patch("/users/4", json={})
    assert_error(response, 422, "invalid_request")
    assert_served_by(response, impl)


@pytest.mark.parametrize(
    ("payload", "location"),
    [({"email": "broken"}, "body.email"), ({"name": ""}, "body.name")],
)
async def test_patch_rejects_invalid_fields(
    api: ApiClient, payload: dict[str, object], location: str
) -> None:
    response = await api.patch("/users/4", json=payload)
    assert invalid_locations(response) == [location]


async def test_patch_rejects_null_for_required_fields(api: ApiClient, impl: str) -> None:
    for field in ("email", "name", "is_active"):
        response = await api.patch("/users/4", json={field: None})
        assert invalid_locations(response) == [f"body.{field}"], field
        assert_served_by(response, impl)


async def test_patch_to_taken_email_is_409(api: ApiClient, impl: str) -> None:
    response = await api.patch("/users/4", json={"email": "user5@example.com"})
    assert_error(response, 409, "conflict")
    assert error_message(response) == DUPLICATE_EMAIL
    assert_served_by(response, impl)
    fetched = await api.get("/users/4")
    assert fetched.json()["email"] == user_row(4)["email"]


async def test_delete_user(api: ApiClient, impl: str) -> None:
    user_id = user_id_without_orders(api)
    response = await api.delete(f"/users/{user_id}")
    assert response.status_code == 204
    assert response.content == b""
    assert_served_by(response, impl)
    gone = await api.get(f"/users/{user_id}")
    assert_error(gone, 404, "not_found")
    again = await api.delete(f"/users/{user_id}")
    assert_error(again, 404, "not_found")


async def test_delete_unknown_user_is_404(api: ApiClient, impl: str) -> None:
    response = await api.delete("/users/999")
    assert_error(response, 404, "not_found")
    assert error_message(response) == "user 999 not found"
    assert_served_by(response, impl)


async def test_delete_user_with_orders_is_409(api: ApiClient, impl: str) -> None:
    user_id = user_id_with_orders(api)
    response = await api.delete(f"/users/{user_id}")
    assert_error(response, 409, "conflict")
    assert error_message(response) == "the user has orders and cannot be deleted"
    assert_served_by(response, impl)
    still_there = await api.get(f"/users/{user_id}")
    assert still_there.status_code == 200


async def test_delete_user_rejects_bad_id(api: ApiClient) -> None:
    response = await api.delete("/users/0")
    assert invalid_locations(response) == ["path.user_id"]
