"""The gateway under faults, in-process: exhausted pools and threads, timeouts, bad input."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Annotated, Any

import anyio
import httpx
import psycopg
import pytest
import uvicorn
from fastapi import APIRouter, FastAPI, Query
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import make_url, text

from demo.app import ASYNC_ROUTERS, LEGACY_ROUTERS, create_demo_app
from gateway import AsyncDB, SyncDB
from gateway.database.state import gateway_state
from shared_models.models import EMBEDDING_DIMENSIONS
from tests.conftest import ApiClient
from tests.conftest import test_settings as gateway_settings
from tests.helpers import assert_error, invalid_locations, serving
from tests.processes import LOCALHOST

pytestmark = pytest.mark.anyio

APPLICATION_NAMES = {"sync": "gateway-sync", "async": "gateway-async"}
POOL_TIMEOUT = 1.0
HOLD_SECONDS = 3.0
RESPONSE_MARGIN = 0.5
HEALTHZ_SECONDS = 0.1
THREADS = 4
THREAD_QUEUE = 4
THREAD_WAIT = 1.0
THREAD_SLEEP = 2.0
QUEUE_REFUSAL_SECONDS = 0.5
LATENCY_SAMPLES = 200
LATENCY_RATIO = 2.0
# A shared two-CPU machine delays single requests by tens of ms at random; a request that
# waited for a thread would take a second (the longest wait) or more.
LATENCY_NOISE_FLOOR = 0.025
MIN_LOADED_SAMPLES = 30
STATEMENT_TIMEOUT_MS = 500
SLOW_QUERY_SECONDS = 2.0
TIMEOUT_ANSWER_SECONDS = 1.2
WAIT_SECONDS = 10.0
POLL_SECONDS = 0.02
MAX_BODY = 1_048_576

Seconds = Annotated[float, Query(ge=0, le=10)]


def legacy_sleep_router() -> APIRouter:
    router = APIRouter()

    @router.get("/sleep/sync")
    def sleep_sync(db: SyncDB, seconds: Seconds = 0.0) -> dict[str, float]:
        db.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": seconds})
        return {"slept": seconds}

    @router.get("/sleep/thread")
    def sleep_thread(seconds: Seconds = 0.0) -> dict[str, float]:
        time.sleep(seconds)
        return {"slept": seconds}

    return router


def async_sleep_router() -> APIRouter:
    router = APIRouter()

    @router.get("/sleep/async")
    async def sleep_async(db: AsyncDB, seconds: Seconds = 0.0) -> dict[str, float]:
        await db.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": seconds})
        return {"slept": seconds}

    return router


def fault_app(url: str, **overrides: Any) -> FastAPI:
    """The gateway's routes plus slow test routes on both sides."""
    return create_demo_app(
        gateway_settings(url, **overrides),
        legacy_routers=[*LEGACY_ROUTERS, legacy_sleep_router()],
        async_routers=[*ASYNC_ROUTERS, async_sleep_router()],
    )


def libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def gateway_sessions(url: str) -> list[tuple[str, str, str]]:
    """(application_name, state, query) of every gateway pool connection to the database."""
    query = (
        "SELECT application_name, coalesce(state, ''), query FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = ANY(%s)"
    )
    async with await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True) as db:
        cursor = await db.execute(query, (list(APPLICATION_NAMES.values()),))
        return [(str(name), str(state), str(sql)) for name, state, sql in await cursor.fetchall()]


async def sleeping(url: str, engine: str) -> int:
    """How many queries of `engine`'s pool are running pg_sleep right now."""
    return sum(
        1
        for name, state, query in await gateway_sessions(url)
        if name == APPLICATION_NAMES[engine] and state == "active" and "pg_sleep" in query
    )


