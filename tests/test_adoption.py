"""Adopting an existing app (tests/example_project): its clients see the same API, now measured.

The tracker is a classic sync app with its own models, Alembic history,
`get_db`, error handlers, middleware, lifespan and nested routers. Adopted
with one `adopt()` call, every response must be what the plain app answers
(save the added X-Gateway-Impl and X-Request-ID), in legacy mode and with its twins on async.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Body, FastAPI, Path
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from gateway import AsyncDB, Settings, SyncDB, adopt, create_app, gateway_of
from gateway.database.engines import sync_url
from gateway.factory import AlreadyStarted
from gateway.routing.pairing import RouteConflict
from gateway.testing import ParityRequest, check_parity
from tests import example
from tests.conftest import create_database, drop_database
from tests.helpers import serving

example.importable()

from tracker.api.deps import get_db  # noqa: E402
from tracker.api_async.main import async_api_router  # noqa: E402
from tracker.main import build_app  # noqa: E402
from tracker.models import Project, Ticket  # noqa: E402
from tracker.schemas import ProjectCreate, ProjectRead, TicketRead  # noqa: E402

ExampleTicketId = Annotated[int, Path(examples=[2])]
ExampleProject = Annotated[
    ProjectCreate,
    Body(examples=[{"key": "EX", "name": "Example"}, {"key": "XY", "name": "Other"}]),
]

pytestmark = pytest.mark.anyio

SEEDED_TICKETS = len(example.TICKETS)
LEFT_OUT_HEADERS = {"x-gateway-impl", "x-request-id", "date", "server"}


@pytest.fixture(scope="session")
def tracker_template(server_url: str) -> Iterator[str]:
    """The tracker's schema (its own Alembic chain, then the gateway's tables) and its rows."""
    name = f"tracker_tpl_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name)
    try:
        example.migrate(url)
        from gateway.ops.migrations import upgrade

        upgrade(url)
        example.seed(url)
        yield name
    finally:
        drop_database(server_url, name)


@pytest.fixture
def tracker_databases(server_url: str, tracker_template: str) -> Iterator[list[str]]:
    """Two identical copies of the tracker's database: one per app compared."""
    names = [f"tracker_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    urls = [create_database(server_url, name, template=tracker_template) for name in names]
    try:
        yield urls
    finally:
        for name in names:
            drop_database(server_url, name)


def plain_app(url: str) -> FastAPI:
    return build_app(example.tracker_url(url))


def adopted_app(
    url: str, *, async_routers: list[APIRouter] | None = None, **settings: Any
) -> FastAPI:
    return adopt(
        build_app(example.tracker_url(url)),
        settings=Settings(database_url=url, log_level="WARNING", gc_freeze=False, **settings),
        async_routers=[async_api_router] if async_routers is None else async_routers,
        sync_session_dependencies=[get_db],
    )


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)


CORS_PREFLIGHT = {
    "origin": "https://tracker.example",
    "access-control-request-method": "POST",
}
CALLS = [
    Call("GET", "/api/v1/projects/"),
    Call("GET", "/api/v1/projects/1"),
    Call("GET", "/api/v1/projects/99"),
    Call("GET", "/api/v1/projects/abc"),
    Call("POST", "/api/v1/projects/", {"key": "NEW", "name": "New"}),
    Call("POST", "/api/v1/projects/", {"key": "NEW", "name": "Taken key"}),
    Call("POST", "/api/v1/projects/", {"key": "lower", "name": ""}),
    Call("GET", "/api/v1/projects/1/tickets"),
    Call("GET", "/api/v1/projects/1/tickets?status=closed"),
    Call("GET", "/api/v1/projects/2/tickets?status=maybe"),
    Call("GET", "/api/v1/projects/99/tickets"),
    Call("POST", "/api/v1/projects/1/tickets", {"title": "Renew the domain"}),
    Call("POST", "/api/v1/projects/99/tickets", {"title": "Nowhere"}),
    Call("GET", "/api/v1/tickets/1"),
    Call("GET", "/api/v1/tickets/4"),
    Call("PATCH", "/api/v1/tickets/1", {"title": "Rotate every certificate"}),
    Call("PATCH", "/api/v1/tickets/2", {"status": "pending"}),
    Call("PATCH", "/api/v1/tickets/99", {"title": "Ghost"}),
    Call("POST", "/api/v1/tickets/2/close"),
    Call("POST", "/api/v1/tickets/2/close"),
    Call("DELETE", "/api/v1/tickets/3"),
    Call("GET", "/api/v1/tickets/3"),
    Call("GET", "/api/v1/projects/1/tickets"),
    Call("PUT", "/api/v1/tickets/1", {"title": "no such method"}),
    Call("GET", "/api/v1/nowhere"),
    Call("OPTIONS", "/api/v1/projects/", headers=CORS_PREFLIGHT),
    Call("GET", "/api/v1/projects/", headers={"origin": "https://tracker.example"}),
    Call("GET", "/api/v1/openapi.json"),
    Call("GET", "/docs"),
]


