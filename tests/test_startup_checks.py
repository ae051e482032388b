"""Start-up behaviour: contract and route checks, settings, lifespan, OpenAPI, health, headers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import anyio
import httpx
import pytest
from fastapi import APIRouter, FastAPI, Query
from sqlalchemy import make_url

from demo.app import create_demo_app
from demo.settings import DemoSettings
from gateway import AsyncDB, SyncDB, gateway_of
from gateway.database.sessions import SessionMisuse
from gateway.routing.contract import ContractMismatch
from gateway.routing.pairing import RouteConflict
from gateway.settings import InvalidSettings, load_settings
from shared_models.schemas import ItemRead, UserRead
from tests.conftest import ApiClient, drop_database
from tests.conftest import test_settings as settings_for

pytestmark = pytest.mark.anyio

UNUSED_URL = "postgresql://unused@127.0.0.1/unused"
DOWN_URL = "postgresql://postgres@127.0.0.1:1/nowhere"
RouterPair = tuple[APIRouter, APIRouter]


def offline_app(legacy: list[APIRouter], migrated: list[APIRouter]) -> FastAPI:
    """An app that is built but never started: building it must not touch a database."""
    settings = DemoSettings(database_url=UNUSED_URL, log_level="WARNING")
    return create_demo_app(settings, legacy_routers=legacy, async_routers=migrated)


@asynccontextmanager
async def started(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


@pytest.fixture
async def restore_thread_limiter() -> AsyncIterator[None]:
    limiter = anyio.to_thread.current_default_thread_limiter()
    tokens = limiter.total_tokens
    yield
    limiter.total_tokens = tokens


def limit_le_100() -> RouterPair:
    legacy, migrated = APIRouter(), APIRouter()

    @legacy.get("/things")
    def list_things(db: SyncDB, limit: Annotated[int, Query(le=100)] = 20) -> dict[str, int]:
        return {"limit": limit}

    @migrated.get("/things")
    async def list_things_async(
        db: AsyncDB, limit: Annotated[int, Query(le=50)] = 20
    ) -> dict[str, int]:
        return {"limit": limit}

    return legacy, migrated


def missing_query() -> RouterPair:
    legacy, migrated = APIRouter(), APIRouter()

    @legacy.get("/things")
    def list_things(q: str | None = None) -> dict[str, str]:
        return {}

    @migrated.get("/things")
    async def list_things_async() -> dict[str, str]:
        return {}

    return legacy, migrated


def other_default() -> RouterPair:
    legacy, migrated = APIRouter(), APIRouter()

    @legacy.get("/things")
    def list_things(offset: int = 0) -> dict[str, int]:
        return {}

    @migrated.get("/things")
    async def list_things_async(offset: int = 1) -> dict[str, int]:
        return {}

    return legacy, migrated


def other_path_type() -> RouterPair:
    legacy, migrated = APIRouter(), APIRouter()

    @legacy.get("/things/{thing_id}")
    def get_thing(thing_id: int) -> dict[str, str]:
        return {}

    @migrated.get("/things/{thing_id}")
    async def get_thing_async(thing_id: str) -> dict[str, str]:
        return {}

    return legacy, migrated


def other_response_model() -> RouterPair:
    legacy, migrated = APIRouter(), APIRouter()

    @legacy.get("/things/{thing_id}", response_model=UserRead)
    def get_thing(thing_id: int) -> Any:
        return None

    @migrated.get("/things/{thing_id}", response_model=ItemRead)
    async def get_thing_async(thing_id: int) -> Any:
        return None

    return legacy, migrated


def other_status_code() -> RouterPair:
    legacy, migrated = APIRouter(), APIRouter()

    @legacy.post("/things", status_code=201)
    def create_thing() -> dict[str, str]:
        return {}

    @migrated.post("/things", status_code=200)
    async def create_thing_async() -> dict[str, str]:
        return {}

    return legacy, migrated


def other_body() -> RouterPair:
    legacy, migrated = APIRouter(), APIRouter()

    @legacy.post("/things")
    def create_thing(body: UserRead) -> dict[str, str]:
        return {}

    @migrated.post("/things")
    async def create_thing_async(body: ItemRead) -> dict[str, str]:
        return {}

    return legacy, migrated


MISMATCHES: dict[str, tuple[Callable[[], RouterPair], str, tuple[str, ...]]] = {
    "query constraint": (
        limit_le_100,
        "GET /things",
        ("query parameter 'limit'", "le=100", "le=50"),
    ),
    "missing query": (
        missing_query,
        "GET /things",
        ("query parameter 'q': only the legacy implementation takes it",),
    ),
    "default": (
        other_default,
        "GET /things",
        ("query parameter 'offset': default legacy 0 vs async 1",),
    ),
    "path type": (
        other_path_type,
        "GET /things/{thing_id}",
        ("path parameter 'thing_id': type legacy int vs async str",),
    ),
    "response model": (
        other_response_model,
        "GET /things/{thing_id}",
        ("response model", "UserRead", "ItemRead"),
    ),
    "status code": (other_status_code, "POST /things", ("status code", "201", "200")),
    "body": (other_body, "POST /things", ("body parameter 'body'", "UserRead", "ItemRead")),
}


@pytest.mark.parametrize("case", sorted(MISMATCHES))
def test_differing_twins_stop_the_start(case: str) -> None:
    build, key, named = MISMATCHES[case]
    legacy, migrated = build()
    with pytest.raises(ContractMismatch) as raised:
        offline_app([legacy], [migrated])
    message = str(raised.value)
    assert key in message
    for fragment in named:
        assert fragment in message, message


def test_twins_may_differ_in_their_sessions() -> None:
    legacy, migrated = APIRouter(), APIRouter()

    @legacy.get("/things")
    def list_things(db: SyncDB, limit: Annotated[int, Query(le=100)] = 20) -> dict[str, int]:
        return {"limit": limit}

    @migrated.get("/things")
    async def list_things_async(
        db: AsyncDB, limit: Annotated[int, Query(le=100)] = 20
    ) -> dict[str, int]:
        return {"limit": limit}

    routes = offline_app([legacy], [migrated]).state.route_table.routes
    assert set(routes["GET /things"].implementations) == {"legacy", "async"}


def test_async_side_rejects_a_def_endpoint() -> None:
    migrated = APIRouter()

    @migrated.get("/things")
    def blocking_things() -> dict[str, str]:
        return {}

    with pytest.raises(RouteConflict, match=r"blocking_things.*async def"):
        offline_app([], [migrated])


def test_legacy_def_endpoint_cannot_use_an_async_session() -> None:
    legacy = APIRouter()

    @legacy.get("/things")
    def confused_things(db: AsyncDB) -> dict[str, str]:
        return {}

    with pytest.raises(SessionMisuse, match=r"confused_things.*AsyncDB"):
        offline_app([legacy], [])


def test_the_async_side_cannot_implement_a_key_twice() -> None:
    first, second = APIRouter(), APIRouter()

    @first.get("/things")
    async def things_one() -> dict[str, str]:
        return {}

    @second.get("/things")
    async def things_two() -> dict[str, str]:
        return {}

    with pytest.raises(RouteConflict, match="async routes implement GET /things twice"):
        offline_app([], [first, second])


def test_a_key_the_app_serves_twice_keeps_the_first_as_it_always_did(
    gateway_log: pytest.LogCaptureFixture,
) -> None:
    first, second = APIRouter(), APIRouter()

    @first.get("/things")
    async def things_one() -> dict[str, str]:
        return {"served_by": "first"}

    @second.get("/things")
    async def things_two() -> dict[str, str]:
        return {"served_by": "second"}

    app = offline_app([first, second], [])
    assert list(gateway_of(app).table.routes) == ["GET /things"]
    assert "things_two) is never reached" in gateway_log.text


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"threadpool_size": 0}, "GATEWAY_THREADPOOL_SIZE"),
        ({"sync_pool_size": "many"}, "GATEWAY_SYNC_POOL_SIZE"),
        ({"sync_max_overflow": -1}, "GATEWAY_SYNC_MAX_OVERFLOW"),
        ({"pool_timeout": 0}, "GATEWAY_POOL_TIMEOUT"),
        ({"log_level": "LOUD"}, "GATEWAY_LOG_LEVEL"),
        ({"default_mode": "fastest"}, "GATEWAY_DEFAULT_MODE"),
        ({"database_url": "mysql://x"}, "GATEWAY_DATABASE_URL"),
    ],
)
def test_invalid_settings_name_the_variable(overrides: dict[str, object], variable: str) -> None:
    with pytest.raises(InvalidSettings) as raised:
        load_settings(**overrides)
    assert variable in str(raised.value)


def test_every_bad_variable_is_named_at_once() -> None:
    with pytest.raises(InvalidSettings) as raised:
        load_settings(threadpool_size=0, log_level="LOUD")
    assert "GATEWAY_THREADPOOL_SIZE" in str(raised.value)
    assert "GATEWAY_LOG_LEVEL" in str(raised.value)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_THREADPOOL_SIZE", "7")
    monkeypatch.setenv("GATEWAY_LOG_LEVEL", "debug")
    settings = load_settings()
    assert (settings.threadpool_size, settings.log_level) == (7, "DEBUG")


def test_invalid_environment_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_THREADPOOL_SIZE", "-1")
    with pytest.raises(InvalidSettings, match="GATEWAY_THREADPOOL_SIZE"):
        load_settings()


async def test_small_sync_pool_warns_at_start(
    database_url: str, gateway_log: pytest.LogCaptureFixture, restore_thread_limiter: None
) -> None:
    settings = settings_for(database_url, threadpool_size=10, sync_pool_size=2, sync_max_overflow=3)
    app = create_demo_app(settings, legacy_routers=[], async_routers=[])
    async with app.router.lifespan_context(app):
        pass
    warnings = [r.getMessage() for r in gateway_log.records if r.name == "gateway.database.engines"]
    assert len(warnings) == 1, warnings
    for fragment in (
        "threadpool",
        "10 threads",
        "GATEWAY_SYNC_POOL_SIZE",
        "GATEWAY_SYNC_MAX_OVERFLOW",
        "GATEWAY_THREADPOOL_SIZE",
    ):
        assert fragment in warnings[0]


async def test_large_enough_sync_pool_does_not_warn(
    database_url: str, gateway_log: pytest.LogCaptureFixture, restore_thread_limiter: None
) -> None:
    settings = settings_for(database_url, threadpool_size=10, sync_pool_size=5, sync_max_overflow=5)
    app = create_demo_app(settings, legacy_routers=[], async_routers=[])
    async with app.router.lifespan_context(app):
        pass
    assert [r for r in gateway_log.records if r.name == "gateway.database.engines"] == []


def twin_keys(app: FastAPI) -> list[str]:
    routes = app.state.route_table.routes
    return sorted(key for key, route in routes.items() if len(route.implementations) == 2)


def operations(document: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def response_ref(document: dict[str, Any], method: str, path: str, status: str) -> str:
    content = document["paths"][path][method.lower()]["responses"][status]["content"]
    return str(content["application/json"]["schema"]["$ref"])


async def test_openapi_lists_each_twin_once_with_shared_schemas() -> None:
    app = offline_app_with_default_routers()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        document = (await client.get("/openapi.json")).json()
    listed = operations(document)
    twins = twin_keys(app)
    assert len(twins) >= 8
    for key in twins:
        method, path = key.split(" ", 1)
        assert listed.count((method, path)) == 1, key
    operation_ids = [document["paths"][p][m.lower()]["operationId"] for m, p in listed]
    assert len(operation_ids) == len(set(operation_ids))
    assert (
        response_ref(document, "GET", "/users/{user_id}", "200") == "#/components/schemas/UserRead"
    )
    assert response_ref(document, "POST", "/items", "201") == "#/components/schemas/ItemRead"
    assert {"UserRead", "UserCreate", "UserUpdate", "ItemRead", "ItemCreate"} <= set(
        document["components"]["schemas"]
    )
    assert "/healthz" not in document["paths"]


def offline_app_with_default_routers() -> FastAPI:
    return create_demo_app(DemoSettings(database_url=UNUSED_URL, log_level="WARNING"))


TWIN_REQUESTS = [
    ("GET", "/users/1"),
    ("GET", "/users/99"),
    ("GET", "/users/0"),
    ("GET", "/users?limit=0"),
    ("POST", "/users"),
    ("PATCH", "/users/99"),
    ("DELETE", "/users/abc"),
    ("GET", "/items"),
    ("GET", "/items/99"),
    ("POST", "/items"),
]
LEGACY_ONLY_REQUESTS = [
    ("GET", "/orders/1"),
    ("GET", "/orders/999"),
    ("GET", "/orders/0"),
    ("POST", "/orders"),
    ("GET", "/users/99/orders"),
    ("GET", "/reports/sales"),
]
ASYNC_ONLY_REQUESTS = [
    ("GET", "/documents/1"),
    ("GET", "/documents/999"),
    ("POST", "/documents"),
    ("POST", "/documents/search"),
    ("GET", "/documents/1/similar"),
]


async def served_by(api: ApiClient, requests: list[tuple[str, str]]) -> dict[str, str | None]:
    found = {}
    for method, path in requests:
        response = await api.http.request(
            method, path, json={} if method in {"POST", "PATCH"} else None
        )
        found[f"{method} {path} -> {response.status_code}"] = response.headers.get("x-gateway-impl")
    return found


async def test_every_api_response_names_its_implementation(api: ApiClient, impl: str) -> None:
    groups = [
        (impl, TWIN_REQUESTS),
        ("legacy", LEGACY_ONLY_REQUESTS),
        ("async", ASYNC_ONLY_REQUESTS),
    ]
    statuses = set()
    for expected, requests in groups:
        served = await served_by(api, requests)
        assert served == dict.fromkeys(served, expected)
        statuses |= {label.rsplit(" ", 1)[1] for label in served}
    assert {"200", "404", "422"} <= statuses


async def test_health_and_readiness(
    database_url: str, has_pgvector: bool, restore_thread_limiter: None
) -> None:
    app = create_demo_app(settings_for(database_url), legacy_routers=[], async_routers=[])
    async with started(app) as client:
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"sync_engine": "ok", "async_engine": "ok"}


async def test_readiness_reports_the_extensions_the_routes_declare(
    database_url: str, has_pgvector: bool, restore_thread_limiter: None
) -> None:
    app = create_demo_app(settings_for(database_url))
    async with started(app) as client:
        ready = await client.get("/readyz")
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert set(checks) == {"sync_engine", "async_engine", "extension vector"}
    assert (checks["extension vector"] == "ok") is has_pgvector


async def test_readiness_fails_when_the_database_goes_away(
    committed_database: str, server_url: str, restore_thread_limiter: None
) -> None:
    app = create_demo_app(settings_for(committed_database), legacy_routers=[], async_routers=[])
    async with started(app) as client:
        assert (await client.get("/readyz")).status_code == 200
        drop_database(server_url, str(make_url(committed_database).database))
        ready = await client.get("/readyz")
        health = await client.get("/healthz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["sync_engine"].startswith("failed: ")
    assert body["checks"]["async_engine"].startswith("failed: ")
    assert health.status_code == 200


async def test_start_on_an_unreachable_database_serves_not_ready(
    restore_thread_limiter: None,
) -> None:
    app = create_demo_app(DemoSettings(database_url=DOWN_URL, pool_timeout=1, log_level="WARNING"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            ready = await client.get("/readyz")
            health = await client.get("/healthz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["extension vector"].startswith("unknown")
    assert health.status_code == 200


async def test_lifespan_sizes_the_threadpool(
    database_url: str, restore_thread_limiter: None
) -> None:
    app = create_demo_app(
        settings_for(database_url, threadpool_size=7), legacy_routers=[], async_routers=[]
    )
    async with app.router.lifespan_context(app):
        assert anyio.to_thread.current_default_thread_limiter().total_tokens == 7


def test_settings_come_from_the_projects_pyproject_under_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.gateway]\napp = "library.main:app"\nthreadpool_size = 7\nlog_level = "ERROR"\n'
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GATEWAY_APP", raising=False)
    monkeypatch.setenv("GATEWAY_THREADPOOL_SIZE", "9")
    settings = load_settings()
    assert (settings.app, settings.threadpool_size, settings.log_level) == (
        "library.main:app",
        9,
        "ERROR",
    )


async def test_readiness_answers_while_both_pools_are_exhausted(
    database_url: str, restore_thread_limiter: None
) -> None:
    settings = settings_for(
        database_url, sync_pool_size=1, async_pool_size=1, pool_timeout=60, threadpool_size=1
    )
    app = create_demo_app(settings, legacy_routers=[], async_routers=[])
    async with started(app) as client:
        database = app.state.gateway.database
        with database.sync_engine.connect():
            async with database.async_engine.connect():
                with anyio.fail_after(30):  # far below the pool timeout a pooled probe would wait
                    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"sync_engine": "ok", "async_engine": "ok"}
