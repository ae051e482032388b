"""Which implementation a request gets: per-route sticky keys, and an admin forcing one."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from fastapi import FastAPI

from demo.app import create_demo_app
from demo.settings import DemoSettings
from gateway.errors import ConfigurationError, Forbidden
from gateway.routing.forcing import Forcing
from gateway.routing.modes import RouteMode
from gateway.routing.stickiness import InvalidStickyKeys, sticky_reader
from gateway.routing.table import RouteTable
from gateway.routing.targeting import RequestReader
from gateway.settings import InvalidSettings, Settings, load_settings
from tests.conftest import gateway_records
from tests.helpers import IMPL_HEADER, assert_error, serving

pytestmark = [pytest.mark.anyio, pytest.mark.version_independent]

USERS = "GET /users"
USER = "GET /users/{user_id}"
ITEMS = "GET /items"
ITEM = "GET /items/{item_id}"
ORDER = "GET /orders/{order_id}"
DOCUMENT = "GET /documents/{document_id}"
STICKY_KEYS = {
    USER: "path:user_id",
    ITEMS: "query:q",
    USERS: "cookie:session",
    "*": "header:X-Tenant",
}
TOKENS = {"ops": "s3cret-ops-token"}
READ_TOKENS = {"viewer": "s3cret-viewer-token"}
FORCE = "X-Gateway-Force-Impl"
TOKEN = "X-Gateway-Admin-Token"
NEVER_JUDGED = 10**9
UNUSED_URL = "postgresql://unused@127.0.0.1/unused"

Asked = tuple[str, dict[str, str]]  # path and query, headers
ASK: dict[str, Callable[[str], Asked]] = {
    USER: lambda key: (f"/users/{key}", {}),
    ITEMS: lambda key: ("/items?" + urlencode({"limit": 1, "q": key}), {}),
    USERS: lambda key: ("/users?limit=1", {"Cookie": f"theme=dark; session={key}"}),
    ITEM: lambda key: ("/items/1", {"X-Tenant": key}),
}


def real_app(url: str, **overrides: Any) -> FastAPI:
    values: dict[str, Any] = {
        "database_url": url,
        "log_level": "WARNING",
        "admin_tokens": TOKENS,
        "admin_read_tokens": READ_TOKENS,
        "rollback_min_requests": NEVER_JUDGED,
        "sticky_keys": STICKY_KEYS,
        **overrides,
    }
    return create_demo_app(DemoSettings(**values))


async def set_mode(client: httpx.AsyncClient, key: str, **change: Any) -> None:
    response = await client.put("/admin/routes/" + quote(key, safe=""), json=change)
    assert response.status_code == 200, response.text


async def served(client: httpx.AsyncClient, asked: Asked) -> str:
    path, headers = asked
    response = await client.get(path, headers=headers)
    assert response.status_code in {200, 404}, response.text
    return response.headers[IMPL_HEADER]


def forced(impl: str, token: str | None = TOKENS["ops"]) -> dict[str, str]:
    return {FORCE: impl} if token is None else {FORCE: impl, TOKEN: token}


def route_keys(route: str, count: int) -> list[str]:
    if route == USER:
        return [str(n) for n in range(1, count + 1)]
    run = uuid.uuid4().hex[:6]
    return [f"client {run}/{n}" if route == ITEMS else f"client-{run}-{n}" for n in range(count)]


@pytest.fixture
def info_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The gateway's log records from INFO up."""
    with gateway_records(caplog, logging.INFO) as records:
        yield records


# -- stickiness per route ---------------------------------------------------------------------


@pytest.mark.parametrize("route", [USER, ITEMS, USERS, ITEM])
async def test_each_route_reads_its_own_sticky_key(committed_database: str, route: str) -> None:
    keys = route_keys(route, 60)
    async with serving(real_app(committed_database)) as client:
        await set_mode(client, route, mode="canary", percent=50)
        first = [await served(client, ASK[route](key)) for key in keys]
        again = [await served(client, ASK[route](key)) for key in keys]

    canary = RouteMode(mode="canary", percent=50)
    assert first == again == [canary.choose(key, route) for key in keys]
    assert set(first) == {"legacy", "async"}


@pytest.mark.parametrize(
    ("route", "asked"),
    [
        (USERS, ("/users?limit=1", {})),
        (USERS, ("/users?limit=1", {"Cookie": "session="})),
        (ITEMS, ("/items?limit=1", {})),
        (ITEM, ("/items/1", {"X-Gateway-Sticky-Key": "one-key"})),  # `*` names another header
    ],
)
async def test_without_its_key_a_request_draws_a_random_bucket(
    committed_database: str, route: str, asked: Asked
) -> None:
    async with serving(real_app(committed_database)) as client:
        await set_mode(client, route, mode="canary", percent=50)
        answers = [await served(client, asked) for _ in range(120)]
    assert 0.3 < answers.count("async") / len(answers) < 0.7


