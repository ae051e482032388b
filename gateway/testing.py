"""Parity checks: both implementations of every twin route answer the same requests alike.

`check_parity(app, requests)` sends the requests, in order, once with every
twin served by its legacy implementation and once by its async one, and
reports each request whose two answers differ in status or body (JSON
compared without regard to key order, minus `ignore_fields` at any depth).

Both runs start from the same database state and leave nothing behind. Each
run gets a copy of the database (`CREATE DATABASE ... TEMPLATE`), dropped
afterwards: writes are real, so every route, migrated or not, sees what the
run's earlier requests wrote. Copying needs the CREATEDB privilege and no
other session connected to the database. Where it cannot copy, the check falls
back to rolled-back transactions: the app's sessions are bound to two
connections (one per driver) whose transactions are rolled back after the run,
and the sequences it advanced are set back; there, in the async run, a write
made by a route without an async twin (on the legacy side's connection) is not
seen by the async twins' later requests, and the report says so. Either way,
run it against a database nothing else writes to meanwhile (a test database).

Requests not given are made from the examples in the app's OpenAPI schema
(parameter `examples`, request body `examples`); twins that neither the given
requests nor an example reach are listed as uncovered.

From pytest, in the app's own test suite:

    from gateway.testing import ParityRequest, check_parity

    async def test_books_twins_answer_alike() -> None:
        report = await check_parity(app, [ParityRequest("GET", "/api/v1/books/1")],
                                    database_url=TEST_DATABASE_URL)
        assert report.ok, report.describe()

From the command line: `gateway parity --app module:app [--requests requests.json]`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import URL, Connection, create_engine, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import NullPool
from starlette.routing import Match

from gateway.database.engines import Database, async_url, sync_url
from gateway.factory import gateway_of
from gateway.impl import IMPLS, Impl
from gateway.lifespan import MissingDatabaseUrl
from gateway.routing.compare import compared, readable_diff
from gateway.routing.keys import route_key

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ISOLATIONS = {
    "copies": "each run on a copy of the database",
    "rollbacks": "each run in rolled-back transactions",
}
SEQUENCES = text(
    "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename) FROM pg_sequences"
)

SET_SEQUENCE = text("SELECT setval(:name, :value, :called)")


@dataclass(frozen=True)
class ParityRequest:
    """One request, sent alike to both implementations."""

    method: str
    path: str
    params: Mapping[str, Any] = field(default_factory=dict)
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def label(self) -> str:
        query = "&".join(f"{name}={value}" for name, value in self.params.items())
        body = "" if self.json is None else f" {json.dumps(self.json, default=str)}"
        return f"{self.method} {self.path}{'?' + query if query else ''}{body}"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ParityRequest:
        return cls(
            method=str(data["method"]).upper(),
            path=str(data["path"]),
            params=dict(data.get("params") or {}),
            json=data.get("json"),
            headers=dict(data.get("headers") or {}),
        )


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    impl: str | None


@dataclass(frozen=True)
class Difference:
    request: ParityRequest
    key: str | None
    legacy_status: int
    async_status: int
    diff: str

    def describe(self) -> str:
        where = f" ({self.key})" if self.key else ""
        statuses = f"legacy {self.legacy_status}, async {self.async_status}"
        return f"{self.request.label()}{where}: {statuses}\n{self.diff}"


@dataclass(frozen=True)
class Exchange:
    """One request and what each implementation answered."""

    request: ParityRequest
    key: str | None
    legacy: Answer
    async_: Answer


@dataclass
class ParityReport:
    """What a parity check found."""

    requests: int = 0
    twins: list[str] = field(default_factory=list)
    covered: set[str] = field(default_factory=set)
    differences: list[Difference] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    isolation: str = "copies"  # each run on a copy of the database, or in rolled-back transactions
    notes: list[str] = field(default_factory=list)

    @property
    def uncovered(self) -> list[str]:
        return [key for key in self.twins if key not in self.covered]

    @property
    def ok(self) -> bool:
        return not self.differences

    def describe(self) -> str:
        lines = [
            f"{self.requests} requests, {len(self.covered)}/{len(self.twins)} twin routes "
            f"exercised, {len(self.differences)} differences ({ISOLATIONS[self.isolation]})"
        ]
        lines.extend(difference.describe() for difference in self.differences)
        lines.extend(f"note: {note}" for note in self.notes)
        if self.uncovered:
            lines.append("twins no request reached: " + ", ".join(self.uncovered))
        return "\n".join(lines)


async def check_parity(
    app: FastAPI,
    requests: Sequence[ParityRequest] | None = None,
    *,
    database_url: str | None = None,
    ignore_fields: Iterable[str] = (),
) -> ParityReport:
    """Send `requests` to each implementation from the same state; report how the answers differ.

    `database_url` defaults to the app's configured database. Without
    `requests`, they are made from the examples in the app's OpenAPI schema.
    """
    gateway_app = gateway_of(app)
    url = database_url or gateway_app.settings.database_url
    if url is None:
        raise MissingDatabaseUrl()
    chosen = list(requests) if requests is not None else requests_from_examples(app)
    try:
        isolation = "copies"
        answers = {impl: await run_pinned(app, url, impl, chosen, isolation) for impl in IMPLS}
    except CannotCopy:
        isolation = "rollbacks"
        answers = {impl: await run_pinned(app, url, impl, chosen, isolation) for impl in IMPLS}
    report = ParityReport(requests=len(chosen), twins=twin_keys(app), isolation=isolation)
    ignored = frozenset(ignore_fields)
    for index, request in enumerate(chosen):
        key = key_for(app, request)
        if key in report.twins:
            report.covered.add(key)
        legacy, migrated = answers["legacy"][index], answers["async"][index]
        report.exchanges.append(Exchange(request, key, legacy, migrated))
        left = compared(legacy.status, legacy.body, ignored)
        right = compared(migrated.status, migrated.body, ignored)
        if left != right:
            diff = readable_diff(left, right, ("legacy", "async"))
            report.differences.append(
                Difference(request, key, legacy.status, migrated.status, diff)
            )
    if isolation == "rollbacks":
        report.notes.extend(unseen_writes(report))
    return report


def unseen_writes(report: ParityReport) -> list[str]:
    """Writes of routes without a twin that the async run's later twin requests cannot see."""
    notes = []
    for index, exchange in enumerate(report.exchanges):
        wrote = exchange.request.method not in SAFE_METHODS and exchange.async_.status < 400
        later_twins = any(e.key in report.twins for e in report.exchanges[index + 1 :])
        if wrote and exchange.key not in report.twins and later_twins:
            notes.append(
                f"{exchange.request.label()} wrote through a route without an async twin: "
                "in rolled-back mode the async twins' later requests do not see that write"
            )
    return notes


