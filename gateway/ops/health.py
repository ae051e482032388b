"""Operations endpoints: /healthz (process alive) and /readyz (both engines reach the database).

/readyz also reports each PostgreSQL extension the app's routes declare with
`require_extension`, and only those; a missing extension leaves it 200 (the
other routes serve), a database that does not answer makes it 503, and so
does a gateway draining after SIGTERM.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.database.engines import Database, probe_async, probe_sync
from gateway.database.extensions import probe_extension
from gateway.database.state import gateway_state

router = APIRouter(include_in_schema=False)

PROBE_TIMEOUT_SECONDS = 2.0  # a probe answers within about this, whatever the pools are doing
EXTENSION_STATES = {
    True: "ok",
    False: "missing: the extension is not installed",
    None: "unknown: the database does not answer",
}


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _probe_async(database: Database) -> None:
    await probe_async(database.async_engine, PROBE_TIMEOUT_SECONDS)


async def _probe_sync_in_own_thread(database: Database) -> None:
    # A limiter of its own: a saturated endpoint threadpool must not delay the probe.
    await anyio.to_thread.run_sync(
        probe_sync,
        database.sync_engine,
        PROBE_TIMEOUT_SECONDS,
        limiter=anyio.CapacityLimiter(1),
        abandon_on_cancel=True,
    )


async def _check(
    name: str, checks: dict[str, str], probe: Callable[[Database], Awaitable[None]], db: Database
) -> None:
    try:
        with anyio.fail_after(PROBE_TIMEOUT_SECONDS + 1):
            await probe(db)
        checks[name] = "ok"
    except Exception as error:  # any failure means "not ready"; the name of the error says why
        checks[name] = f"failed: {type(error).__name__}"


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    state = gateway_state(request.app)
    database = state.database
    checks: dict[str, str] = {}
    await _check("sync_engine", checks, _probe_sync_in_own_thread, database)
    await _check("async_engine", checks, _probe_async, database)
    ready = all(result == "ok" for result in checks.values())
    for name in sorted(state.required_extensions):
        checks[f"extension {name}"] = EXTENSION_STATES[await probe_extension(database, name)]
    status = "draining" if state.draining else "ready" if ready else "unavailable"
    body = {"status": status, "checks": checks}
    return JSONResponse(body, status_code=200 if status == "ready" else 503)