@dataclass(frozen=True)
class Seen:
    status: int
    headers: dict[str, str]
    body: Any


def created_after_seed(value: Any) -> Any:
    """The body, with the server-set `opened_at` of tickets the calls created masked.

    Each app runs against its own copy of the database, at its own time.
    """
    if isinstance(value, list):
        return [created_after_seed(entry) for entry in value]
    if isinstance(value, dict) and value.get("id", 0) > SEEDED_TICKETS and "opened_at" in value:
        return {**value, "opened_at": "(set at insert)"}
    return value


async def seen(client: httpx.AsyncClient, call: Call) -> Seen:
    response = await client.request(call.method, call.path, json=call.json, headers=call.headers)
    headers = {k: v for k, v in response.headers.items() if k not in LEFT_OUT_HEADERS}
    try:
        body: Any = response.json()
    except ValueError:
        return Seen(response.status_code, headers, response.text)
    masked = created_after_seed(body)
    if masked != body:
        headers.pop("content-length")
    return Seen(response.status_code, headers, masked)


GATEWAY_ERROR_MODELS = {"ErrorDetail", "ErrorEnvelope", "ErrorBody"}


def documented_alike(plain: Seen, adopted: Seen) -> tuple[Seen, Seen]:
    """Both OpenAPI documents, the adopted one without the errors the gateway adds to each route.

    Checks on the way that it adds them: 503 to every operation, in the app's
    error format (the tracker keeps FastAPI's `detail`).
    """
    document = copy.deepcopy(adopted.body)
    for operations in document["paths"].values():
        for operation in operations.values():
            responses = operation["responses"]
            assert schema_name(responses["503"]) == "ErrorDetail", operation["operationId"]
            operation["responses"] = {
                status: response
                for status, response in responses.items()
                if schema_name(response) not in GATEWAY_ERROR_MODELS
            }
    schemas = document["components"]["schemas"]
    assert "ErrorDetail" in schemas and "ErrorEnvelope" not in schemas
    for name in GATEWAY_ERROR_MODELS:
        schemas.pop(name, None)
    headers = {k: v for k, v in adopted.headers.items() if k != "content-length"}
    plain_headers = {k: v for k, v in plain.headers.items() if k != "content-length"}
    return Seen(plain.status, plain_headers, plain.body), Seen(adopted.status, headers, document)


def schema_name(response: dict[str, Any]) -> str:
    reference = response.get("content", {}).get("application/json", {}).get("schema", {})
    return str(reference.get("$ref", "")).rpartition("/")[2]


async def answers(app: FastAPI) -> list[Seen]:
    async with serving(app) as client:
        return [await seen(client, call) for call in CALLS]


@pytest.mark.parametrize("mode", ["legacy", "async"])
async def test_clients_see_the_same_api_after_adoption(
    tracker_databases: list[str], mode: str
) -> None:
    before = await answers(plain_app(tracker_databases[0]))
    after = await answers(adopted_app(tracker_databases[1], default_mode=mode))
    for call, plain, adopted in zip(CALLS, before, after, strict=True):
        if call.path.endswith("/openapi.json"):
            plain, adopted = documented_alike(plain, adopted)
        assert adopted == plain, f"{call.method} {call.path}"
    statuses = {answer.status for answer in before}
    assert {200, 201, 204, 404, 405, 409, 422, 500} <= statuses