def twin_keys(app: FastAPI) -> list[str]:
    table = gateway_of(app).table
    return sorted(key for key in table.routes if table.implementations(key) == set(IMPLS))


def key_for(app: FastAPI, request: ParityRequest) -> str | None:
    """The key of the public route that serves `request`, if one does."""
    scope = {"type": "http", "method": request.method, "path": request.path, "root_path": ""}
    for route in app.router.routes:
        if isinstance(route, APIRoute) and route.matches(scope)[0] == Match.FULL:
            return route_key(request.method, route.path_format)
    return None


async def run_pinned(
    app: FastAPI, url: str, impl: Impl, requests: Sequence[ParityRequest], isolation: str
) -> list[Answer]:
    """Send `requests` with every route pinned to `impl`, leaving the database as it was."""
    gateway_app = gateway_of(app)
    given_database, given_settings = gateway_app.database, gateway_app.settings
    async with AsyncExitStack() as stack:
        if isolation == "copies":
            gateway_app.use_database_url(stack.enter_context(database_copy(url)))
            gateway_app.database = None
        else:
            gateway_app.database = (await stack.enter_async_context(rolled_back(url))).database
        gateway_app.table.pin(impl)
        try:
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://parity"
                ) as client:
                    answers = [await send(client, request) for request in requests]
        finally:
            gateway_app.table.pin(None)
            gateway_app.database, gateway_app.settings = given_database, given_settings
    return answers


def maintenance_url(url: str) -> URL:
    """The server's `postgres` database, from which databases are copied and dropped."""
    return sync_url(url).set(database="postgres")


class CannotCopy(RuntimeError):
    """The database cannot be copied now: no CREATEDB privilege, or other sessions use it."""