async def test_two_routes_at_20_percent_put_different_users_on_async(
    committed_database: str,
) -> None:
    users = route_keys(ITEM, 300)
    same_cookie = {USER: "cookie:session", ITEM: "cookie:session"}
    async with serving(real_app(committed_database, sticky_keys=same_cookie)) as client:
        for route in (USER, ITEM):
            await set_mode(client, route, mode="canary", percent=20)
        on_users, on_items = set(), set()
        for user in users:
            cookie = {"Cookie": f"session={user}"}
            if await served(client, ("/users/1", cookie)) == "async":
                on_users.add(user)
            if await served(client, ("/items/1", cookie)) == "async":
                on_items.add(user)

    assert 0.12 < len(on_users) / len(users) < 0.28
    assert 0.12 < len(on_items) / len(users) < 0.28
    assert len(on_users & on_items) < len(on_users) / 2  # the same users would overlap fully


@pytest.mark.parametrize(
    ("sticky_keys", "expected"),
    [
        (
            {"GET /user/{user_id}": "header:X-User"},
            "no such route (did you mean GET /users/{user_id}?)",
        ),
        ({"PATCH /items": "header:X-User"}, "PATCH /items: the app has no such route"),
        ({USER: "path:id"}, "GET /users/{user_id}: path:id, but its path has no {id}"),
        ({"*": "path:user_id"}, "GET /items: path:user_id (from *), but its path has no {user_id}"),
    ],
)
def test_sticky_keys_that_cannot_apply_stop_the_start(
    sticky_keys: dict[str, str], expected: str
) -> None:
    with pytest.raises(InvalidStickyKeys) as refused:
        create_demo_app(DemoSettings(database_url=UNUSED_URL, sticky_keys=sticky_keys))
    assert isinstance(refused.value, ConfigurationError)
    assert "GATEWAY_STICKY_KEYS" in str(refused.value)
    assert expected in str(refused.value)


def test_sticky_keys_name_routes_as_written_in_any_case() -> None:
    app = create_demo_app(
        DemoSettings(database_url=UNUSED_URL, sticky_keys={"get  /users/{user_id}": "path:user_id"})
    )
    table: RouteTable = app.state.route_table
    assert table.sticky[USER].source == "path:user_id"
    assert table.sticky[ITEM].source == "header:X-Gateway-Sticky-Key"


@pytest.mark.parametrize("source", ["qurey:q", "header:", "header:X Tenant", "path:1st", "cookie"])
def test_a_malformed_sticky_source_is_an_invalid_setting(source: str) -> None:
    with pytest.raises(InvalidSettings) as refused:
        load_settings(Settings, sticky_keys={USER: source})
    message = str(refused.value)
    assert "GATEWAY_STICKY_KEYS" in message and repr(source) in message
    assert "header:NAME, cookie:NAME, path:PARAM or query:PARAM" in message


def test_sticky_readers_find_the_key_where_the_source_says() -> None:
    scope = {
        "path_params": {"user_id": 7},
        "query_string": b"limit=2&q=caf%C3%A9+au+lait&q=second",
        "headers": [],
    }
    headers = {b"x-tenant": b"acme", b"cookie": b"a=1; session=s-42"}
    read = {
        source: sticky_reader(source).read(scope, headers)
        for source in ("header:X-Tenant", "cookie:session", "path:user_id", "query:q", "query:x")
    }
    assert read == {
        "header:X-Tenant": "acme",
        "cookie:session": "s-42",
        "path:user_id": "7",
        "query:q": "café au lait",
        "query:x": None,
    }


# -- forcing an implementation ----------------------------------------------------------------


@pytest.mark.parametrize("token", [TOKENS["ops"], READ_TOKENS["viewer"]])
async def test_an_admin_token_forces_either_implementation(
    committed_database: str, token: str
) -> None:
    async with serving(real_app(committed_database)) as client:
        by_default = await client.get("/users/1")
        to_async = await client.get("/users/1", headers=forced("async", token))
        await set_mode(client, USER, mode="async")
        to_legacy = await client.get("/users/1", headers=forced("Legacy", token))
        token_alone = await client.get("/users/1", headers={TOKEN: token})

    assert by_default.headers[IMPL_HEADER] == "legacy"
    assert to_async.status_code == 200 and to_async.headers[IMPL_HEADER] == "async"
    assert to_legacy.status_code == 200 and to_legacy.headers[IMPL_HEADER] == "legacy"
    assert to_async.json() == to_legacy.json() == by_default.json()
    assert token_alone.headers[IMPL_HEADER] == "async"


