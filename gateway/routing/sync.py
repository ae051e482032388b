"""Keeps every worker's routing table in step with the database.

One asyncpg connection per worker LISTENs on `gateway_routes`; a notification
reloads the table, so a change made through any instance applies everywhere
within milliseconds. Besides, the table is reloaded every
`route_reload_seconds`, and every second while the listening connection is
down (it is re-opened with back-off), so a lost notification costs at most
that long.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.database.engines import asyncpg_connect_kwargs
from gateway.routing.store import CHANNEL, SELECT_MODES, stored_modes
from gateway.routing.table import RouteTable

logger = logging.getLogger(__name__)

POLL_WHILE_DISCONNECTED = 1.0
MAX_BACKOFF = 10.0


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


async def keep_in_sync(table: RouteTable, engine: AsyncEngine, every: float) -> None:
    """Run until cancelled: listen while possible, poll while not."""
    backoff = POLL_WHILE_DISCONNECTED
    while True:
        listening = anyio.Event()
        try:
            await _listen(table, engine, every, listening)
        except Exception as error:  # whatever happened to it, the listener must not stop the app
            logger.warning("route listener lost (%s); polling every second", type(error).__name__)
        if listening.is_set():
            backoff = POLL_WHILE_DISCONNECTED
        with anyio.move_on_after(backoff):
            while True:
                await reload_quietly(table)
                await anyio.sleep(POLL_WHILE_DISCONNECTED)
        backoff = min(backoff * 2, MAX_BACKOFF)


async def _listen(
    table: RouteTable, engine: AsyncEngine, every: float, listening: anyio.Event
) -> None:
    changed = anyio.Event()
    lost = anyio.Event()

    def on_notify(*_: object) -> None:
        changed.set()

    def on_lost(*_: object) -> None:
        lost.set()
        changed.set()

    connection = await asyncpg.connect(**asyncpg_connect_kwargs(engine, "gateway-listener"))
    try:
        connection.add_termination_listener(on_lost)
        await connection.add_listener(CHANNEL, on_notify)
        listening.set()
        await reload_quietly(table, connection)  # changes made before LISTEN began
        while not lost.is_set():
            with anyio.move_on_after(every):
                await changed.wait()
            changed = anyio.Event()
            await reload_quietly(table, connection)
            if connection.is_closed():
                break
    finally:
        await connection.close(timeout=2)
    raise OSError("listening connection closed")
