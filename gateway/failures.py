"""What a database failure means: which ones say the database cannot be used right now.

Every way of not getting a usable connection is one class of failure, whatever
the driver raised it as:

    08     connection exception (refused, broken, lost)
    28     invalid authorization (authentication failed)
    3D000  the database does not exist
    53     insufficient resources (too many connections, out of memory, disk full)
    57P    operator intervention (shutting down, starting up, crashed, dropped)
    no SQLSTATE: a socket error, a pool that timed out, a connection the driver
           marked invalid, a refusal psycopg reports as text ("FATAL: ...")

SQLAlchemy wraps what the drivers raise while a statement runs; asyncpg raises
its own exceptions, unwrapped, while it connects. `unavailability` recognises
both. Whoever answers such failures logs them through a `RateLimitedLog`: at
most once per `LOG_EVERY_SECONDS` per kind, with how many were not logged
meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from asyncpg import exceptions as asyncpg_errors
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

logger = logging.getLogger(__name__)

UNAVAILABLE_STATES = ("08", "28", "3D000", "53", "57P")
LOG_EVERY_SECONDS = 10.0
MAX_REASON = 120


def sqlstate(error: BaseException) -> str:
    """The SQLSTATE of a driver error, wrapped by SQLAlchemy or not; "" when there is none."""
    original = getattr(error, "orig", None) or error
    state = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    if state is None:
        state = getattr(getattr(original, "__cause__", None), "sqlstate", None)
    return str(state or "")


def unavailability(error: BaseException) -> str | None:
    """Why `error` means the database cannot be used right now (its kind), or None if not."""
    if isinstance(error, PoolTimeout):
        return "no pool connection in time"
    state = sqlstate(error)
    if state.startswith(UNAVAILABLE_STATES):
        return state
    if isinstance(error, DBAPIError):
        link = not state and isinstance(error, OperationalError | InterfaceError)
        said = server_said(error.orig or error)
        return said if error.connection_invalidated or link else None
    if isinstance(error, OSError | asyncpg_errors.PostgresConnectionError):
        return type(error).__name__
    return None


def server_said(error: BaseException) -> str:
    """The server's refusal as libpq reports it without a SQLSTATE ("FATAL: ..."), or its name."""
    message = str(error)
    if "FATAL:" in message:
        return message.split("FATAL:", 1)[1].strip().splitlines()[0][:MAX_REASON]
    return type(error).__name__


class RateLimitedLog:
    """Warn once per kind per `every` seconds; the next warning says how many were skipped."""

    def __init__(self, every: float = LOG_EVERY_SECONDS) -> None:
        self.every = every
        self.last: dict[str, float] = {}
        self.skipped: Counter[str] = Counter()

    def warn(self, kind: str, message: str) -> None:
        now = time.monotonic()
        if now - self.last.get(kind, -self.every) < self.every:
            self.skipped[kind] += 1
            return
        skipped = self.skipped.pop(kind, 0)
        self.last[kind] = now
        suffix = f" ({skipped} more since the last report)" if skipped else ""
        logger.warning("%s%s", message, suffix)

    def unavailable(self, kind: str) -> None:
        self.warn(kind, f"database unavailable: {kind}")
