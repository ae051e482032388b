"""The /admin control plane: who may change a route's mode, and which changes it refuses."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI

from demo.app import create_demo_app
from demo.settings import DemoSettings
from tests.helpers import IMPL_HEADER, assert_error, invalid_locations, serving

pytestmark = [pytest.mark.anyio, pytest.mark.version_independent]

USER_ROUTE = "GET /users/{user_id}"
ORDER_ROUTE = "GET /orders/{order_id}"
DOCUMENT_ROUTE = "GET /documents/{document_id}"
TOKENS = {"ops": "s3cret-ops-token", "deploy": "s3cret-deploy-token"}
OPS = {"Authorization": f"Bearer {TOKENS['ops']}"}
DEPLOY = {"Authorization": f"Bearer {TOKENS['deploy']}"}


READER = {"Authorization": "Bearer s3cret-reader-token"}
ADMIN_PATHS = ("/admin/routes", "/admin/routes/events", "/admin/shadow/mismatches")


def real_app(url: str, tokens: dict[str, str] | None = None, **settings: Any) -> FastAPI:
    values: dict[str, Any] = {
        "database_url": url,
        "log_level": "WARNING",
        "admin_tokens": TOKENS if tokens is None else tokens,
        "admin_read_tokens": {"reader": "s3cret-reader-token"} if tokens is None else {},
        **settings,
    }
    return create_demo_app(DemoSettings(**values))


def admin_path(key: str) -> str:
    return "/admin/routes/" + quote(key, safe="")


async def put_mode(
    client: httpx.AsyncClient, key: str, headers: dict[str, str] | None = None, **change: Any
) -> httpx.Response:
    sent = OPS if headers is None else headers
    return await client.put(admin_path(key), json=change, headers=sent)


async def nothing_changed(client: httpx.AsyncClient) -> None:
    events = await client.get("/admin/routes/events", headers=OPS)
    routes = await client.get("/admin/routes", headers=OPS)
    assert events.json() == []
    assert {route["changed_by"] for route in routes.json()} == {None}


def assert_no_token_shown(response: httpx.Response) -> None:
    for token in (*TOKENS.values(), "wrong-token-value"):
        assert token not in response.text


UNACCEPTED_AUTHORIZATIONS = [
    None,
    "Bearer wrong-token-value",
    "Bearer ",
    f"Basic {TOKENS['ops']}",
    f"Bearer {TOKENS['ops']}x",
    TOKENS["ops"],
]


async def test_writes_without_a_valid_token_are_unauthorized(committed_database: str) -> None:
    async with serving(real_app(committed_database), admin=False) as client:
        answers = {
            authorization: await put_mode(
                client,
                USER_ROUTE,
                headers={} if authorization is None else {"Authorization": authorization},
                mode="async",
            )
            for authorization in UNACCEPTED_AUTHORIZATIONS
        }
        await nothing_changed(client)
    for authorization, answer in answers.items():
        assert answer.status_code == 401, authorization
        assert_error(answer, 401, "unauthorized")
        assert_no_token_shown(answer)
        assert IMPL_HEADER not in answer.headers


async def test_without_tokens_the_admin_api_is_disabled(committed_database: str) -> None:
    async with serving(real_app(committed_database, tokens={}), admin=False) as client:
        write = await put_mode(client, USER_ROUTE, mode="async")
        reads = [await client.get(path, headers=OPS) for path in ADMIN_PATHS]
    assert_error(write, 403, "forbidden")
    assert "GATEWAY_ADMIN_TOKENS" in write.json()["error"]["message"]
    for read in reads:
        assert_error(read, 403, "forbidden")
        assert "GATEWAY_ADMIN_READ_TOKENS" in read.json()["error"]["message"]


@pytest.mark.parametrize("path", [*ADMIN_PATHS, "/admin/report?window=0.1", "/admin/openapi.json"])
async def test_reads_need_a_token(committed_database: str, path: str) -> None:
    async with serving(real_app(committed_database), admin=False) as client:
        anonymous = await client.get(path)
        wrong = await client.get(path, headers={"Authorization": "Bearer wrong-token-value"})
        read_only = await client.get(path, headers=READER)
    assert_error(anonymous, 401, "unauthorized")
    assert_error(wrong, 401, "unauthorized")
    assert read_only.status_code == 200, read_only.text
    assert not any(IMPL_HEADER in answer.headers for answer in (anonymous, read_only))
    for answer in (anonymous, wrong, read_only):
        assert_no_token_shown(answer)


async def test_a_read_only_token_cannot_change_a_mode(committed_database: str) -> None:
    async with serving(real_app(committed_database), admin=False) as client:
        refused = await put_mode(client, USER_ROUTE, headers=READER, mode="async")
        await nothing_changed(client)
    assert_error(refused, 403, "forbidden")
    assert refused.json()["error"]["message"] == "this admin token may only read"


async def test_the_admin_api_answers_in_its_own_shape_in_an_app_of_fastapis_shape(
    committed_database: str,
) -> None:
    app = real_app(committed_database, error_format="detail", map_database_errors=False)
    async with serving(app, admin=False) as client:
        refused = await client.get("/admin/routes")
        invalid = await put_mode(client, USER_ROUTE, mode="canary", percent=101)
        apps_own = await client.get("/users/99999")
    assert_error(refused, 401, "unauthorized")
    assert invalid_locations(invalid) == ["body.percent"]
    assert apps_own.status_code == 404
    assert set(apps_own.json()) == {"detail"}


async def test_a_report_window_beyond_the_setting_is_refused(committed_database: str) -> None:
    app = real_app(committed_database, admin_report_max_window=2)
    async with serving(app) as client:
        refused = await client.get("/admin/report", params={"window": 300})
    details = assert_error(refused, 422, "invalid_request")
    assert details == {"window": 300, "max_window": 2}
    assert "GATEWAY_ADMIN_REPORT_MAX_WINDOW" in refused.json()["error"]["message"]


async def test_each_token_is_recorded_by_its_name(committed_database: str) -> None:
    async with serving(real_app(committed_database)) as client:
        by_ops = await put_mode(client, USER_ROUTE, mode="canary", percent=5, reason="start")
        by_deploy = await put_mode(client, USER_ROUTE, headers=DEPLOY, mode="async", reason="done")
        events = (await client.get("/admin/routes/events")).json()

    assert by_ops.status_code == by_deploy.status_code == 200
    assert [event["actor"] for event in events] == ["deploy", "ops"]
    assert by_deploy.json()["event"]["actor"] == "deploy"
    assert by_deploy.json()["route"]["mode"] == "async"
    assert_no_token_shown(by_deploy)


async def test_the_route_key_travels_url_encoded(committed_database: str) -> None:
    keys = [USER_ROUTE, "PATCH /users/{user_id}", "GET /users"]
    async with serving(real_app(committed_database)) as client:
        answers = [await put_mode(client, key, mode="async") for key in keys]
        listed = (await client.get("/admin/routes")).json()

    routes = {route["route"]: route["mode"] for route in listed}
    assert admin_path(USER_ROUTE) == "/admin/routes/GET%20%2Fusers%2F%7Buser_id%7D"
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert [answer.json()["route"]["route"] for answer in answers] == keys
    assert all(routes[key] == "async" for key in keys)
    assert routes["GET /items/{item_id}"] == "legacy"


async def test_unknown_routes_are_not_found(committed_database: str) -> None:
    keys = ["GET /users/{id}", "GET /nowhere", "GET%20/users", "GET"]
    async with serving(real_app(committed_database)) as client:
        answers = {key: await put_mode(client, key, mode="async") for key in keys}
        await nothing_changed(client)
    for key, answer in answers.items():
        details = assert_error(answer, 404, "not_found")
        assert details["route"] == key
        assert USER_ROUTE in details["known"]


async def test_a_key_is_found_whatever_the_case_of_its_method(committed_database: str) -> None:
    async with serving(real_app(committed_database)) as client:
        answer = await put_mode(client, " get  /users/{user_id} ", mode="async")
    assert answer.status_code == 200, answer.text
    assert answer.json()["route"]["route"] == USER_ROUTE


INVALID_CHANGES: list[tuple[dict[str, Any], str]] = [
    ({"mode": "blue-green"}, "body.mode"),
    ({"mode": "canary"}, "body"),
    ({"mode": "canary", "percent": True}, "body.percent"),
    ({"mode": "canary", "percent": "50"}, "body.percent"),
    ({"mode": "legacy", "percent": 30}, "body"),
    ({"mode": "async", "primary": "async"}, "body"),
    ({"mode": "legacy", "colour": "red"}, "body.colour"),
    ({"mode": "canary", "percent": 101}, "body.percent"),
    ({"mode": "canary", "percent": -1}, "body.percent"),
    ({"mode": "canary", "percent": "half"}, "body.percent"),
    ({"mode": "shadow", "primary": "both"}, "body.primary"),
    ({"percent": 10}, "body.mode"),
]


async def test_invalid_changes_are_refused(committed_database: str) -> None:
    async with serving(real_app(committed_database)) as client:
        answers = [await put_mode(client, USER_ROUTE, **change) for change, _ in INVALID_CHANGES]
        await nothing_changed(client)
    for answer, (change, location) in zip(answers, INVALID_CHANGES, strict=True):
        details = assert_error(answer, 422, "invalid_request")
        assert [field["location"] for field in details["fields"]] == [location], change


MISSING_IMPLEMENTATION: list[tuple[str, dict[str, Any], str]] = [
    (ORDER_ROUTE, {"mode": "async"}, "async"),
    (ORDER_ROUTE, {"mode": "canary", "percent": 10}, "async"),
    (ORDER_ROUTE, {"mode": "shadow"}, "async"),
    (DOCUMENT_ROUTE, {"mode": "legacy"}, "legacy"),
    (DOCUMENT_ROUTE, {"mode": "shadow", "primary": "async"}, "legacy"),
]


async def test_modes_needing_a_missing_implementation_conflict(committed_database: str) -> None:
    async with serving(real_app(committed_database)) as client:
        answers = [
            await put_mode(client, key, **change) for key, change, _ in MISSING_IMPLEMENTATION
        ]
        await nothing_changed(client)
    for answer, (key, change, missing) in zip(answers, MISSING_IMPLEMENTATION, strict=True):
        details = assert_error(answer, 409, "conflict")
        assert f"no {missing} implementation" in answer.json()["error"]["message"], (key, change)
        assert details["missing_implementations"] == [missing]
        assert details["route"] == key


async def test_shadow_is_refused_for_writes(committed_database: str) -> None:
    async with serving(real_app(committed_database)) as client:
        answers = [
            await put_mode(client, key, mode="shadow")
            for key in ("POST /users", "PATCH /users/{user_id}", "DELETE /users/{user_id}")
        ]
        await nothing_changed(client)
    for answer in answers:
        assert_error(answer, 422, "invalid_request")
        assert "only for safe methods (GET, HEAD)" in answer.json()["error"]["message"]


async def test_a_change_answers_with_the_route_and_its_event(committed_database: str) -> None:
    async with serving(real_app(committed_database)) as client:
        answer = await put_mode(client, USER_ROUTE, mode="shadow", primary="async", reason="look")
    body = answer.json()
    assert answer.status_code == 200, answer.text
    assert set(body) == {"route", "event"}
    assert body["route"]["route"] == USER_ROUTE
    assert (body["route"]["mode"], body["route"]["primary"]) == ("shadow", "async")
    assert body["route"]["serves"] == "async"
    event = body["event"]
    assert event["route"] == USER_ROUTE
    assert (event["old_mode"], event["new_mode"]) == ("legacy", "shadow")
    assert (event["actor"], event["reason"], event["primary_impl"]) == ("ops", "look", "async")
    assert event["at"]


async def test_event_listing_validates_its_limit(committed_database: str) -> None:
    async with serving(real_app(committed_database)) as client:
        too_small = await client.get("/admin/routes/events", params={"limit": 0})
        too_large = await client.get("/admin/routes/events", params={"limit": 1001})
    assert assert_error(too_small, 422, "invalid_request")["fields"][0]["location"] == "query.limit"
    assert assert_error(too_large, 422, "invalid_request")["fields"][0]["location"] == "query.limit"
