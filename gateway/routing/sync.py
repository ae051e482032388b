"""Keeps every worker's routing table in step with the database, and says which it holds.

One asyncpg connection per worker LISTENs on `gateway_routes`; a notification
reloads the table, so a change made through any instance applies everywhere
within milliseconds. Besides, the table is reloaded every
`route_reload_seconds`, and every second while the listening connection is
down (it is re-opened with back-off), so a lost notification costs at most
that long. Behind a pooler in transaction mode LISTEN cannot work (the server
connection is someone else's between transactions): the listener needs a
direct URL (`GATEWAY_LISTEN_DATABASE_URL`), and without one the table is only
reloaded every `route_reload_seconds`. After every reload the worker reports
the version it holds (`gateway.routing.fleet`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import asyncpg

from gateway.database.engines import asyncpg_connect_kwargs
from gateway.database.uninterrupted import uninterrupted
from gateway.routing.fleet import Heartbeat
from gateway.routing.store import CHANNEL, SELECT_MODES, stored_modes
from gateway.routing.table import RouteTable

logger = logging.getLogger(__name__)

POLL_WHILE_DISCONNECTED = 1.0
MAX_BACKOFF = 10.0
LONGEST_RELOAD = 5.0  # seconds a shutdown waits for a reload or a connect under way


async def reload_quietly(table: RouteTable, connection: Any = None) -> bool:
    """Reload the modes (on the listening connection when given, else on the pool)."""
    try:
        if connection is None:
            await table.reload()
        else:
            table.apply(stored_modes(await connection.fetch(SELECT_MODES)))
    except Exception as error:
        logger.warning("route modes not reloaded: %s", why_not_reloaded(error))
        return False
    return True


UNDEFINED_TABLE = "42P01"


def why_not_reloaded(error: Exception) -> str:
    """The error's name, or what to do when the gateway's tables have gone."""
    cause = getattr(error, "orig", None) or error
    state = getattr(cause, "sqlstate", None) or getattr(
        getattr(cause, "__cause__", None), "sqlstate", None
    )
    if state == UNDEFINED_TABLE:
        return "the table gateway_routes does not exist: run `gateway db upgrade`"
    return type(error).__name__


async def keep_in_sync(
    table: RouteTable, every: float, listen_url: str | None, heartbeat: Heartbeat | None = None
) -> None:
    """Run until cancelled: listen on `listen_url` while possible, poll while not.

    Without `listen_url`, poll every `every` seconds.
    """

    async def reload(connection: Any = None) -> None:
        await uninterrupted(reload_quietly(table, connection), limit=LONGEST_RELOAD)
        if heartbeat is not None:
            await uninterrupted(heartbeat.beat(table.version, connection), limit=LONGEST_RELOAD)

    def period() -> float:
        """Until the next reload: sooner while a report waits to be written."""
        return POLL_WHILE_DISCONNECTED if heartbeat is not None and heartbeat.failed else every

    if listen_url is None:
        while True:
            await reload()
            await anyio.sleep(period())
    backoff = POLL_WHILE_DISCONNECTED
    while True:
        listening = anyio.Event()
        try:
            await _listen(listen_url, period, listening, reload)
        except Exception as error:  # whatever happened to it, the listener must not stop the app
            logger.warning("route listener lost (%s); polling every second", type(error).__name__)
        if listening.is_set():
            backoff = POLL_WHILE_DISCONNECTED
        with anyio.move_on_after(backoff):
            while True:
                await reload()
                await anyio.sleep(POLL_WHILE_DISCONNECTED)
        backoff = min(backoff * 2, MAX_BACKOFF)


async def _listen(
    listen_url: str,
    period: Callable[[], float],
    listening: anyio.Event,
    reload: Callable[[Any], Awaitable[None]],
) -> None:
    changed = anyio.Event()
    lost = anyio.Event()

    def on_notify(*_: object) -> None:
        changed.set()

    def on_lost(*_: object) -> None:
        lost.set()
        changed.set()

    connect = asyncpg.connect(**asyncpg_connect_kwargs(listen_url, "gateway-listener"))
    connection = await uninterrupted(connect, limit=LONGEST_RELOAD)
    try:
        connection.add_termination_listener(on_lost)
        await connection.add_listener(CHANNEL, on_notify)
        listening.set()
        await reload(connection)  # changes made before LISTEN began
        while not lost.is_set():
            with anyio.move_on_after(period()):
                await changed.wait()
            changed = anyio.Event()
            await reload(connection)
            if connection.is_closed():
                break
    finally:
        await connection.close(timeout=2)
    raise OSError("listening connection closed")