def queries_sleeping(url: str, wanted: dict[str, int]) -> Callable[[], Awaitable[bool]]:
    """A condition: exactly `wanted[engine]` pg_sleep queries run on each engine named."""

    async def reached() -> bool:
        return all([await sleeping(url, engine) == count for engine, count in wanted.items()])

    return reached


async def wait_for(condition: Callable[[], Awaitable[bool]], seconds: float = WAIT_SECONDS) -> None:
    with anyio.fail_after(seconds):
        while not await condition():
            await anyio.sleep(POLL_SECONDS)


async def timed_get(client: httpx.AsyncClient, path: str) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = await client.get(path)
    return response, time.perf_counter() - started


def assert_unavailable(response: httpx.Response, resource: str) -> None:
    details = assert_error(response, 503, "unavailable")
    assert response.headers["retry-after"] == "1"
    assert details["resource"] == resource


def checked_out(app: FastAPI) -> dict[str, int]:
    database = gateway_state(app).database
    return {
        "sync": database.sync_engine.pool.checkedout(),  # type: ignore[attr-defined]
        "async": database.async_engine.pool.checkedout(),  # type: ignore[attr-defined]
    }


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Collected:
    """Responses of requests started in the background, in completion order."""

    def __init__(self) -> None:
        self.answers: list[tuple[httpx.Response, float]] = []

    async def get(self, client: httpx.AsyncClient, path: str) -> None:
        self.answers.append(await timed_get(client, path))

    def statuses(self) -> Counter[int]:
        return Counter(response.status_code for response, _ in self.answers)


@pytest.mark.parametrize(
    ("engine", "refused_by"),
    [("sync", "within the pool timeout"), ("async", f"within {POOL_TIMEOUT:g} s")],
)
async def test_exhausted_pool_answers_503_within_the_pool_timeout(
    committed_database: str, engine: str, refused_by: str
) -> None:
    """The sync pool times the wait out; on the async side the connection gate does."""
    app = fault_app(
        committed_database,
        sync_pool_size=1,
        sync_max_overflow=0,
        async_pool_size=1,
        async_max_overflow=0,
        pool_timeout=POOL_TIMEOUT,
        threadpool_size=THREADS,
    )
    holder = Collected()
    async with serving(app) as client:
        async with anyio.create_task_group() as group:
            group.start_soon(holder.get, client, f"/sleep/{engine}?seconds={HOLD_SECONDS}")
            await wait_for(queries_sleeping(committed_database, {engine: 1}))
            refused, elapsed = await timed_get(client, f"/sleep/{engine}")
        after = await client.get(f"/sleep/{engine}")
        released = checked_out(app)

    assert_unavailable(refused, "connections")
    assert refused_by in refused.json()["error"]["message"]
    print(f"\n{engine} pool exhausted: 503 after {elapsed:.3f} s (pool timeout {POOL_TIMEOUT} s)")
    assert POOL_TIMEOUT - 0.05 <= elapsed <= POOL_TIMEOUT + RESPONSE_MARGIN
    assert holder.statuses() == Counter({200: 1})
    assert after.status_code == 200, after.text
    assert released == {"sync": 0, "async": 0}


async def test_healthz_answers_while_every_thread_and_connection_is_busy(
    committed_database: str,
) -> None:
    app = fault_app(
        committed_database,
        threadpool_size=2,
        sync_pool_size=2,
        sync_max_overflow=0,
        async_pool_size=2,
        async_max_overflow=0,
    )
    held = Collected()
    async with serving(app) as client, anyio.create_task_group() as group:
        for engine in ("sync", "sync", "async", "async"):
            group.start_soon(held.get, client, f"/sleep/{engine}?seconds={HOLD_SECONDS}")
        await wait_for(queries_sleeping(committed_database, {"sync": 2, "async": 2}))
        health, elapsed = await timed_get(client, "/healthz")

    print(f"\n/healthz with every thread and connection busy: {elapsed * 1000:.1f} ms")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert elapsed < HEALTHZ_SECONDS
    assert held.statuses() == Counter({200: 4})