@contextmanager
def database_copy(url: str) -> Iterator[str]:
    """A copy of the database at `url` for the block (real writes), dropped after it."""
    source = sync_url(url)
    name = f"{source.database}_parity_{uuid.uuid4().hex[:8]}"[:63]
    engine = create_engine(maintenance_url(url), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        try:
            with engine.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{source.database}"'))
        except DBAPIError as error:
            raise CannotCopy(str(error.orig)) from error
        try:
            yield make_url(url).set(database=name).render_as_string(hide_password=False)
        finally:
            with engine.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


async def send(client: httpx.AsyncClient, request: ParityRequest) -> Answer:
    response = await client.request(
        request.method,
        request.path,
        params=dict(request.params),
        json=request.json,
        headers=dict(request.headers),
    )
    return Answer(response.status_code, response.content, response.headers.get("x-gateway-impl"))


@dataclass(frozen=True)
class RolledBack:
    """Both engines of a database, and the two connections whose transactions roll back."""

    database: Database
    sync_connection: Connection
    async_connection: AsyncConnection


@asynccontextmanager
async def rolled_back(url: str, *, keep_sequences: bool = True) -> AsyncIterator[RolledBack]:
    """Both engines on `url`, their sessions bound to transactions rolled back on exit.

    With `keep_sequences`, the sequences are set back to where they were on exit
    too (they ignore rollbacks).
    """
    sync_engine = create_engine(sync_url(url), poolclass=NullPool)
    async_engine = create_async_engine(async_url(url), poolclass=NullPool)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(async_engine.dispose)
        stack.callback(sync_engine.dispose)
        if keep_sequences:
            with sync_engine.connect() as reader:
                stack.callback(restore_sequences, sync_engine, sequence_positions(reader))
        sync_connection = stack.enter_context(sync_engine.connect())
        sync_connection.begin()
        async_connection = await stack.enter_async_context(async_engine.connect())
        await async_connection.begin()
        yield RolledBack(
            Database(
                sync_engine=sync_engine,
                async_engine=async_engine,
                sync_sessions=sessionmaker(
                    bind=sync_connection,
                    expire_on_commit=False,
                    join_transaction_mode="create_savepoint",
                ),
                async_sessions=async_sessionmaker(
                    bind=async_connection,
                    expire_on_commit=False,
                    join_transaction_mode="create_savepoint",
                ),
                owns_engines=False,
            ),
            sync_connection,
            async_connection,
        )
        await async_connection.rollback()
        sync_connection.rollback()


def sequence_positions(connection: Connection) -> dict[str, tuple[int, bool]]:
    """Every sequence's `last_value` and `is_called`: what `setval` needs to put it back."""
    positions = {}
    for (name,) in connection.execute(SEQUENCES).all():
        last, called = connection.execute(text(f"SELECT last_value, is_called FROM {name}")).one()
        positions[name] = (int(last), bool(called))
    return positions


def restore_sequences(engine: Any, positions: Mapping[str, tuple[int, bool]]) -> None:
    """Set every sequence back to where it was (sequences ignore rollbacks)."""
    with engine.connect() as connection:
        for name, (last, called) in positions.items():
            connection.execute(SET_SEQUENCE, {"name": name, "value": last, "called": called})
        connection.commit()


def requests_from_examples(app: FastAPI) -> list[ParityRequest]:
    """One request per example body (or one, if the route takes none) of every twin route."""
    schema = app.openapi()
    requests = []
    for key in twin_keys(app):
        method, _, path = key.partition(" ")
        operation = schema.get("paths", {}).get(path, {}).get(method.lower())
        if operation is not None:
            requests.extend(example_requests(method, path, operation, schema))
    return requests


def example_requests(
    method: str, path: str, operation: Mapping[str, Any], schema: Mapping[str, Any]
) -> list[ParityRequest]:
    params: dict[str, Any] = {}
    for parameter in operation.get("parameters", []):
        value = first_example(parameter) or first_example(parameter.get("schema", {}))
        if value is None:
            if parameter.get("required"):
                return []  # a path or required parameter without an example: cannot make one
            continue
        if parameter["in"] == "path":
            path = path.replace("{" + parameter["name"] + "}", str(value))
        elif parameter["in"] == "query":
            params[parameter["name"]] = value
    body = operation.get("requestBody")
    if body is None:
        return [ParityRequest(method, path, params)]
    media = body.get("content", {}).get("application/json", {})
    body_schema = media.get("schema", {})
    bodies = (
        examples_of(media) or examples_of(body_schema) or examples_of(resolve(body_schema, schema))
    )
    return [ParityRequest(method, path, params, json=example) for example in bodies]


def first_example(described: Mapping[str, Any]) -> Any:
    found = examples_of(described)
    return found[0] if found else None


def examples_of(described: Mapping[str, Any]) -> list[Any]:
    if "example" in described:
        return [described["example"]]
    examples = described.get("examples")
    if isinstance(examples, list):
        return list(examples)
    if isinstance(examples, dict):
        return [entry.get("value") for entry in examples.values() if isinstance(entry, dict)]
    return []


def resolve(described: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    reference = described.get("$ref")
    if not isinstance(reference, str) or not reference.startswith("#/"):
        return described
    found: Any = schema
    for part in reference[2:].split("/"):
        found = found.get(part, {})
    return found if isinstance(found, Mapping) else {}
