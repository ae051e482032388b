"""Behind PgBouncer in transaction mode: the API on both implementations, timeouts, no leftovers.

PgBouncer here has fewer server connections than the gateway's pools, so
consecutive transactions of one gateway connection land on different server
connections, as they do in production: a named prepared statement or a session
setting left behind would break another request.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from sqlalchemy import make_url

from demo.app import ASYNC_ROUTERS, LEGACY_ROUTERS, create_demo_app
from tests.conftest import test_settings as demo_settings
from tests.helpers import assert_error, serving
from tests.pgbouncer import SERVER_POOL_SIZE, Bouncer, started_pgbouncer
from tests.test_faults import async_sleep_router, legacy_sleep_router

pytestmark = pytest.mark.anyio

GATEWAY_POOL_SIZE = 3 * SERVER_POOL_SIZE
ROUNDS = 3  # psycopg would prepare a statement run 5 times: more runs than that per shape
STATEMENT_TIMEOUT_MS = 300
SLOW_QUERY_SECONDS = 3.0
ADMIN_TOKEN = "pooled-admin-token"
RELOAD_SECONDS = 1.0
PROPAGATION_MARGIN = 2.0


@pytest.fixture(scope="module")
def bouncer(server_url: str) -> Iterator[Bouncer]:
    with started_pgbouncer(server_url) as running:
        yield running


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def pooled_app(bouncer: Bouncer, database: str, **overrides: Any) -> FastAPI:
    values: dict[str, Any] = {
        "transaction_pooling": True,
        "sync_pool_size": GATEWAY_POOL_SIZE,
        "async_pool_size": GATEWAY_POOL_SIZE,
        "threadpool_size": GATEWAY_POOL_SIZE,
        "admin_tokens": {"ops": ADMIN_TOKEN},
    }
    settings = demo_settings(bouncer.url_for(database), **{**values, **overrides})
    return create_demo_app(
        settings,
        legacy_routers=[*LEGACY_ROUTERS, legacy_sleep_router()],
        async_routers=[*ASYNC_ROUTERS, async_sleep_router()],
    )


async def one_round(client: httpx.AsyncClient, tag: str) -> Counter[str]:
    """Reads, writes and refusals of the users and items routes, all at once."""
    requests: list[tuple[str, str, Any, int]] = [
        ("GET", "/users?limit=5&offset=1", None, 200),
        ("GET", "/users/9999", None, 404),
        ("GET", "/items", None, 200),
        ("POST", "/users", {"email": "not an email", "name": "x"}, 422),
        ("POST", "/users", {"email": "user1@example.com", "name": "Taken"}, 409),
        (
            "POST",
            "/items",
            {"sku": f"PGB-{tag.upper()}", "name": "Pooled", "price": "2.50", "stock": 3},
            201,
        ),
    ]
    requests += [("GET", f"/users/{user_id}", None, 200) for user_id in range(1, 7)]
    requests += [("GET", f"/items/{item_id}", None, 200) for item_id in range(1, 4)]
    requests += [
        ("POST", "/users", {"email": f"pgb-{tag}-{n}@example.com", "name": f"P{n}"}, 201)
        for n in range(4)
    ]
    answers = await asyncio.gather(
        *(client.request(method, path, json=body) for method, path, body, _ in requests)
    )
    outcome: Counter[str] = Counter()
    for (method, path, _, expected), answer in zip(requests, answers, strict=True):
        assert answer.status_code == expected, f"{method} {path}: {answer.text}"
        outcome[str(answer.headers.get("x-gateway-impl"))] += 1
    return outcome


async def created_then_changed(client: httpx.AsyncClient, tag: str) -> None:
    created = await client.post("/users", json={"email": f"{tag}@example.com", "name": "New"})
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    patched = await client.patch(f"/users/{user_id}", json={"name": "Renamed"})
    assert patched.status_code == 200, patched.text
    assert (await client.get(f"/users/{user_id}")).json()["name"] == "Renamed"
    assert (await client.delete(f"/users/{user_id}")).status_code == 204
    assert (await client.get(f"/users/{user_id}")).status_code == 404


async def sessions_left_open(database: str) -> list[str]:
    """States of the database's connections other than this one that hold a transaction."""
    query = (
        "SELECT coalesce(state, '') FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%' "
        "AND application_name <> 'gateway-control'"  # the rollout driver's own, mid-transaction
    )
    async with await psycopg.AsyncConnection.connect(libpq(database), autocommit=True) as db:
        return [row[0] for row in await (await db.execute(query)).fetchall()]


@pytest.mark.parametrize("impl", ["legacy", "async"])
async def test_the_api_works_through_pgbouncer_in_transaction_mode(
    bouncer: Bouncer, committed_database: str, impl: str
) -> None:
    app = pooled_app(bouncer, committed_database, default_mode=impl)
    served: Counter[str] = Counter()
    async with serving(app) as client:
        for round_number in range(ROUNDS):
            served += await one_round(client, f"{impl}{round_number}")
        await created_then_changed(client, f"pgb-{impl}-changed")
        listed = (await client.get("/users?limit=100")).json()

    emails = {user["email"] for user in listed["items"]}
    assert {f"pgb-{impl}{r}-{n}@example.com" for r in range(ROUNDS) for n in range(4)} <= emails
    assert served == Counter({impl: sum(served.values())})
    assert await sessions_left_open(committed_database) == []