async def item_latency(client: httpx.AsyncClient) -> float:
    """Latency of one GET /items/1 served by its async implementation."""
    response, elapsed = await timed_get(client, "/items/1")
    assert response.status_code == 200, response.text
    assert response.headers["x-gateway-impl"] == "async"
    return elapsed


async def latencies_until(
    client: httpx.AsyncClient, deadline: float, still_true: Callable[[], bool]
) -> list[float]:
    """Sequential async latencies until `deadline`, each sent while `still_true()` holds."""
    latencies = []
    while time.perf_counter() < deadline:
        assert still_true()
        latencies.append(await item_latency(client))
    return latencies


def threads_saturated(app: FastAPI) -> Callable[[], bool]:
    threads = gateway_state(app).threads
    return lambda: threads.limiter.borrowed_tokens == THREADS


def queue_full(app: FastAPI) -> Callable[[], Awaitable[bool]]:
    threads = gateway_state(app).threads

    async def full() -> bool:
        return threads.limiter.borrowed_tokens == THREADS and threads.queued == THREAD_QUEUE

    return full


async def test_saturated_threadpool_sheds_legacy_requests_and_async_keeps_serving(
    committed_database: str,
) -> None:
    app = fault_app(
        committed_database,
        default_mode="async",
        threadpool_size=THREADS,
        threadpool_max_queue=THREAD_QUEUE,
        threadpool_max_wait=THREAD_WAIT,
    )
    running, queued = Collected(), Collected()
    slow = f"/sleep/thread?seconds={THREAD_SLEEP}"
    async with serving(app) as client:
        for _ in range(20):
            await item_latency(client)
        unloaded = [await item_latency(client) for _ in range(LATENCY_SAMPLES)]
        async with anyio.create_task_group() as group:
            saturated_at = time.perf_counter()
            for _ in range(THREADS):
                group.start_soon(running.get, client, slow)
            for _ in range(THREAD_QUEUE):
                group.start_soon(queued.get, client, slow)
            await wait_for(queue_full(app))
            overflow, overflow_seconds = await timed_get(client, slow)
            health, health_seconds = await timed_get(client, "/healthz")
            deadline = saturated_at + THREAD_SLEEP - RESPONSE_MARGIN
            loaded = await latencies_until(client, deadline, threads_saturated(app))

    unloaded_p99, loaded_p99 = percentile(unloaded, 0.99), percentile(loaded, 0.99)
    print(
        f"\nthreadpool saturated: queue overflow 503 in {overflow_seconds * 1000:.1f} ms, "
        f"waits 503 in {[round(s, 3) for _, s in queued.answers]} s, "
        f"/healthz {health_seconds * 1000:.1f} ms; async GET /items/1 unloaded "
        f"p50 {percentile(unloaded, 0.5) * 1000:.2f} ms p99 {unloaded_p99 * 1000:.2f} ms "
        f"({len(unloaded)} requests), saturated p50 {percentile(loaded, 0.5) * 1000:.2f} ms "
        f"p99 {loaded_p99 * 1000:.2f} ms ({len(loaded)} requests)"
    )
    assert_unavailable(overflow, "threads")
    assert overflow_seconds < QUEUE_REFUSAL_SECONDS
    assert running.statuses() == Counter({200: THREADS})
    assert len(queued.answers) == THREAD_QUEUE
    for response, seconds in queued.answers:
        assert_unavailable(response, "threads")
        assert THREAD_WAIT - 0.05 <= seconds <= THREAD_WAIT + RESPONSE_MARGIN
    assert health.status_code == 200
    assert health_seconds < HEALTHZ_SECONDS
    assert len(loaded) >= MIN_LOADED_SAMPLES
    assert loaded_p99 <= LATENCY_RATIO * max(unloaded_p99, LATENCY_NOISE_FLOOR)