async def test_every_api_answer_names_the_implementation_that_served_it(
    tracker_databases: list[str],
) -> None:
    app = adopted_app(tracker_databases[1], default_mode="async")
    async with serving(app) as client:
        twin = await client.get("/api/v1/tickets/1")
        legacy_only = await client.get("/api/v1/projects/1")
        docs = await client.get("/docs")
    assert twin.headers["x-gateway-impl"] == "async"
    assert legacy_only.headers["x-gateway-impl"] == "legacy"
    assert "x-gateway-impl" not in docs.headers
    # the API router's own dependency, given where the app includes it, runs on both sides
    assert twin.headers["x-tracker-api"] == legacy_only.headers["x-tracker-api"] == "1"


def test_nested_routers_are_adopted_under_their_full_paths(tracker_databases: list[str]) -> None:
    table = gateway_of(adopted_app(tracker_databases[0])).table
    assert {key: sorted(table.implementations(key)) for key in table.routes} == {
        "GET /api/v1/projects/": ["legacy"],
        "POST /api/v1/projects/": ["legacy"],
        "GET /api/v1/projects/{project_id}": ["legacy"],
        "GET /api/v1/projects/{project_id}/tickets": ["async", "legacy"],
        "POST /api/v1/projects/{project_id}/tickets": ["legacy"],
        "GET /api/v1/tickets/{ticket_id}": ["async", "legacy"],
        "PATCH /api/v1/tickets/{ticket_id}": ["async", "legacy"],
        "POST /api/v1/tickets/{ticket_id}/close": ["legacy"],
        "DELETE /api/v1/tickets/{ticket_id}": ["legacy"],
    }


async def test_the_gateways_own_routes_stay_out_of_the_apps_openapi(
    tracker_databases: list[str],
) -> None:
    app = adopted_app(tracker_databases[0], admin_tokens={"ops": "s3cret"})
    async with serving(app) as client:
        schema = (await client.get("/api/v1/openapi.json")).json()
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/admin/routes")).status_code == 200
        admin_schema = (await client.get("/admin/openapi.json")).json()
    assert not [path for path in schema["paths"] if path.startswith(("/admin", "/healthz"))]
    operation = schema["paths"]["/api/v1/tickets/{ticket_id}"]["get"]
    assert operation["operationId"] == "tickets-read_ticket"
    assert "/admin/routes/{route_key}" in admin_schema["paths"]
    assert admin_schema["components"]["securitySchemes"]["admin token"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "a token from GATEWAY_ADMIN_TOKENS (read and change) "
        "or GATEWAY_ADMIN_READ_TOKENS (read only)",
    }
    assert admin_schema["paths"]["/admin/routes"]["get"]["security"] == [{"admin token": []}]


async def test_the_admin_api_can_be_listed_in_the_apps_openapi(
    tracker_databases: list[str],
) -> None:
    app = adopted_app(tracker_databases[0], admin_in_openapi=True)
    async with serving(app) as client:
        schema = (await client.get("/api/v1/openapi.json")).json()
    assert {"/admin/routes", "/admin/report", "/admin/shadow/mismatches"} <= set(schema["paths"])
    assert "/admin/openapi.json" not in schema["paths"]


def database_seconds(exposition: str, route: str) -> float:
    pattern = (
        r'gateway_db_query_duration_seconds_sum\{impl="legacy",method="GET",'
        rf'route="{re.escape(route)}"\}} ([0-9.e-]+)'
    )
    found = re.search(pattern, exposition)
    assert found is not None, route
    return float(found.group(1))


async def test_get_db_routes_get_the_gateways_session_and_its_metrics(
    tracker_databases: list[str],
) -> None:
    app = adopted_app(tracker_databases[0])
    async with serving(app) as client:
        for path in ("/api/v1/projects/", "/api/v1/projects/1/tickets", "/api/v1/projects/1"):
            assert (await client.get(path)).status_code == 200
        exposition = (await client.get("/metrics")).text
        sessions = app.state.gateway.database.sync_engine.pool.checkedout()
    for route in ("GET /api/v1/projects/", "GET /api/v1/projects/{project_id}/tickets"):
        assert database_seconds(exposition, route) > 0, route
    assert sessions == 0