async def test_legacy_only_routes_work_through_pgbouncer(
    bouncer: Bouncer, committed_database: str
) -> None:
    app = pooled_app(bouncer, committed_database)
    async with serving(app) as client:
        orders = await asyncio.gather(
            *(
                client.post(
                    "/orders", json={"user_id": 1, "lines": [{"item_id": 2, "quantity": 1}]}
                )
                for _ in range(2 * SERVER_POOL_SIZE)
            )
        )
        listed = await client.get("/users/1/orders")
        refused = await client.post(
            "/orders", json={"user_id": 1, "lines": [{"item_id": 2, "quantity": 1000}]}
        )
        sales = await client.get("/reports/sales")

    assert [order.status_code for order in orders] == [201] * len(orders), orders[0].text
    assert listed.status_code == 200
    assert listed.json()["total"] >= len(orders)
    assert refused.status_code == 409, refused.text
    assert sales.status_code == 200
    assert await sessions_left_open(committed_database) == []


@pytest.mark.parametrize("engine", ["sync", "async"])
async def test_statement_timeout_answers_504_through_pgbouncer(
    bouncer: Bouncer, committed_database: str, engine: str
) -> None:
    app = pooled_app(bouncer, committed_database, statement_timeout_ms=STATEMENT_TIMEOUT_MS)
    async with serving(app) as client:
        timed_out = await client.get(f"/sleep/{engine}?seconds={SLOW_QUERY_SECONDS}")
        after = await client.get(f"/sleep/{engine}?seconds=0.05")

    assert_error(timed_out, 504, "query_timeout")
    assert after.status_code == 200, after.text


async def test_the_timeout_stays_in_the_transaction_that_set_it(
    bouncer: Bouncer, committed_database: str
) -> None:
    """SET LOCAL ends with its transaction: the next client of that server connection
    finds the server's own setting."""
    app = pooled_app(bouncer, committed_database, statement_timeout_ms=STATEMENT_TIMEOUT_MS)
    async with serving(app) as client:
        answers = await asyncio.gather(*(client.get(f"/users/{n}") for n in range(1, 9)))
        assert [answer.status_code for answer in answers] == [200] * len(answers)
    pooled = libpq(bouncer.url_for(committed_database))
    async with await psycopg.AsyncConnection.connect(pooled, autocommit=True) as other:
        async with other.transaction():
            inside = await (await other.execute("SHOW statement_timeout")).fetchone()
        seen = [
            (await (await other.execute("SHOW statement_timeout")).fetchone())
            for _ in range(2 * SERVER_POOL_SIZE)
        ]
    assert inside == ("0",)
    assert set(seen) == {("0",)}


async def test_without_transaction_pooling_the_pooler_refuses_the_connections(
    bouncer: Bouncer, committed_database: str
) -> None:
    """What the setting is for: session-level startup settings do not pass PgBouncer."""
    app = pooled_app(bouncer, committed_database, transaction_pooling=False)
    async with serving(app) as client:
        refused = await client.get("/users/1")
        ready = await client.get("/readyz")

    assert assert_error(refused, 503, "unavailable")["resource"] == "database"
    assert ready.status_code == 503


async def test_route_changes_reach_a_pooled_instance_at_its_reload(
    bouncer: Bouncer, committed_database: str
) -> None:
    """Without a direct URL a worker behind the pooler cannot listen: it reloads, and says so."""
    first, second = (
        pooled_app(
            bouncer, committed_database, route_reload_seconds=RELOAD_SECONDS, instance_name=name
        )
        for name in ("pooled-a", "pooled-b")
    )
    async with serving(first) as one, serving(second) as other:
        fleet = await fleet_of(other, workers=2)
        moved = await one.put("/admin/routes/GET /users/{user_id}", json={"mode": "async"})
        started = time.monotonic()
        while (await other.get("/users/1")).headers["x-gateway-impl"] != "async":
            assert time.monotonic() - started < RELOAD_SECONDS + PROPAGATION_MARGIN
            await asyncio.sleep(0.02)
        reached = time.monotonic() - started
        converged = await fleet_of(other, workers=2, version=moved.json()["event"]["id"])

    print(f"\nreload every {RELOAD_SECONDS} s, not listening: reached the other in {reached:.2f} s")
    assert moved.status_code == 200, moved.text
    assert [worker["listening"] for worker in fleet["workers"]] == [False, False]
    assert converged["converged"] and converged["lagging"] == []


async def fleet_of(client: httpx.AsyncClient, *, workers: int, version: int = 0) -> dict[str, Any]:
    """/admin/fleet once `workers` workers report holding `version` or newer."""
    deadline = time.monotonic() + RELOAD_SECONDS + PROPAGATION_MARGIN
    while True:
        fleet = (await client.get("/admin/fleet")).json()
        held = [worker["version"] for worker in fleet["workers"]]
        if len(held) == workers and min(held) >= version:
            return dict(fleet)
        assert time.monotonic() < deadline, fleet
        await asyncio.sleep(0.05)
