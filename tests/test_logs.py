"""Log lines: JSON or text, each line of a request carrying its X-Request-ID, in every process."""

from __future__ import annotations

import io
import json
import logging
import re
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import pytest
from fastapi import APIRouter, FastAPI
from sqlalchemy import text

from demo.app import create_demo_app
from demo.settings import DemoSettings
from gateway import AsyncDB, SyncDB
from gateway.ops.logs import GatewayHandler, LogFormat, formatter
from tests.helpers import serving
from tests.processes import child_env, free_port, gateway_command, running_server, stop_process

pytestmark = [pytest.mark.anyio, pytest.mark.version_independent]

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
INSTANCE = "logs-test-instance"
GENERATED_ID = re.compile(r"[0-9a-f]{32}")
SHAKY_ROUTE = "GET /shaky"
JSON_FIELDS = {"timestamp", "level", "logger", "message", "request_id", "instance", "pid"}
WAIT_SECONDS = 10.0
SERVER_START_SECONDS = 60.0
STARTED = "Application startup complete."

gateway_lines = logging.getLogger("gateway.test_logs")  # through the gateway's own handler
app_lines = logging.getLogger("test_logs.app")  # the app's own logger, through the root's
threads: dict[str, int] = {}


def logged_routers() -> tuple[list[APIRouter], list[APIRouter]]:
    """Twins that log and query; a failing route; a route that holds its thread until released."""
    legacy, migrated = APIRouter(), APIRouter()

    @legacy.get("/logged/{n}")
    def logged_legacy(n: int, db: SyncDB) -> dict[str, int]:
        threads["legacy"] = threading.get_ident()
        gateway_lines.warning("legacy endpoint, gateway logger")
        app_lines.warning("legacy endpoint, app logger")
        return {"n": db.execute(text("SELECT CAST(:n AS integer)"), {"n": n}).scalar_one()}

    @migrated.get("/logged/{n}")
    async def logged_async(n: int, db: AsyncDB) -> dict[str, int]:
        gateway_lines.warning("async endpoint, gateway logger")
        app_lines.warning("async endpoint, app logger")
        return {"n": (await db.execute(text("SELECT CAST(:n AS integer)"), {"n": n})).scalar_one()}

    @legacy.get("/failing")
    def failing() -> dict[str, str]:
        raise RuntimeError("failing on purpose")

    @legacy.get("/shaky")
    def shaky_legacy() -> dict[str, str]:
        return {"side": "legacy"}

    @migrated.get("/shaky")
    async def shaky_async() -> dict[str, str]:
        app_lines.warning("async twin, about to fail")
        raise RuntimeError("the async twin fails")

    @legacy.get("/holding")
    def holding() -> dict[str, str]:
        held.entered.set()
        held.release.wait(WAIT_SECONDS)
        return {"held": "yes"}

    return [legacy], [migrated]


class Held:
    """A legacy request that holds the only thread until the test releases it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()


held = Held()


def logging_app(url: str, log_format: LogFormat = "json", **overrides: Any) -> FastAPI:
    settings = DemoSettings(
        database_url=url,
        log_level="INFO",
        log_format=log_format,
        instance_name=INSTANCE,
        admin_tokens={"ops": TOKEN},
        gc_freeze=False,
        **overrides,
    )
    legacy, migrated = logged_routers()
    return create_demo_app(settings, legacy_routers=legacy, async_routers=migrated)


@pytest.fixture(autouse=True)
def gateway_logging_restored() -> Iterator[None]:
    """The gateway logger's level and format as they were before the test's apps changed them."""
    logger = logging.getLogger("gateway")
    handler = next((h for h in logger.handlers if isinstance(h, GatewayHandler)), None)
    level, previous = logger.level, handler.formatter if handler is not None else None
    yield
    logger.setLevel(level)
    if handler is not None:
        handler.setFormatter(previous)


class Captured:
    """What the gateway's handler and the root's wrote, one line per record."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    def mark(self) -> int:
        return len(self.stream.getvalue())

    def lines(self, since: int = 0) -> list[str]:
        return self.stream.getvalue()[since:].splitlines()

    def records(self, since: int = 0) -> list[dict[str, Any]]:
        """Each line as the JSON object it must be."""
        return [json.loads(line) for line in self.lines(since)]