async def test_an_override_of_get_db_in_the_apps_tests_still_wins(
    tracker_databases: list[str],
) -> None:
    app = adopted_app(tracker_databases[0])
    used: list[str] = []

    def test_db() -> Iterator[Any]:
        used.append("test_db")
        with app.state.sessions() as session:
            yield session

    app.dependency_overrides[get_db] = test_db
    async with serving(app) as client:
        response = await client.get("/api/v1/projects/1")
    assert response.status_code == 200
    assert used == ["test_db"]  # once per request: the route and get_project share it


def test_sessions_the_gateway_cannot_see_are_listed_once_with_the_fix(
    gateway_log: pytest.LogCaptureFixture,
) -> None:
    adopt(build_app(), settings=Settings(database_url="postgresql://unused@127.0.0.1/unused"))
    (warning,) = [r.getMessage() for r in gateway_log.records if "does not manage" in r.message]
    assert warning.startswith("9 route(s) open a database session the gateway does not manage")
    assert "sync_session_dependencies=[...]" in warning
    assert "  GET /api/v1/tickets/{ticket_id} (session <- tracker.api.deps.get_db)" in warning


def test_sync_dependencies_holding_the_session_are_listed_once(
    gateway_log: pytest.LogCaptureFixture, tracker_databases: list[str]
) -> None:
    adopted_app(tracker_databases[0])
    (warning,) = [r.getMessage() for r in gateway_log.records if "sync dependency" in r.message]
    assert warning.startswith("3 route(s) have a sync dependency that queries the sync session")
    assert "  GET /api/v1/projects/{project_id} (get_project)" in warning


def twin_with_other_parameter_name() -> APIRouter:
    router = APIRouter()

    @router.get("/api/v1/tickets/{id}", response_model=TicketRead)
    async def read_ticket(id: int, session: AsyncDB) -> Any:
        return None

    return router


def test_twins_with_differently_named_parameters_are_refused_naming_both(
    tracker_databases: list[str],
) -> None:
    with pytest.raises(RouteConflict) as refused:
        adopted_app(tracker_databases[0], async_routers=[twin_with_other_parameter_name()])
    assert str(refused.value).splitlines() == [
        "GET /api/v1/tickets/{ticket_id}: the async twin is GET /api/v1/tickets/{id}; name its "
        "path parameters as the legacy route does (clients see the names in 422 errors and "
        "the docs):",
        "  path parameter 1: legacy {ticket_id} vs async {id}",
    ]


PARITY_REQUESTS = [
    ParityRequest("GET", "/api/v1/tickets/1"),
    ParityRequest("GET", "/api/v1/tickets/99"),
    ParityRequest("GET", "/api/v1/tickets/x"),
    ParityRequest("PATCH", "/api/v1/tickets/2", json={"status": "closed"}),
    ParityRequest("GET", "/api/v1/projects/1/tickets", params={"status": "closed"}),
    ParityRequest("POST", "/api/v1/projects/1/tickets", json={"title": "Written on both sides"}),
    ParityRequest("GET", "/api/v1/projects/1/tickets"),
    ParityRequest("GET", "/api/v1/projects/99/tickets"),
]


async def test_parity_of_the_adopters_twins_with_writes(tracker_databases: list[str]) -> None:
    app = adopted_app(tracker_databases[0])
    report = await check_parity(app, PARITY_REQUESTS, ignore_fields=["opened_at"])
    assert report.ok, report.describe()
    assert report.isolation == "copies"
    assert report.uncovered == []
    assert [exchange.legacy.status for exchange in report.exchanges] == [
        200, 404, 422, 200, 200, 201, 200, 404,
    ]  # fmt: skip
    async with serving(plain_app(tracker_databases[0])) as client:
        tickets = (await client.get("/api/v1/projects/1/tickets")).json()
    assert [ticket["title"] for ticket in tickets] == [
        "Rotate the certificates",
        "Upgrade PostgreSQL",
    ]
    assert tickets[1]["status"] == "open"  # both runs were rolled back


