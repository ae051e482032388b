"""Property-based fuzzing of every operation in /openapi.json: no 5xx, answers match the schema."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import schemathesis
import uvicorn
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import APIOperation, BaseSchema
from schemathesis.specs.openapi.checks import response_schema_conformance

from demo.app import create_demo_app
from tests.conftest import test_settings as gateway_settings
from tests.processes import LOCALHOST

pytestmark = pytest.mark.anyio

EXAMPLES_PER_OPERATION = 15
START_SECONDS = 10.0
STOP_SECONDS = 10.0
# Sleeps for its `window` (up to 300 s) by design: a report of future traffic, not input handling.
SLEEPING_OPERATION = "/admin/report"
DOCUMENTS = "^/documents"
API_OPERATIONS = {
    "GET /users",
    "POST /users",
    "GET /users/{user_id}",
    "PATCH /users/{user_id}",
    "DELETE /users/{user_id}",
    "GET /items",
    "POST /items",
    "GET /items/{item_id}",
    "POST /orders",
    "GET /orders/{order_id}",
    "GET /users/{user_id}/orders",
    "GET /reports/sales",
}


@contextmanager
def served_in_thread(app: FastAPI) -> Iterator[str]:
    """Serve `app` under uvicorn, lifespan included, in a thread of its own; yield its base URL."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOCALHOST, 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_SECONDS
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        yield f"http://{LOCALHOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(STOP_SECONDS)
        listener.close()
    assert not thread.is_alive(), "the server did not stop"


@pytest.fixture(params=["legacy", "async"])
def api_schema(
    request: pytest.FixtureRequest, committed_database: str, has_pgvector: bool
) -> Iterator[BaseSchema]:
    """The served API's own schema, twin routes served by one implementation per run.

    Without pgvector the document routes answer 503 by design; they are left out then.
    """
    app = create_demo_app(gateway_settings(committed_database, default_mode=request.param))
    with served_in_thread(app) as base_url:
        schema: BaseSchema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
        schema = schema.exclude(path=SLEEPING_OPERATION)
        if not has_pgvector:
            schema = schema.exclude(path_regex=DOCUMENTS)
        yield schema


def fuzz(operation: APIOperation, mode: GenerationMode) -> None:
    """Run `EXAMPLES_PER_OPERATION` generated requests; raise the first failing check."""

    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def examples(case: Case) -> None:
        case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])

    examples()


def failure_of(operation: APIOperation, mode: GenerationMode) -> str | None:
    """What fuzzing `operation` in `mode` found wrong, if anything."""
    try:
        fuzz(operation, mode)
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        return None  # every input is valid: there is nothing invalid to send
    except (Exception, BaseExceptionGroup) as failure:
        return str(failure)
    return None


def test_no_operation_fails_or_breaks_its_schema(api_schema: BaseSchema) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    failures = {}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failure = failure_of(operation, mode)
            if failure is not None:
                failures[f"{operation.label} ({mode.value})"] = failure

    assert {operation.label for operation in operations} >= API_OPERATIONS
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