@contextmanager
def captured_logs(log_format: LogFormat = "json") -> Iterator[Captured]:
    """The lines of the app built last: its gateway handler's, and the root's as a server has it.

    `gateway serve` puts the same formatter on the root logger; here a handler
    of the same kind stands in for it, and the gateway's handler writes to the
    same buffer. Everything is put back afterwards.
    """
    captured = Captured()
    gateway_logger = logging.getLogger("gateway")
    handler = next(h for h in gateway_logger.handlers if isinstance(h, GatewayHandler))
    previous_stream = handler.setStream(captured.stream)
    root = logging.getLogger()
    root_handler = GatewayHandler(captured.stream)
    root_handler.setFormatter(formatter(log_format, INSTANCE))
    root.addHandler(root_handler)
    try:
        yield captured
    finally:
        root.removeHandler(root_handler)
        if previous_stream is not None:
            handler.setStream(previous_stream)


async def requested(
    client: httpx.AsyncClient, captured: Captured, path: str, **options: Any
) -> tuple[httpx.Response, list[dict[str, Any]]]:
    """The response to GET `path`, and the lines written while it was served."""
    since = captured.mark()
    response = await client.get(path, **options)
    return response, captured.records(since)


def assert_json_line(record: dict[str, Any]) -> None:
    assert record.keys() >= JSON_FIELDS, record
    stamp = datetime.fromisoformat(record["timestamp"])
    assert record["timestamp"].endswith("Z")
    assert stamp.utcoffset() == timedelta(0)
    assert record["instance"] == INSTANCE
    assert isinstance(record["pid"], int)


@pytest.mark.parametrize("impl", ["legacy", "async"])
async def test_every_line_of_a_request_carries_its_request_id(
    committed_database: str, impl: str
) -> None:
    app = logging_app(committed_database, default_mode=impl)
    with captured_logs() as captured:
        async with serving(app) as client:
            threads.clear()
            first, lines = await requested(client, captured, "/logged/7")
            second, second_lines = await requested(client, captured, "/logged/8")

    assert first.status_code == 200, first.text
    assert first.json() == {"n": 7}
    request_id = first.headers["x-request-id"]
    assert GENERATED_ID.fullmatch(request_id)
    assert second.headers["x-request-id"] != request_id
    assert {(r["logger"], r["message"]) for r in lines} == {
        ("gateway.test_logs", f"{impl} endpoint, gateway logger"),
        ("test_logs.app", f"{impl} endpoint, app logger"),
    }
    for record in lines:
        assert_json_line(record)
        assert record["request_id"] == request_id
        assert record["level"] == "warning"
    assert {r["request_id"] for r in second_lines} == {second.headers["x-request-id"]}
    if impl == "legacy":  # written in the threadpool, not on the event loop's thread
        assert threads["legacy"] != threading.get_ident()


async def test_lines_outside_requests_have_no_request_id(committed_database: str) -> None:
    app = logging_app(committed_database)
    with captured_logs() as captured:
        gateway_lines.warning("before the app starts")
        app_lines.warning("the app's own, outside a request")
        async with serving(app):
            pass
    records = captured.records()
    assert [r["message"] for r in records[:2]] == [
        "before the app starts",
        "the app's own, outside a request",
    ]
    for record in records:
        assert_json_line(record)
        assert record["request_id"] is None


async def test_a_valid_request_id_from_the_client_is_kept(committed_database: str) -> None:
    chosen = "client-7f3a.42:retry=1"
    with captured_logs() as captured:
        async with serving(logging_app(committed_database)) as client:
            response, lines = await requested(
                client, captured, "/logged/1", headers={"X-Request-ID": chosen}
            )
    assert response.headers["x-request-id"] == chosen
    assert len(lines) == 2
    assert {r["request_id"] for r in lines} == {chosen}


@pytest.mark.parametrize(
    "sent",
    ["x" * 129, "has spaces", 'quote"d', "line\tbreak", ""],
    ids=["too-long", "spaces", "quote", "tab", "empty"],
)
async def test_an_invalid_request_id_from_the_client_is_replaced(
    committed_database: str, sent: str
) -> None:
    with captured_logs() as captured:
        async with serving(logging_app(committed_database)) as client:
            response, lines = await requested(
                client, captured, "/logged/1", headers={"X-Request-ID": sent}
            )
    assert response.status_code == 200, response.text
    replaced = response.headers["x-request-id"]
    assert GENERATED_ID.fullmatch(replaced)
    assert lines
    assert {r["request_id"] for r in lines} == {replaced}
    if sent:  # the middleware says it replaced one, on a line of the request too
        assert any(r["logger"] == "asgi_correlation_id" for r in lines)


async def test_an_error_traceback_is_one_json_line_with_the_request_id(
    committed_database: str,
) -> None:
    with captured_logs() as captured:
        async with serving(logging_app(committed_database)) as client:
            response, lines = await requested(client, captured, "/failing")
    assert response.status_code == 500
    request_id = response.headers["x-request-id"]
    (error,) = [r for r in lines if r["level"] == "error"]
    assert_json_line(error)
    assert error["request_id"] == request_id
    assert error["logger"] == "gateway.routing.pairing"
    assert error["exception"].startswith("Traceback (most recent call last):")
    assert "RuntimeError: failing on purpose" in error["exception"]
    assert {r["request_id"] for r in lines} == {request_id}