@pytest.mark.parametrize("engine", ["sync", "async"])
async def test_statement_timeout_answers_504_and_the_connection_stays_usable(
    committed_database: str, engine: str
) -> None:
    app = fault_app(committed_database, statement_timeout_ms=STATEMENT_TIMEOUT_MS)
    async with serving(app) as client:
        timed_out, elapsed = await timed_get(
            client, f"/sleep/{engine}?seconds={SLOW_QUERY_SECONDS}"
        )
        after = await client.get(f"/sleep/{engine}?seconds=0.1")
        released = checked_out(app)

    print(f"\n{engine} statement timeout ({STATEMENT_TIMEOUT_MS} ms): 504 after {elapsed:.3f} s")
    assert_error(timed_out, 504, "query_timeout")
    assert "traceback" not in timed_out.text.lower()
    assert STATEMENT_TIMEOUT_MS / 1000 <= elapsed < TIMEOUT_ANSWER_SECONDS
    assert after.status_code == 200, after.text
    assert after.json() == {"slept": 0.1}
    assert released == {"sync": 0, "async": 0}


async def idle_in_transaction(url: str) -> list[tuple[str, str, str]]:
    return [row for row in await gateway_sessions(url) if row[1].startswith("idle in transaction")]


async def test_requests_cancelled_mid_query_roll_back_and_return_their_connections(
    committed_database: str,
) -> None:
    app = fault_app(committed_database, async_pool_size=10, async_max_overflow=0)
    async with serving(app) as client:
        async with anyio.create_task_group() as group:
            for _ in range(50):
                group.start_soon(client.get, f"/sleep/async?seconds={SLOW_QUERY_SECONDS}")
            await wait_for(queries_sleeping(committed_database, {"async": 10}))
            group.cancel_scope.cancel()
        released = checked_out(app)
        cancelled_at = time.perf_counter()
        await wait_for(queries_sleeping(committed_database, {"async": 0}))
        queries_ran_on = time.perf_counter() - cancelled_at
        stuck = await idle_in_transaction(committed_database)
        after = await client.get("/sleep/async?seconds=0")
        items = await client.get("/items/1")

    print(f"\ncancelled mid-query: the server ran the queries {queries_ran_on:.2f} s longer")
    assert released == {"sync": 0, "async": 0}
    assert stuck == []
    assert after.status_code == 200, after.text
    assert items.status_code == 200, items.text


