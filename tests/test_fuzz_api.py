"""`schemathesis run --checks all` against the demo's API and the admin API: no failure of any kind.

Each of the API's twin routes served by legacy, by async, and in shadow mode;
every phase (examples, coverage, fuzzing, stateful). The one check left out is
in `EXCEPTIONS`, with why plain FastAPI fails it alike, and a test showing the
gateway answers exactly as plain FastAPI there.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from demo.app import ASYNC_ROUTERS, LEGACY_ROUTERS, create_demo_app
from tests.conftest import test_settings as gateway_settings
from tests.processes import LOCALHOST

# a real server fuzzed for minutes: once per run, on the embedded server (see scripts/test)
pytestmark = pytest.mark.slow

# Per operation in the fuzzing phase (the coverage phase runs whole); FUZZ_EXAMPLES=200 goes deeper.
EXAMPLES_PER_OPERATION = int(os.environ.get("FUZZ_EXAMPLES", "10"))
RUN_SECONDS = 600
START_SECONDS = 10.0
STOP_SECONDS = 10.0
# Reproducible in CI; FUZZ_SEED=random (or a number) explores further.
SEED = os.environ.get("FUZZ_SEED", "20261202")
DOCUMENTS = "^/documents"
ADMIN_TOKEN = "fuzzing-token-0123456789"
EXCEPTIONS = {
    "allow_header_conformance": (
        "a request whose path matches but whose method does not is a 405 with the Allow "
        "header of the first route matching that path: `OPTIONS /users` answers "
        "`Allow: GET` though POST /users exists too. That is Starlette's routing, in plain "
        "FastAPI as in the gateway (test_unmatched_methods_are_answered_as_plain_fastapi)"
    ),
}
TWINS_SAFE = [
    "GET /users",
    "GET /users/{user_id}",
    "GET /items",
    "GET /items/{item_id}",
]


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


def schemathesis_run(schema_url: str, *options: str) -> subprocess.CompletedProcess[str]:
    """The schemathesis CLI, every check but the listed exceptions."""
    command = [
        sys.executable,
        "-c",
        "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())",
        "run",
        schema_url,
        "--checks",
        "all",
        "--exclude-checks",
        ",".join(EXCEPTIONS),
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--seed",
        SEED,
        "--no-color",
        # how fast hypothesis makes examples (vectors of 384 floats) is not the API's doing
        "--suppress-health-check=too_slow",
        *options,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=RUN_SECONDS)


def assert_passed(run: subprocess.CompletedProcess[str]) -> None:
    assert run.returncode == 0, run.stdout + run.stderr


def fuzzed_app(database_url: str, *, default_mode: str) -> FastAPI:
    return create_demo_app(
        gateway_settings(
            database_url,
            default_mode=default_mode,
            admin_tokens={"fuzzer": ADMIN_TOKEN},
            admin_report_max_window=0.2,
        )
    )


def shadow_every_safe_twin(base_url: str) -> None:
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=base_url, headers=headers) as admin:
        for key in TWINS_SAFE:
            answer = admin.put(f"/admin/routes/{key}", json={"mode": "shadow"})
            assert answer.status_code == 200, answer.text
        modes = {route["route"]: route["mode"] for route in admin.get("/admin/routes").json()}
    assert all(modes[key] == "shadow" for key in TWINS_SAFE), modes


def shadow_comparisons(base_url: str) -> float:
    text = httpx.get(f"{base_url}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("gateway_shadow_comparisons_total{")
    )


@pytest.mark.parametrize("mode", ["legacy", "async", "shadow"])
def test_the_api_passes_every_check(committed_database: str, has_pgvector: bool, mode: str) -> None:
    app = fuzzed_app(committed_database, default_mode="async" if mode == "async" else "legacy")
    skipped = [] if has_pgvector else ["--exclude-path-regex", DOCUMENTS]
    with served_in_thread(app) as base_url:
        if mode == "shadow":
            shadow_every_safe_twin(base_url)
        run = schemathesis_run(f"{base_url}/openapi.json", *skipped)
        compared = shadow_comparisons(base_url)
    assert_passed(run)
    if mode == "shadow":
        assert compared > 0


def test_the_admin_api_passes_every_check(committed_database: str) -> None:
    app = fuzzed_app(committed_database, default_mode="legacy")
    with served_in_thread(app) as base_url:
        run = schemathesis_run(
            f"{base_url}/admin/openapi.json", "--header", f"Authorization: Bearer {ADMIN_TOKEN}"
        )
    assert_passed(run)


def bare_fastapi() -> FastAPI:
    """The demo's routers on plain FastAPI, no gateway: how FastAPI itself routes methods."""
    app = FastAPI()
    for router in [*LEGACY_ROUTERS, *ASYNC_ROUTERS]:
        app.include_router(router)
    return app


UNMATCHED_METHODS = [
    ("OPTIONS", "/users"),
    ("OPTIONS", "/items"),
    ("OPTIONS", "/users/1"),
    ("PUT", "/users/1"),
    ("HEAD", "/users"),
    ("DELETE", "/items"),
    ("OPTIONS", "/documents/search"),
]


async def allowed(app: FastAPI, method: str, path: str) -> tuple[int, str | None]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.request(method, path)
    return answer.status_code, answer.headers.get("allow")


@pytest.mark.anyio
async def test_unmatched_methods_are_answered_as_plain_fastapi(database_url: str) -> None:
    plain = bare_fastapi()
    gateway = create_demo_app(gateway_settings(database_url))
    async with gateway.router.lifespan_context(gateway):
        for method, path in UNMATCHED_METHODS:
            expected = await allowed(plain, method, path)
            assert await allowed(gateway, method, path) == expected, (method, path)
    assert await allowed(plain, "OPTIONS", "/users") == (405, "GET")