async def test_a_500_of_fastapis_own_error_middleware_carries_the_request_id(
    committed_database: str,
) -> None:
    """In the `detail` error format the 500 comes from FastAPI's outermost middleware."""
    app = logging_app(committed_database, error_format="detail")
    async with serving(app) as client:
        response = await client.get("/failing", headers={"X-Request-ID": "failing-1"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "failing-1"


async def test_answers_of_the_gateway_itself_carry_a_request_id(committed_database: str) -> None:
    app = logging_app(committed_database, threadpool_size=1, threadpool_max_queue=0)
    held.entered.clear()
    held.release.clear()
    answers: dict[str, httpx.Response] = {}
    async with serving(app, admin=False) as client:
        answers["unknown path"] = await client.get("/nowhere")
        answers["admin refused"] = await client.get("/admin/routes")
        answers["admin"] = await client.get("/admin/routes", headers=AUTH)
        answers["health"] = await client.get("/healthz")

        async def hold() -> None:
            answers["held"] = await client.get("/holding")

        async with anyio.create_task_group() as group:
            group.start_soon(hold)
            with anyio.fail_after(WAIT_SECONDS):
                while not held.entered.is_set():
                    await anyio.sleep(0.01)
            answers["threads busy"] = await client.get("/logged/1")
            held.release.set()

    statuses = {name: response.status_code for name, response in answers.items()}
    assert statuses == {
        "unknown path": 404,
        "admin refused": 401,
        "admin": 200,
        "health": 200,
        "held": 200,
        "threads busy": 503,
    }
    ids = [response.headers.get("x-request-id") for response in answers.values()]
    assert all(GENERATED_ID.fullmatch(str(request_id)) for request_id in ids), ids
    assert len(set(ids)) == len(ids)


async def test_shadow_lines_carry_the_request_id_of_the_request_that_caused_them(
    committed_database: str,
) -> None:
    with captured_logs() as captured:
        async with serving(logging_app(committed_database)) as client:
            changed = await client.put(
                "/admin/routes/" + quote(SHAKY_ROUTE, safe=""),
                json={"mode": "shadow", "primary": "legacy", "reason": "compare"},
            )
            assert changed.status_code == 200, changed.text
            since = captured.mark()
            response = await client.get("/shaky", headers={"X-Request-ID": "shadowed-1"})
            deadline = time.monotonic() + WAIT_SECONDS
            while "(async)" not in captured.stream.getvalue()[since:]:
                assert time.monotonic() < deadline, captured.lines(since)
                await anyio.sleep(0.02)
            await anyio.sleep(0.05)  # let the shadow finish its own lines
            lines = captured.records(since)

    assert response.json() == {"side": "legacy"}
    assert response.headers["x-request-id"] == "shadowed-1"
    assert {r["message"] for r in lines} >= {
        "async twin, about to fail",
        "unhandled error in /shaky (async)",
    }
    assert {r["request_id"] for r in lines} == {"shadowed-1"}


async def test_text_lines_are_readable_and_show_the_request_id(committed_database: str) -> None:
    with captured_logs("text") as captured:
        gateway_lines.warning("outside any request")
        async with serving(logging_app(committed_database, log_format="text")) as client:
            since = captured.mark()
            response = await client.get("/logged/3")
            during = captured.lines(since)
            failing = captured.mark()
            await client.get("/failing")
            traceback = captured.lines(failing)

    request_id = response.headers["x-request-id"]
    outside = captured.lines()[0]
    assert "outside any request" in outside
    assert "[warning" in outside
    assert "[gateway.test_logs]" in outside
    assert "request_id" not in outside
    assert len(during) == 2
    for line in during:
        assert not line.startswith("{")
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z \[warning", line), line
        assert line.endswith(f"request_id={request_id}")
    assert "legacy endpoint, app logger" in during[1]
    assert "Traceback (most recent call last):" in traceback
    assert traceback[-1] == "RuntimeError: failing on purpose"


# Real processes: `gateway serve` with two workers, uvicorn's lines through the same formatter.

SERVED_APP = textwrap.dedent(
    """
    import logging

    from fastapi import APIRouter

    from demo.app import ASYNC_ROUTERS, LEGACY_ROUTERS, create_demo_app

    logger = logging.getLogger("logs_app")
    router = APIRouter()


    @router.get("/logged")
    def logged() -> dict[str, str]:
        logger.warning("legacy endpoint of the served app")
        return {"logged": "yes"}


    @router.get("/failing")
    def failing() -> dict[str, str]:
        raise RuntimeError("failing on purpose")


    app = create_demo_app(
        legacy_routers=[*LEGACY_ROUTERS, router], async_routers=ASYNC_ROUTERS
    )
    """
)


@contextmanager
def served(database_url: str, tmp_path: Path, log_format: LogFormat) -> Iterator[tuple[str, Path]]:
    """`gateway serve --workers 2` of an app that logs; yields its URL and its log file."""
    (tmp_path / "logs_app.py").write_text(SERVED_APP)
    port = free_port()
    env = child_env(
        {
            "GATEWAY_APP": "logs_app:app",
            "GATEWAY_DATABASE_URL": database_url,
            "GATEWAY_LOG_FORMAT": log_format,
            "GATEWAY_LOG_LEVEL": "INFO",
            "GATEWAY_INSTANCE_NAME": INSTANCE,
            "GATEWAY_ERROR_FORMAT": "detail",  # a failure reaches uvicorn, which logs it
        }
    )
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    log_path = tmp_path / "server.log"
    command = gateway_command("serve", "--port", str(port), "--workers", "2")
    with running_server(
        command, env, port, log_path, deadline_seconds=SERVER_START_SECONDS, cwd=tmp_path
    ) as running:
        wait_for_workers_started(log_path, 2)
        yield running.base_url, log_path
        stopped = stop_process(running.process)
        assert not stopped.killed, running.log()


def wait_for_workers_started(log_path: Path, workers: int) -> None:
    """Until that many workers said their app started (a slow one may be replaced first)."""
    deadline = time.monotonic() + SERVER_START_SECONDS
    while log_path.read_text().count(STARTED) < workers:
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.1)


def some_requests(base_url: str) -> dict[str, httpx.Response]:
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        return {
            "logged": client.get("/logged"),
            "client id": client.get("/logged", headers={"X-Request-ID": "from-the-client"}),
            "user": client.get("/users/1"),
            "unknown": client.get("/nowhere"),
            "failing": client.get("/failing"),
        }


@pytest.mark.slow
def test_gateway_serve_with_two_workers_writes_only_json_lines(
    committed_database: str, tmp_path: Path
) -> None:
    with served(committed_database, tmp_path, "json") as (base_url, log_path):
        answers = some_requests(base_url)
    lines = log_path.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line: one JSON object

    assert [answers[name].status_code for name in answers] == [200, 200, 200, 404, 500]
    for record in records:
        assert_json_line(record)
    started = [r for r in records if r["message"] == STARTED]
    assert len({r["pid"] for r in started}) >= 2, lines  # each worker's uvicorn lines are JSON
    outside = [r for r in records if r["logger"] == "uvicorn.error" and "exception" not in r]
    assert outside
    assert all(r["request_id"] is None for r in outside)  # starting, stopping
    for name, response in answers.items():
        request_id = response.headers["x-request-id"]
        mine = [r for r in records if r["request_id"] == request_id]
        access = [r for r in mine if r["logger"] == "uvicorn.access"]
        assert len(access) == 1, (name, mine)
        assert access[0]["status"] == response.status_code
        assert access[0]["path"] == response.request.url.path
        if name in ("logged", "client id"):
            assert "legacy endpoint of the served app" in [r["message"] for r in mine]
    assert answers["client id"].headers["x-request-id"] == "from-the-client"
    failing_id = answers["failing"].headers["x-request-id"]
    (traceback,) = [r for r in records if "exception" in r]
    assert traceback["request_id"] == failing_id
    assert traceback["logger"] == "uvicorn.error"
    assert "RuntimeError: failing on purpose" in traceback["exception"]


@pytest.mark.slow
def test_gateway_serve_in_text_mode_writes_readable_lines(
    committed_database: str, tmp_path: Path
) -> None:
    with served(committed_database, tmp_path, "text") as (base_url, log_path):
        answers = some_requests(base_url)
    lines = log_path.read_text().splitlines()

    assert not any(line.startswith("{") for line in lines)
    request_id = answers["logged"].headers["x-request-id"]
    access = [line for line in lines if f"request_id={request_id}" in line]
    assert any('"GET /logged HTTP/1.1" 200 [uvicorn.access]' in line for line in access), lines
    assert any("legacy endpoint of the served app" in line for line in access), lines
    started = [line for line in lines if STARTED in line]
    assert len(started) >= 2, lines
    assert all(re.search(r"complete\.\s+\[uvicorn\.error\]$", line) for line in started), started