@asynccontextmanager
async def uvicorn_serving(app: FastAPI) -> AsyncIterator[int]:
    """Serve `app` and its lifespan under uvicorn on real sockets in this loop; yield the port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOCALHOST, 0))
    port: int = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning"))
    async with anyio.create_task_group() as group:
        group.start_soon(server.serve, [listener])
        try:
            with anyio.fail_after(WAIT_SECONDS):
                while not server.started:
                    await anyio.sleep(POLL_SECONDS)
            yield port
        finally:
            server.should_exit = True
    listener.close()


async def leave_after(port: int, path: str, leave: anyio.Event) -> None:
    """Send one request on a raw socket and close it, unanswered, once `leave` is set."""
    _, writer = await asyncio.open_connection(LOCALHOST, port)
    try:
        request = f"GET {path} HTTP/1.1\r\nHost: {LOCALHOST}\r\n\r\n"
        writer.write(request.encode())
        await writer.drain()
        await leave.wait()
    finally:
        writer.close()
        with suppress(OSError):
            await writer.wait_closed()


def pool_in_use(exposition: str) -> dict[str, float]:
    return {
        sample.labels["engine"]: sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "gateway_db_pool_in_use"
    }


def pool_gauges_idle(client: httpx.AsyncClient) -> Callable[[], Awaitable[bool]]:
    async def idle() -> bool:
        return pool_in_use((await client.get("/metrics")).text) == {"sync": 0.0, "async": 0.0}

    return idle


async def test_disconnected_clients_leave_no_connection_behind(committed_database: str) -> None:
    app = fault_app(
        committed_database,
        async_pool_size=20,
        async_max_overflow=0,
        sync_pool_size=10,
        sync_max_overflow=0,
        threadpool_size=10,
        pool_timeout=2.0,
    )
    leave = anyio.Event()
    async with uvicorn_serving(app) as port:
        base_url = f"http://{LOCALHOST}:{port}"
        async with anyio.create_task_group() as group:
            for _ in range(200):
                group.start_soon(leave_after, port, "/sleep/async?seconds=2", leave)
            for _ in range(10):
                group.start_soon(leave_after, port, "/sleep/sync?seconds=2", leave)
            await wait_for(queries_sleeping(committed_database, {"sync": 10, "async": 20}))
            await anyio.sleep(0.3)
            leave.set()
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            await wait_for(pool_gauges_idle(client))
            stuck = await idle_in_transaction(committed_database)
            none_sleeping = await queries_sleeping(committed_database, {"sync": 0, "async": 0})()
            after = [await client.get(path) for path in ("/sleep/async", "/users/1", "/items/1")]

    assert stuck == []
    assert none_sleeping
    assert [response.status_code for response in after] == [200, 200, 200]


def order_for(item_ids: Sequence[int]) -> dict[str, Any]:
    return {"user_id": 1, "lines": [{"item_id": item_id, "quantity": 1} for item_id in item_ids]}


async def scalar(url: str, query: str) -> int:
    async with await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True) as db:
        row = await (await db.execute(query)).fetchone()
        assert row is not None
        return int(row[0])


async def test_concurrent_orders_for_the_last_units_never_oversell(
    committed_database: str,
) -> None:
    last_units, buyers = 5, 40
    async with await psycopg.AsyncConnection.connect(
        libpq_url(committed_database), autocommit=True
    ) as db:
        await db.execute("UPDATE items SET stock = %s WHERE id = 1", (last_units,))
        await db.execute("UPDATE items SET stock = 1000 WHERE id = 2")
    lines_before = await scalar(committed_database, "SELECT count(*) FROM order_lines")
    app = fault_app(committed_database, sync_pool_size=20, sync_max_overflow=0, threadpool_size=20)
    answers: list[httpx.Response] = []
    async with serving(app) as client:

        async def buy(item_ids: Sequence[int]) -> None:
            answers.append(await client.post("/orders", json=order_for(item_ids)))

        async with anyio.create_task_group() as group:
            for index in range(buyers):
                group.start_soon(buy, [1, 2] if index % 2 else [2, 1])

    statuses = Counter(response.status_code for response in answers)
    assert statuses == Counter({201: last_units, 409: buyers - last_units}), statuses
    for response in answers:
        if response.status_code == 409:
            details = assert_error(response, 409, "conflict")
            assert details["shortages"] == [{"item_id": 1, "requested": 1, "available": 0}]
    created = sorted(response.json()["id"] for response in answers if response.status_code == 201)
    stored = await scalar(
        committed_database,
        f"SELECT count(*) FROM orders WHERE id IN ({','.join(map(str, created))})",
    )
    assert stored == last_units
    assert await scalar(committed_database, "SELECT stock FROM items WHERE id = 1") == 0
    assert (
        await scalar(committed_database, "SELECT stock FROM items WHERE id = 2")
        == 1000 - last_units
    )
    lines_after = await scalar(committed_database, "SELECT count(*) FROM order_lines")
    assert lines_after - lines_before == 2 * last_units


JSON = {"content-type": "application/json"}


def padded_user(email: str, size: int) -> bytes:
    """A valid user as JSON, padded with whitespace to `size` bytes."""
    body = f'{{"email": "{email}", "name": "Edge"}}'.encode()
    return body + b" " * (size - len(body))


async def streamed(body: bytes, size: int = 65_536) -> AsyncIterator[bytes]:
    """`body` in chunks, so httpx sends it chunked, without Content-Length."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def user_count(api: ApiClient) -> int:
    return int(str(api.scalar("SELECT count(*) FROM users")))