@pytest.mark.parametrize("mode", ["legacy", "async"])
async def test_sessions_a_failing_dependency_opened_go_back_to_the_pool(
    tracker_databases: list[str], mode: str
) -> None:
    app = adopted_app(tracker_databases[0], default_mode=mode)
    failing = ["/api/v1/projects/99/tickets", "/api/v1/projects/2/tickets?status=maybe"]
    async with serving(app) as client:
        statuses = [(await client.get(path)).status_code for path in failing]
        database = app.state.gateway.database
        held = (database.sync_engine.pool.checkedout(), database.async_engine.pool.checkedout())
    assert statuses == [404, 422]
    assert held == (0, 0)


async def test_parity_falls_back_to_rollbacks_and_says_what_it_cannot_see(
    tracker_databases: list[str],
) -> None:
    app = adopted_app(tracker_databases[0])
    holder = create_engine(sync_url(tracker_databases[0]), poolclass=NullPool)
    with holder.connect():  # another session on the database: it cannot be copied
        report = await check_parity(app, PARITY_REQUESTS, ignore_fields=["opened_at"])
    holder.dispose()
    assert report.isolation == "rollbacks"
    assert [d.request.path for d in report.differences] == ["/api/v1/projects/1/tickets"]
    assert report.notes == [
        'POST /api/v1/projects/1/tickets {"title": "Written on both sides"} wrote through a '
        "route without an async twin: in rolled-back mode the async twins' later requests do "
        "not see that write"
    ]
    async with serving(plain_app(tracker_databases[0])) as client:
        tickets = (await client.get("/api/v1/projects/1/tickets")).json()
    assert len(tickets) == 2  # nothing was left behind


def routers_with_examples() -> tuple[APIRouter, APIRouter]:
    """Twins whose parameters and bodies carry OpenAPI examples, and nothing else to go on."""
    legacy, migrated = APIRouter(), APIRouter()

    @legacy.get("/tickets/{ticket_id}", response_model=TicketRead)
    def read_ticket(ticket_id: ExampleTicketId, session: SyncDB) -> Ticket:
        return session.get_one(Ticket, ticket_id)

    @migrated.get("/tickets/{ticket_id}", response_model=TicketRead)
    async def read_ticket_async(ticket_id: ExampleTicketId, session: AsyncDB) -> Ticket:
        return await session.get_one(Ticket, ticket_id)

    @legacy.post("/projects", response_model=ProjectRead, status_code=201)
    def create_project(body: ExampleProject, session: SyncDB) -> Project:
        project = Project(key=body.key, name=body.name)
        session.add(project)
        session.flush()
        return project

    @migrated.post("/projects", response_model=ProjectRead, status_code=201)
    async def create_project_async(body: ExampleProject, session: AsyncDB) -> Project:
        project = Project(key=body.key, name=body.name.upper())  # a planted difference
        session.add(project)
        await session.flush()
        return project

    return legacy, migrated


async def test_requests_are_made_from_the_openapi_examples(tracker_databases: list[str]) -> None:
    legacy, migrated = routers_with_examples()
    app = create_app(
        Settings(database_url=tracker_databases[0], log_level="WARNING", gc_freeze=False),
        legacy_routers=[legacy],
        async_routers=[migrated],
    )
    report = await check_parity(app)
    assert [exchange.request.label() for exchange in report.exchanges] == [
        "GET /tickets/2",
        'POST /projects {"key": "EX", "name": "Example"}',
        'POST /projects {"key": "XY", "name": "Other"}',
    ]
    assert report.uncovered == []
    assert [d.request.label() for d in report.differences] == [
        'POST /projects {"key": "EX", "name": "Example"}',
        'POST /projects {"key": "XY", "name": "Other"}',
    ]


def test_an_app_is_adopted_once_and_before_it_serves() -> None:
    settings = Settings(database_url="postgresql://unused@127.0.0.1/unused", log_level="ERROR")
    app = adopt(build_app(), settings=settings)
    with pytest.raises(AlreadyStarted, match="is adopted already"):
        adopt(app, settings=settings)
    serving_already = build_app()
    serving_already.middleware_stack = serving_already.build_middleware_stack()
    with pytest.raises(AlreadyStarted, match="adopt it before it starts"):
        adopt(serving_already, settings=settings)