async def test_forced_requests_skip_the_canary_guard_and_are_logged_by_token_name(
    committed_database: str, info_log: pytest.LogCaptureFixture
) -> None:
    app = real_app(committed_database, log_level="INFO")
    table: RouteTable = app.state.route_table
    judged: list[str] = []
    table.guard.record = lambda key, impl, status, seconds: judged.append(impl)  # type: ignore[method-assign]
    async with serving(app) as client:
        await set_mode(client, USER, mode="canary", percent=50)
        plain = [await client.get("/users/1", headers={"X-Tenant": str(n)}) for n in range(10)]
        forced_answers = [await client.get("/users/1", headers=forced("async")) for _ in range(10)]

    assert len(judged) == len(plain)
    assert {answer.headers[IMPL_HEADER] for answer in forced_answers} == {"async"}
    lines = [r.getMessage() for r in info_log.records if r.name == "gateway.routing.forcing"]
    assert lines == ["GET /users/{user_id}: async forced by admin token 'ops'"] * 10
    assert TOKENS["ops"] not in info_log.text


@pytest.mark.parametrize(
    ("path", "headers", "status", "code"),
    [
        ("/users/1", forced("async", token=None), 403, "forbidden"),
        ("/users/1", forced("async", token="not-a-token"), 403, "forbidden"),
        ("/users/1", forced("async", token=""), 403, "forbidden"),
        ("/users/1", forced("sideways", token=None), 403, "forbidden"),
        ("/users/1", forced("sideways"), 422, "invalid_request"),
        ("/users/1", forced(""), 422, "invalid_request"),
        ("/orders/1", forced("async"), 409, "conflict"),
        ("/documents/1", forced("legacy"), 409, "conflict"),
    ],
)
async def test_a_force_header_is_refused_never_ignored(
    committed_database: str, path: str, headers: dict[str, str], status: int, code: str
) -> None:
    async with serving(real_app(committed_database), admin=False) as client:
        answer = await client.get(path, headers=headers)
    details = assert_error(answer, status, code)
    assert IMPL_HEADER not in answer.headers
    assert FORCE in answer.json()["error"]["message"] or status == 409
    assert "s3cret" not in answer.text and "not-a-token" not in answer.text
    if status == 409:
        assert details["route"] in {ORDER, DOCUMENT}


async def test_refusals_keep_the_apps_error_format_and_header_names_are_settings(
    committed_database: str,
) -> None:
    app = real_app(
        committed_database,
        error_format="detail",
        force_impl_header="X-Try",
        admin_token_header="X-Admin",
    )
    async with serving(app, admin=False) as client:
        conflict = await client.get(
            "/orders/1", headers={"X-Try": "async", "X-Admin": "s3cret-ops-token"}
        )
        forbidden = await client.get("/users/1", headers={"X-Try": "async"})
        default_names = await client.get("/users/1", headers=forced("async"))
        renamed = await client.get(
            "/users/1", headers={"X-Try": "async", "X-Admin": "s3cret-ops-token"}
        )

    assert conflict.status_code == 409
    assert conflict.json() == {
        "detail": "GET /orders/{order_id} has no async implementation to force"
    }
    assert forbidden.status_code == 403
    assert forbidden.json() == {"detail": "X-Try needs a valid admin token in X-Admin"}
    assert default_names.headers[IMPL_HEADER] == "legacy"
    assert renamed.headers[IMPL_HEADER] == "async"


async def test_without_admin_tokens_nothing_can_be_forced(committed_database: str) -> None:
    app = real_app(committed_database, admin_tokens={}, admin_read_tokens={})
    async with serving(app, admin=False) as client:
        answer = await client.get("/users/1", headers=forced("async"))
    assert_error(answer, 403, "forbidden")


def test_the_implementation_never_sees_the_admin_token() -> None:
    forcing = Forcing(FORCE, TOKEN, {"good-token": "ops"}.get)
    sticky = sticky_reader("header:X-Tenant")
    reader = RequestReader(USER, {"legacy", "async"}, sticky, forcing)
    scope = {
        "headers": [
            (b"x-gateway-force-impl", b"async"),
            (b"x-gateway-admin-token", b"good-token"),
            (b"x-tenant", b"acme"),
            (b"accept", b"*/*"),
        ]
    }
    headers = reader.headers(scope)
    assert set(headers) == {b"x-gateway-force-impl", b"x-gateway-admin-token", b"x-tenant"}
    assert reader.sticky_key(scope, headers) == "acme"
    assert reader.forced(scope, headers) == "async"
    assert [name for name, _ in scope["headers"]] == [
        b"x-gateway-force-impl",
        b"x-tenant",
        b"accept",
    ]
    assert reader.forced({"headers": []}, {}) is None
    with pytest.raises(Forbidden):
        reader.forced(scope, {b"x-gateway-force-impl": b"async", b"x-gateway-admin-token": b"bad"})