async def test_declared_body_over_the_limit_is_refused_with_413(api: ApiClient) -> None:
    users_before = user_count(api)
    response = await api.post(
        "/users", content=padded_user("over@example.com", MAX_BODY + 1), headers=JSON
    )

    assert response.request.headers["content-length"] == str(MAX_BODY + 1)
    assert_error(response, 413, "request_entity_too_large")
    assert str(MAX_BODY) in response.json()["error"]["message"]
    assert user_count(api) == users_before


async def test_streamed_body_over_the_limit_is_refused_with_413(api: ApiClient) -> None:
    users_before = user_count(api)
    response = await api.post(
        "/users", content=streamed(padded_user("over@example.com", MAX_BODY + 1)), headers=JSON
    )

    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_error(response, 413, "request_entity_too_large")
    assert user_count(api) == users_before


async def test_bodies_at_the_limit_are_accepted(api: ApiClient) -> None:
    chunked = await api.post(
        "/users", content=streamed(padded_user("chunked@example.com", MAX_BODY)), headers=JSON
    )
    declared = await api.post(
        "/users", content=padded_user("declared@example.com", MAX_BODY), headers=JSON
    )

    assert chunked.status_code == 201, chunked.text
    assert declared.status_code == 201, declared.text
    assert chunked.json()["email"] == "chunked@example.com"
    assert declared.json()["email"] == "declared@example.com"


