"""Route modes on a real app: canary split and stickiness, fixed modes, persistence and events."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from demo.app import create_demo_app
from demo.settings import DemoSettings
from gateway.database.engines import sync_url
from gateway.errors import Conflict
from gateway.routing.modes import BUCKETS, RouteMode, bucket, default_mode, validate_change
from gateway.routing.table import RouteTable
from tests.helpers import IMPL_HEADER, serving

pytestmark = pytest.mark.anyio

USER_ROUTE = "GET /users/{user_id}"
ITEM_ROUTE = "GET /items/{item_id}"
ORDER_ROUTE = "GET /orders/{order_id}"
STICKY_HEADER = "X-Gateway-Sticky-Key"
AUTH = {"Authorization": "Bearer s3cret"}
SEEDED_USERS = 12
CONCURRENT_REQUESTS = 10
NEVER_JUDGED = 10**9


def real_app(url: str, **overrides: Any) -> FastAPI:
    settings = DemoSettings(
        database_url=url,
        log_level="WARNING",
        admin_tokens={"ops": "s3cret"},
        **{"rollback_min_requests": NEVER_JUDGED, **overrides},
    )
    return create_demo_app(settings)


def admin_path(key: str) -> str:
    return "/admin/routes/" + quote(key, safe="")


async def set_mode(client: httpx.AsyncClient, key: str, **change: Any) -> dict[str, Any]:
    response = await client.put(admin_path(key), json=change, headers=AUTH)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def listed_route(client: httpx.AsyncClient, key: str) -> dict[str, Any]:
    response = await client.get("/admin/routes")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = next(route for route in response.json() if route["route"] == key)
    return found


def user_path(index: int) -> str:
    return f"/users/{index % SEEDED_USERS + 1}"


async def served_by(
    client: httpx.AsyncClient, sticky_keys: list[str | None], header: str = STICKY_HEADER
) -> list[str]:
    """The implementation that answered GET /users/{id} once per key, in key order."""
    answers: list[str] = [""] * len(sticky_keys)
    limiter = anyio.CapacityLimiter(CONCURRENT_REQUESTS)

    async def fetch(index: int, sticky_key: str | None) -> None:
        headers = {} if sticky_key is None else {header: sticky_key}
        async with limiter:
            response = await client.get(user_path(index), headers=headers)
        assert response.status_code == 200, response.text
        answers[index] = response.headers[IMPL_HEADER]

    async with anyio.create_task_group() as group:
        for index, sticky_key in enumerate(sticky_keys):
            group.start_soon(fetch, index, sticky_key)
    return answers


def async_share(answers: Iterable[str]) -> float:
    listed = list(answers)
    return sum(answer == "async" for answer in listed) / len(listed)


def distinct_keys(count: int) -> list[str]:
    run = uuid.uuid4().hex[:6]
    return [f"client-{run}-{n}" for n in range(count)]


@pytest.fixture
def engine(committed_database: str) -> Iterator[Engine]:
    owned = create_engine(sync_url(committed_database), poolclass=NullPool)
    yield owned
    owned.dispose()


def stored_row(engine: Engine, key: str) -> dict[str, Any] | None:
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT * FROM gateway_routes WHERE route = :key"), {"key": key}
        ).first()
    return None if row is None else dict(row._mapping)


async def test_canary_share_is_sticky_and_grows_only_towards_async(
    committed_database: str,
) -> None:
    keys = [f"client-{n}" for n in range(2000)]
    async with serving(real_app(committed_database)) as client:
        await set_mode(client, USER_ROUTE, mode="canary", percent=20, reason="first fifth")
        at_twenty = await served_by(client, list(keys))
        sample = list(range(0, len(keys), 40))
        repeats = [await served_by(client, [keys[i] for i in sample]) for _ in range(3)]
        await set_mode(client, USER_ROUTE, mode="canary", percent=50, reason="half")
        at_fifty = await served_by(client, list(keys))

    assert abs(async_share(at_twenty) - 0.20) <= 0.03
    assert all(repeat == [at_twenty[i] for i in sample] for repeat in repeats)
    moved_back = [
        key
        for key, before, after in zip(keys, at_twenty, at_fifty, strict=True)
        if before == "async" and after != "async"
    ]
    assert moved_back == []
    assert abs(async_share(at_fifty) - 0.50) <= 0.03


async def test_canary_without_a_sticky_key_still_splits(committed_database: str) -> None:
    async with serving(real_app(committed_database)) as client:
        await set_mode(client, USER_ROUTE, mode="canary", percent=30)
        answers = await served_by(client, [None] * 2000)
    assert abs(async_share(answers) - 0.30) <= 0.04


async def test_sticky_header_name_is_configurable(committed_database: str) -> None:
    async with serving(real_app(committed_database, sticky_header="X-User")) as client:
        await set_mode(client, USER_ROUTE, mode="canary", percent=50)
        keys = distinct_keys(100)
        by_user_header = await served_by(client, list(keys), header="X-User")
        again = await served_by(client, list(keys), header="X-User")
        default_header_only = await served_by(client, [keys[0]] * 100, header=STICKY_HEADER)

    expected = [RouteMode(mode="canary", percent=50).choose(key, USER_ROUTE) for key in keys]
    assert by_user_header == again == expected
    assert set(default_header_only) == {"legacy", "async"}


@pytest.mark.parametrize(("percent", "expected"), [(0, "legacy"), (100, "async")])
async def test_canary_at_the_ends_is_all_or_nothing(
    committed_database: str, percent: int, expected: str
) -> None:
    async with serving(real_app(committed_database)) as client:
        await set_mode(client, USER_ROUTE, mode="canary", percent=percent)
        answers = await served_by(client, [*distinct_keys(100), *([None] * 100)])
    assert set(answers) == {expected}


@pytest.mark.parametrize("mode", ["legacy", "async"])
async def test_fixed_modes_send_everything_to_one_implementation(
    committed_database: str, mode: str
) -> None:
    other = "async" if mode == "legacy" else "legacy"
    async with serving(real_app(committed_database, default_mode=other)) as client:
        await set_mode(client, USER_ROUTE, mode=mode)
        answers = await served_by(client, [*distinct_keys(40), *([None] * 40)])
        untouched = await client.get("/items/1")
    assert set(answers) == {mode}
    assert untouched.headers[IMPL_HEADER] == other


@pytest.mark.parametrize("default", ["legacy", "async"])
async def test_routes_with_one_implementation_keep_it(
    committed_database: str, default: str
) -> None:
    async with serving(real_app(committed_database, default_mode=default)) as client:
        legacy_only = [await client.get(path) for path in ("/orders/1", "/reports/sales")]
        async_only = await client.get("/documents/1")
        both = await client.get("/users/1")
        listed = await listed_route(client, ORDER_ROUTE)
    assert [response.headers[IMPL_HEADER] for response in legacy_only] == ["legacy", "legacy"]
    assert async_only.headers[IMPL_HEADER] == "async"
    assert async_only.status_code in {200, 503}
    assert both.headers[IMPL_HEADER] == default
    assert listed["mode"] == "legacy"
    assert listed["implementations"] == ["legacy"]


async def test_stored_mode_the_route_cannot_serve_is_ignored(
    committed_database: str, engine: Engine
) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO gateway_routes (route, mode, percent, primary_impl, changed_by) "
                "VALUES (:key, 'async', 0, 'legacy', 'elsewhere')"
            ),
            {"key": ORDER_ROUTE},
        )
    async with serving(real_app(committed_database)) as client:
        response = await client.get("/orders/1")
        listed = await listed_route(client, ORDER_ROUTE)
    assert response.status_code == 200
    assert response.headers[IMPL_HEADER] == "legacy"
    assert listed["mode"] == "legacy"


async def test_stored_modes_survive_a_restart(committed_database: str, engine: Engine) -> None:
    async with serving(real_app(committed_database)) as client:
        await set_mode(client, USER_ROUTE, mode="canary", percent=35, reason="ramp")
        await set_mode(client, ITEM_ROUTE, mode="shadow", primary="async", reason="compare")

    restarted = real_app(committed_database)
    async with serving(restarted) as client:
        user_route = await listed_route(client, USER_ROUTE)
        item_route = await listed_route(client, ITEM_ROUTE)
        item = await client.get("/items/1")
    table: RouteTable = restarted.state.route_table

    assert table.modes[USER_ROUTE] == RouteMode(mode="canary", percent=35)
    assert table.modes[ITEM_ROUTE] == RouteMode(mode="shadow", primary="async")
    assert (user_route["mode"], user_route["percent"]) == ("canary", 35)
    assert (user_route["changed_by"], user_route["reason"]) == ("ops", "ramp")
    assert (item_route["mode"], item_route["primary"]) == ("shadow", "async")
    assert item.headers[IMPL_HEADER] == "async"
    stored = stored_row(engine, USER_ROUTE)
    assert stored is not None
    assert (stored["mode"], stored["percent"], stored["changed_by"]) == ("canary", 35, "ops")


async def eventually_listed(
    client: httpx.AsyncClient, key: str, changed_by: str, seconds: float = 5
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    listed = await listed_route(client, key)
    while listed["changed_by"] != changed_by and time.monotonic() < deadline:
        await anyio.sleep(0.02)
        listed = await listed_route(client, key)
    return listed


async def test_admin_changes_are_listed_with_who_and_why(committed_database: str) -> None:
    async with serving(real_app(committed_database)) as client:
        before = await listed_route(client, USER_ROUTE)
        await set_mode(client, USER_ROUTE, mode="canary", percent=10, reason="try 10%")
        right_after = await listed_route(client, USER_ROUTE)
        settled = await eventually_listed(client, USER_ROUTE, "ops")
        admin_response = await client.get("/admin/routes")

    assert (before["mode"], before["changed_by"], before["reason"]) == ("legacy", None, None)
    assert right_after["implementations"] == ["async", "legacy"]
    assert (right_after["mode"], right_after["percent"]) == ("canary", 10)
    assert right_after["serves"] == "legacy+async"
    assert (settled["changed_by"], settled["reason"]) == ("ops", "try 10%")
    assert settled["changed_at"] is not None
    assert IMPL_HEADER not in admin_response.headers


async def test_change_answer_and_listing_name_this_change(committed_database: str) -> None:
    async with serving(real_app(committed_database)) as client:
        await set_mode(client, USER_ROUTE, mode="canary", percent=10, reason="try 10%")
        await eventually_listed(client, USER_ROUTE, "ops")
        answer = await set_mode(client, USER_ROUTE, mode="canary", percent=40, reason="go to 40%")
        listed = await listed_route(client, USER_ROUTE)

    assert (answer["route"]["percent"], answer["route"]["reason"]) == (40, "go to 40%")
    assert (listed["percent"], listed["reason"]) == (40, "go to 40%")
    assert listed["changed_at"] == answer["event"]["at"]


async def test_every_change_is_an_event_newest_first(committed_database: str) -> None:
    changes: list[tuple[str, dict[str, Any]]] = [
        (USER_ROUTE, {"mode": "canary", "percent": 10, "reason": "start"}),
        (ITEM_ROUTE, {"mode": "async", "reason": "items done"}),
        (USER_ROUTE, {"mode": "canary", "percent": 40, "reason": "more"}),
        (USER_ROUTE, {"mode": "shadow", "reason": "compare instead"}),
    ]
    async with serving(real_app(committed_database)) as client:
        for key, change in changes:
            await set_mode(client, key, **change)
        everything = (await client.get("/admin/routes/events")).json()
        users_only = (await client.get("/admin/routes/events", params={"route": USER_ROUTE})).json()
        latest = (await client.get("/admin/routes/events", params={"limit": 1})).json()

    assert [event["route"] for event in everything] == [key for key, _ in reversed(changes)]
    assert [(e["old_mode"], e["new_mode"], e["percent"]) for e in users_only] == [
        ("canary", "shadow", 0),
        ("canary", "canary", 40),
        ("legacy", "canary", 10),
    ]
    assert [e["reason"] for e in users_only] == ["compare instead", "more", "start"]
    assert {e["actor"] for e in everything} == {"ops"}
    assert all(e["at"] for e in everything)
    assert [e["at"] for e in everything] == sorted((e["at"] for e in everything), reverse=True)
    assert latest == everything[:1]
    assert everything[2]["old_mode"] == "legacy"
    assert everything[2]["new_mode"] == "async"


async def test_a_change_reaches_another_instance_by_notification(committed_database: str) -> None:
    first, second = real_app(committed_database), real_app(committed_database)
    second_table: RouteTable = second.state.route_table
    async with serving(first) as first_client, serving(second) as second_client:
        await set_mode(first_client, USER_ROUTE, mode="async", reason="everywhere")
        deadline = time.monotonic() + 5
        while second_table.modes[USER_ROUTE].mode != "async" and time.monotonic() < deadline:
            await anyio.sleep(0.02)
        response = await second_client.get("/users/1")
    assert response.headers[IMPL_HEADER] == "async"


def test_bucket_is_stable_and_spreads_keys() -> None:
    keys = [f"key-{n}" for n in range(10_000)]
    buckets = [bucket(key) for key in keys]
    assert buckets == [bucket(key) for key in keys]
    assert all(0 <= b < BUCKETS for b in buckets)
    assert abs(sum(b < BUCKETS // 4 for b in buckets) / len(keys) - 0.25) < 0.02


def test_canary_choice_follows_the_bucket_threshold() -> None:
    keys = [f"key-{n}" for n in range(2000)]
    for percent in (0, 1, 37, 99, 100):
        mode = RouteMode(mode="canary", percent=percent)
        for key in keys:
            expected = "async" if bucket(key, USER_ROUTE) < percent * BUCKETS // 100 else "legacy"
            assert mode.choose(key, USER_ROUTE) == expected


def test_each_route_salts_its_buckets_so_canaries_pick_different_users() -> None:
    users = [f"user-{n}" for n in range(10_000)]
    canary = RouteMode(mode="canary", percent=20)
    on_users = {user for user in users if canary.choose(user, "GET /users/{user_id}") == "async"}
    on_items = {user for user in users if canary.choose(user, "GET /items/{item_id}") == "async"}
    assert abs(len(on_users) / len(users) - 0.20) < 0.02
    assert abs(len(on_items) / len(users) - 0.20) < 0.02
    # independent draws: about 20 % of one route's async users are async on the other too
    assert abs(len(on_users & on_items) / len(on_users) - 0.20) < 0.03


def test_modes_name_what_they_need_and_serve() -> None:
    assert RouteMode(mode="legacy").needs() == {"legacy"}
    assert RouteMode(mode="async").needs() == {"async"}
    assert RouteMode(mode="canary", percent=5).needs() == {"legacy", "async"}
    assert RouteMode(mode="shadow", primary="async").choose("k") == "async"
    assert RouteMode(mode="shadow", primary="async").shadow == "legacy"
    assert RouteMode(mode="shadow").shadow == "async"
    assert RouteMode(mode="canary", percent=50).shadow is None


def test_default_mode_is_the_only_implementation_or_the_configured_one() -> None:
    assert default_mode({"legacy"}, "async") == RouteMode(mode="legacy")
    assert default_mode({"async"}, "legacy") == RouteMode(mode="async")
    assert default_mode({"legacy", "async"}, "async") == RouteMode(mode="async")


def test_validate_change_refuses_a_missing_implementation() -> None:
    validate_change(USER_ROUTE, {"legacy", "async"}, RouteMode(mode="shadow"))
    with pytest.raises(Conflict, match="no async implementation") as refused:
        validate_change(ORDER_ROUTE, {"legacy"}, RouteMode(mode="canary", percent=1))
    assert refused.value.details["missing_implementations"] == ["async"]


async def test_two_routes_in_20_percent_canaries_put_different_users_on_async(
    committed_database: str,
) -> None:
    users = distinct_keys(300)
    async with serving(real_app(committed_database)) as client:
        for route in (USER_ROUTE, ITEM_ROUTE):
            await set_mode(client, route, mode="canary", percent=20)
        on_users, on_items = set(), set()
        for user in users:
            sticky = {STICKY_HEADER: user}
            if (await client.get("/users/1", headers=sticky)).headers[IMPL_HEADER] == "async":
                on_users.add(user)
            if (await client.get("/items/1", headers=sticky)).headers[IMPL_HEADER] == "async":
                on_items.add(user)

    print(f"\n20 % canaries: {len(on_users)} users async on users, {len(on_items)} on items, "
          f"{len(on_users & on_items)} on both")  # fmt: skip
    assert 0.12 < len(on_users) / len(users) < 0.28
    assert 0.12 < len(on_items) / len(users) < 0.28
    assert len(on_users & on_items) < len(on_users) / 2  # the same users would overlap fully
