"""Where the database layer reports what a request spent, for whoever measures requests.

The metrics middleware puts a `RequestTimes` in `current_times` for each API
request; sessions, lean reads and query hooks add to it. Outside a measured
request `current_times` is empty and reports go nowhere.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class RequestTimes:
    """What one request spent in the database and on a worker thread."""

    db_seconds: float = 0.0
    thread_wait: float | None = None  # None: the request never asked for a thread
    thread_seconds: float = 0.0


current_times: ContextVar[RequestTimes | None] = ContextVar("gateway_request_times", default=None)


def add_database_time(seconds: float) -> None:
    """Count `seconds` of database work against the current request, if one is measured."""
    times = current_times.get()
    if times is not None:
        times.db_seconds += seconds


def add_thread_time(waited: float, ran: float) -> None:
    """Record how long the current request waited for a worker thread and ran on it."""
    times = current_times.get()
    if times is not None:
        times.thread_wait = waited
        times.thread_seconds = ran