@pytest.mark.parametrize(
    "content",
    [b'{"email": "a@example.com", "name": ', b"not json", b'{"email": }', b"\xff\xfe"],
    ids=["truncated", "not-json", "missing-value", "not-utf8"],
)
async def test_malformed_json_answers_422_naming_the_body(api: ApiClient, content: bytes) -> None:
    response = await api.post("/users", content=content, headers=JSON)

    locations = invalid_locations(response)
    assert locations
    assert all(location.split(".")[0] == "body" for location in locations), locations


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/users", {"email": 5, "name": "Five"}, "body.email"),
        ("/users", {"email": "t@example.com", "name": ["x"]}, "body.name"),
        ("/users", {"email": "t@example.com", "name": "T", "is_active": "maybe"}, "body.is_active"),
        ("/items", {"sku": "SKU-X", "name": "X", "price": "cheap", "stock": 1}, "body.price"),
        ("/items", {"sku": "SKU-X", "name": "X", "price": "1.00", "stock": "lots"}, "body.stock"),
        # JSON types exactly as the schema says: no coercion from other types
        ("/users", {"email": "t@example.com", "name": "T", "is_active": 0}, "body.is_active"),
        ("/users", {"email": "t@example.com", "name": "T", "is_active": "true"}, "body.is_active"),
        ("/users", {"email": "t@example.com", "name": "T", "nickname": "t"}, "body.nickname"),
        ("/items", {"sku": "SKU-X", "name": "X", "price": "1.00", "stock": "5"}, "body.stock"),
        ("/items", {"sku": "SKU-X", "name": "X", "price": "1.00", "stock": True}, "body.stock"),
        ("/items", {"sku": "SKU-X", "name": "X", "price": "1.00", "stock": 2.5}, "body.stock"),
        ("/items", {"sku": "SKU-X", "name": "X", "price": 1.5, "stock": 1}, "body.price"),
        ("/items", {"sku": "SKU-X", "name": "X", "price": "1.005", "stock": 1}, "body.price"),
    ],
)
async def test_wrong_types_answer_422_naming_the_field(
    api: ApiClient, path: str, body: dict[str, Any], field: str
) -> None:
    response = await api.post(path, json=body)

    assert invalid_locations(response) == [field]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/users/0", "path.user_id"),
        ("/users/-1", "path.user_id"),
        ("/users/2147483648", "path.user_id"),
        ("/users/99999999999999999999999", "path.user_id"),
        ("/users/1.5", "path.user_id"),
        ("/items/0", "path.item_id"),
        ("/items/2147483648", "path.item_id"),
        ("/users?limit=0", "query.limit"),
        ("/users?limit=101", "query.limit"),
        ("/users?offset=-1", "query.offset"),
        ("/users?offset=1000001", "query.offset"),
        ("/items?limit=abc", "query.limit"),
        ("/items?q=", "query.q"),
        (f"/items?q={'x' * 101}", "query.q"),
        ("/users?active=perhaps", "query.active"),
    ],
)
async def test_out_of_range_parameters_answer_422(api: ApiClient, path: str, field: str) -> None:
    response = await api.get(path)

    assert invalid_locations(response) == [field]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": 2**31, "lines": [{"item_id": 1, "quantity": 1}]}, "body.user_id"),
        ({"user_id": 10**30, "lines": [{"item_id": 1, "quantity": 1}]}, "body.user_id"),
        ({"user_id": 1, "lines": [{"item_id": 2**31, "quantity": 1}]}, "body.lines.0.item_id"),
    ],
    ids=["user-2^31", "user-10^30", "item-2^31"],
)
async def test_order_ids_beyond_the_integer_range_answer_422(
    legacy_api: ApiClient, body: dict[str, Any], field: str
) -> None:
    response = await legacy_api.post("/orders", json=body)

    assert invalid_locations(response) == [field]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/users", {"email": "nul@example.com", "name": "a\x00b"}, "body.name"),
        ("POST", "/users", {"email": "n\x00l@example.com", "name": "Nul"}, "body.email"),
        (
            "POST",
            "/items",
            {"sku": "SKU-NUL", "name": "a\x00b", "price": "1.00", "stock": 1},
            "body.name",
        ),
        ("PATCH", "/users/1", {"name": "a\x00b"}, "body.name"),
        ("GET", "/users?q=a%00b", None, "query.q"),
        ("GET", "/items?q=a%00b", None, "query.q"),
    ],
    ids=["user-name", "user-email", "item-name", "user-rename", "users-q", "items-q"],
)
async def test_nul_characters_in_text_answer_422_naming_the_field(
    api: ApiClient, method: str, path: str, body: dict[str, Any] | None, field: str
) -> None:
    response = await api.request(method, path, json=body)

    assert invalid_locations(response) == [field]
    assert "NUL" in response.json()["error"]["details"]["fields"][0]["message"]


def embedding_with(first: float) -> list[float]:
    return [first] + [0.0] * (EMBEDDING_DIMENSIONS - 1)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/documents/search", {"embedding": [False] * EMBEDDING_DIMENSIONS}, "body.embedding.0"),
        ("/documents/search", {"embedding": ["0.5"] * EMBEDDING_DIMENSIONS}, "body.embedding.0"),
        ("/documents/search", {"embedding": embedding_with(0.1), "limit": "3"}, "body.limit"),
    ],
    ids=["false", "string", "limit-string"],
)
async def test_embeddings_take_numbers_only(
    needs_pgvector: None, legacy_api: ApiClient, path: str, body: dict[str, Any], field: str
) -> None:
    response = await legacy_api.post(path, json=body)

    assert invalid_locations(response)[0] == field


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/documents", {"title": "Huge", "body": "b", "embedding": embedding_with(1e218)}),
        ("/documents/search", {"embedding": embedding_with(1e300), "limit": 3}),
    ],
    ids=["store-1e218", "search-1e300"],
)
async def test_documents_that_postgres_cannot_store_answer_422(
    needs_pgvector: None, legacy_api: ApiClient, path: str, body: dict[str, Any]
) -> None:
    response = await legacy_api.post(path, json=body)

    assert_error(response, 422, "invalid_request")
