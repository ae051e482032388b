"""Sampled during load: the server's memory (process tree) and the busy database connections."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

from bench.database import plain
from bench.servers import tree_rss

INTERVAL_SECONDS = 0.25
CONNECTIONS_QUERY = """
SELECT count(*) FILTER (WHERE state <> 'idle'), count(*)
FROM pg_stat_activity
WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()
"""


@dataclass
class Peaks:
    rss_bytes: int = 0
    db_busy: int = 0
    db_open: int = 0


@contextmanager
def sampling(database_url: str, database_name: str, server_pid: int | None) -> Iterator[Peaks]:
    """Sample until the block ends; the yielded peaks are final once it has."""
    peaks = Peaks()
    stopped = threading.Event()
    connection = connect(database_url)

    def sample() -> None:
        while not stopped.wait(INTERVAL_SECONDS):
            if server_pid is not None:
                peaks.rss_bytes = max(peaks.rss_bytes, tree_rss(server_pid))
            if connection is not None:
                sample_connections(connection, database_name, peaks)

    sampler = threading.Thread(target=sample, name="bench-sampler", daemon=True)
    sampler.start()
    try:
        yield peaks
    finally:
        stopped.set()
        sampler.join()
        if connection is not None:
            connection.close()


def connect(database_url: str) -> psycopg.Connection[tuple[object, ...]] | None:
    """A connection for sampling; None when the server refuses one (say, at max_connections)."""
    try:
        return psycopg.connect(plain(database_url), autocommit=True)
    except psycopg.OperationalError:
        return None


def sample_connections(
    connection: psycopg.Connection[tuple[object, ...]], database_name: str, peaks: Peaks
) -> None:
    try:
        row = connection.execute(CONNECTIONS_QUERY, (database_name,)).fetchone()
    except psycopg.Error:
        return
    if row is not None:
        peaks.db_busy = max(peaks.db_busy, int(str(row[0])))
        peaks.db_open = max(peaks.db_open, int(str(row[1])))
