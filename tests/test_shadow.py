"""Shadow mode on a real app: the primary answers; the twin runs afterwards, read-only, compared."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from gateway import AsyncDB, SyncDB
from gateway.database.engines import sync_url
from gateway.database.queries import create
from gateway.routing.compare import comparable, readable_diff
from shared_models.models import User
from tests.helpers import IMPL_HEADER, assert_error, serving
from tests.shadowing import (
    PROBE_ROUTE,
    Probe,
    counted,
    probe_routers,
    put_mode,
    real_app,
    report,
    set_mode,
    settled_report,
    shadow_on,
)

pytestmark = [pytest.mark.anyio, pytest.mark.version_independent]

USER_ROUTE = "GET /users/{user_id}"
HANGING_SECONDS = 30.0
WRITTEN_NAME = "Shadow Writer"


def writing_routers(email: str) -> dict[str, Any]:
    """A GET /probe/{n} pair whose twins both try to insert a user, each in its own idiom."""
    legacy, migrated = APIRouter(), APIRouter()

    @legacy.get("/probe/{n}", response_model=Probe)
    def probe_legacy(n: int, db: SyncDB) -> Probe:
        db.add(User(email=f"legacy.{n}.{email}", name=WRITTEN_NAME))
        db.commit()
        return Probe(n=n, side="same")

    @migrated.get("/probe/{n}", response_model=Probe)
    async def probe_async(n: int, db: AsyncDB) -> Probe:
        await create(db, User(email=f"async.{n}.{email}", name=WRITTEN_NAME))
        return Probe(n=n, side="same")

    return {"legacy_routers": [legacy], "async_routers": [migrated]}


def record_legacy(n: int, db: SyncDB) -> int:
    db.add(User(email=f"legacy.dependency.{n}.{uuid.uuid4().hex[:8]}@x.org", name=WRITTEN_NAME))
    db.flush()
    return n


async def record_async(n: int, db: AsyncDB) -> int:
    email = f"async.dependency.{n}.{uuid.uuid4().hex[:8]}@x.org"
    await create(db, User(email=email, name=WRITTEN_NAME))
    return n


def writing_dependency_routers(email: str) -> dict[str, Any]:
    """The same pair, but each twin writes in a dependency before its endpoint runs."""
    legacy, migrated = APIRouter(), APIRouter()

    @legacy.get("/probe/{n}", response_model=Probe)
    def probe_legacy(n: int, db: SyncDB, recorded: Annotated[int, Depends(record_legacy)]) -> Probe:
        db.commit()
        return Probe(n=recorded, side="same")

    @migrated.get("/probe/{n}", response_model=Probe)
    async def probe_async(
        n: int, db: AsyncDB, recorded: Annotated[int, Depends(record_async)]
    ) -> Probe:
        return Probe(n=recorded, side="same")

    return {"legacy_routers": [legacy], "async_routers": [migrated]}


@pytest.fixture
def engine(committed_database: str) -> Iterator[Engine]:
    owned = create_engine(sync_url(committed_database), poolclass=NullPool)
    yield owned
    owned.dispose()


def users_written(engine: Engine) -> int:
    with engine.connect() as connection:
        query = text("SELECT count(*) FROM users WHERE name = :name")
        return int(connection.execute(query, {"name": WRITTEN_NAME}).scalar_one())


async def test_client_always_gets_the_primary_answer(committed_database: str) -> None:
    user_ids = [1, 4, 10, 12, 999]
    async with serving(real_app(committed_database)) as client:
        plain = [await client.get(f"/users/{user_id}") for user_id in user_ids]
        await shadow_on(client, USER_ROUTE)
        shadowed = [await client.get(f"/users/{user_id}") for user_id in user_ids]

    assert [r.status_code for r in shadowed] == [200, 200, 200, 200, 404]
    assert {r.headers[IMPL_HEADER] for r in plain} == {"legacy"}
    assert {r.headers[IMPL_HEADER] for r in shadowed} == {"legacy"}
    assert [r.content for r in shadowed] == [r.content for r in plain]


async def test_async_primary_answers_with_async(committed_database: str) -> None:
    async with serving(real_app(committed_database)) as client:
        await shadow_on(client, USER_ROUTE, primary="async")
        responses = [await client.get(f"/users/{user_id}") for user_id in (2, 3)]
    assert {r.headers[IMPL_HEADER] for r in responses} == {"async"}
    assert [r.json()["id"] for r in responses] == [2, 3]


async def test_identical_twins_count_as_matches(committed_database: str) -> None:
    user_ids = [1, 5, 10, 999]
    async with serving(real_app(committed_database)) as client:
        await shadow_on(client, USER_ROUTE)
        for user_id in user_ids:
            await client.get(f"/users/{user_id}")
        found = await settled_report(client, USER_ROUTE, runs=len(user_ids))
    assert found["counts"] == counted(match=len(user_ids))
    assert found["mismatches"] == []


async def test_a_differing_twin_is_recorded_with_a_readable_diff(committed_database: str) -> None:
    async with serving(real_app(committed_database, probe_routers())) as client:
        await shadow_on(client, PROBE_ROUTE)
        response = await client.get("/probe/7", params={"verbose": "1"})
        found = await settled_report(client, PROBE_ROUTE, runs=1)

    assert response.json() == {"n": 7, "side": "legacy"}
    assert found["counts"]["mismatch"] == 1
    mismatch = found["mismatches"][0]
    assert (mismatch["primary_status"], mismatch["shadow_status"]) == (200, 200)
    assert (mismatch["path"], mismatch["query"]) == ("/probe/7", "verbose=1")
    removed = [line for line in mismatch["diff"].splitlines() if line.startswith("-  ")]
    added = [line for line in mismatch["diff"].splitlines() if line.startswith("+  ")]
    assert [line.strip("-+ ,") for line in removed] == ['"side": "legacy"']
    assert [line.strip("-+ ,") for line in added] == ['"side": "async"']


async def test_redacted_fields_and_parameters_never_show_in_a_diff(
    committed_database: str,
) -> None:
    app = real_app(committed_database, probe_routers(), shadow_redact_fields=["side", "token"])
    async with serving(app) as client:
        await shadow_on(client, PROBE_ROUTE)
        await client.get("/probe/7", params={"verbose": "1", "token": "a-secret"})
        found = await settled_report(client, PROBE_ROUTE, runs=1)

    (mismatch,) = found["mismatches"]
    assert found["counts"]["mismatch"] == 1  # compared on the real values
    assert mismatch["query"] == "verbose=1&token=[redacted]"
    assert "legacy" not in mismatch["diff"].replace("legacy (primary)", "")
    assert "a-secret" not in str(found)
    changed = [line for line in mismatch["diff"].splitlines() if line.startswith(("-  ", "+  "))]
    assert len(changed) == 2 and all('"side": "[redacted ' in line for line in changed)


async def test_ignored_fields_turn_a_difference_into_a_match(committed_database: str) -> None:
    ignore = {PROBE_ROUTE: ["side"]}
    app = real_app(committed_database, probe_routers(), shadow_ignore_fields=ignore)
    async with serving(app) as client:
        await shadow_on(client, PROBE_ROUTE)
        await client.get("/probe/7")
        found = await settled_report(client, PROBE_ROUTE, runs=1)
    assert found["counts"] == counted(match=1)


async def test_a_failing_twin_is_a_status_mismatch(committed_database: str) -> None:
    app = real_app(committed_database, probe_routers(async_side="legacy", async_fails=True))
    async with serving(app) as client:
        await shadow_on(client, PROBE_ROUTE)
        response = await client.get("/probe/3")
        found = await settled_report(client, PROBE_ROUTE, runs=1)
    assert response.status_code == 200
    assert found["counts"]["mismatch"] == 1
    mismatch = found["mismatches"][0]
    assert (mismatch["primary_status"], mismatch["shadow_status"]) == (200, 500)
    assert "internal_error" in mismatch["diff"]


async def test_a_hanging_shadow_neither_delays_the_primary_nor_lingers(
    committed_database: str,
) -> None:
    routers = probe_routers(async_delay=HANGING_SECONDS)
    app = real_app(committed_database, routers, shadow_timeout=0.5)
    async with serving(app) as client:
        await shadow_on(client, PROBE_ROUTE)
        started = time.perf_counter()
        response = await client.get("/probe/1")
        primary_seconds = time.perf_counter() - started
        found = await settled_report(client, PROBE_ROUTE, runs=1, seconds=5)

    assert response.json() == {"n": 1, "side": "legacy"}
    assert primary_seconds < 0.5
    assert found["counts"] == counted(error=1)


async def test_shadows_beyond_the_limit_are_dropped(committed_database: str) -> None:
    routers = probe_routers(async_delay=HANGING_SECONDS)
    app = real_app(committed_database, routers, shadow_max_concurrent=1, shadow_timeout=60)
    async with serving(app) as client:
        await shadow_on(client, PROBE_ROUTE)
        first = await client.get("/probe/1")
        second = await client.get("/probe/2")
        found = await report(client, PROBE_ROUTE)

    assert [first.status_code, second.status_code] == [200, 200]
    assert found["counts"] == counted(dropped=1)


@pytest.mark.parametrize(
    "primary",
    [
        pytest.param("legacy", id="async-shadow-creates-and-flushes"),
        pytest.param("async", id="legacy-shadow-adds-and-commits"),
    ],
)
@pytest.mark.parametrize(
    "routers", [writing_routers, writing_dependency_routers], ids=["endpoint", "dependency"]
)
async def test_a_shadow_never_writes(
    committed_database: str,
    engine: Engine,
    primary: str,
    routers: Callable[[str], dict[str, Any]],
) -> None:
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    async with serving(real_app(committed_database, routers(email))) as client:
        await set_mode(client, PROBE_ROUTE, mode=primary)
        await client.get("/probe/1")
        written_by_primary = users_written(engine)
        await shadow_on(client, PROBE_ROUTE, primary=primary)
        await client.get("/probe/2")
        found = await settled_report(client, PROBE_ROUTE, runs=1)
        written_with_shadow = users_written(engine)

    assert written_by_primary == 1
    assert found["counts"]["match"] == 1
    assert written_with_shadow == written_by_primary + 1


async def test_shadow_is_refused_for_methods_that_write(committed_database: str) -> None:
    async with serving(real_app(committed_database)) as client:
        response = await put_mode(client, "POST /users", mode="shadow")
        events = (await client.get("/admin/routes/events")).json()
    details = assert_error(response, 422, "invalid_request")
    assert "GET" in response.json()["error"]["message"]
    assert "HEAD" in response.json()["error"]["message"]
    assert details["method"] == "POST"
    assert events == []


def test_comparison_ignores_key_order_and_ignored_fields_at_any_depth() -> None:
    ignored = frozenset({"created_at"})
    left = b'{"a": 1, "b": [{"x": 1, "created_at": "t1"}], "created_at": "t1"}'
    right = b'{"b": [{"created_at": "t2", "x": 1}], "a": 1, "created_at": "t2"}'
    assert comparable(left, ignored) == comparable(right, ignored)
    assert comparable(left, frozenset()) != comparable(right, frozenset())
    assert comparable(b"not json", ignored) == "not json"


def test_readable_diff_shows_only_the_differing_field() -> None:
    diff = readable_diff({"n": 1, "side": "a"}, {"n": 1, "side": "b"}, ("left", "right"))
    changed = [line for line in diff.splitlines() if line[:1] in "+-"]
    assert changed == ["--- left", "+++ right", '-  "side": "a"', '+  "side": "b"']


async def test_every_instance_lists_the_mismatches_any_instance_found(
    committed_database: str,
) -> None:
    routers = probe_routers(async_side="different")
    finder = real_app(committed_database, routers, instance_name="finder")
    other = real_app(committed_database, routers, instance_name="other")
    async with serving(finder) as found_on, serving(other) as listed_on:
        await shadow_on(found_on, PROBE_ROUTE)
        for n in (1, 2):  # one at a time: mismatches are listed in the order they were stored
            assert (await found_on.get(f"/probe/{n}")).status_code == 200
            await settled_report(found_on, PROBE_ROUTE, runs=n)
        here, there = await report(found_on, PROBE_ROUTE), await report(listed_on, PROBE_ROUTE)

    assert here["mismatches"] == there["mismatches"]
    assert [m["path"] for m in there["mismatches"]] == ["/probe/2", "/probe/1"]
    assert {m["worker"].split("/")[0] for m in there["mismatches"]} == {"finder"}
    assert there["counts"]["mismatch"] == 0  # counts are each worker's own; metrics sum them


async def test_only_the_newest_mismatches_are_kept_per_route(committed_database: str) -> None:
    app = real_app(
        committed_database, probe_routers(async_side="different"), shadow_mismatches_kept=3
    )
    async with serving(app) as client:
        await shadow_on(client, PROBE_ROUTE)
        for n in range(1, 6):
            assert (await client.get(f"/probe/{n}")).status_code == 200
            await settled_report(client, PROBE_ROUTE, runs=n)
        found = await report(client, PROBE_ROUTE)

    assert found["counts"]["mismatch"] == 5
    assert [m["path"] for m in found["mismatches"]] == ["/probe/5", "/probe/4", "/probe/3"]
