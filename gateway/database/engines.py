"""The one place that knows both drivers: one URL becomes a psycopg engine and an asyncpg engine.

Engines are built by `open_database` (called from the app's lifespan, never at
import) and released by `Database.dispose`. Sessions never expire loaded
attributes on commit, because the session is closed before the response is
serialised (see `gateway.database.sessions`).
"""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker

from gateway.settings import Settings

logger = logging.getLogger(__name__)

SYNC_DRIVER = "postgresql+psycopg"
ASYNC_DRIVER = "postgresql+asyncpg"
APPLICATION_NAME = "gateway"
IDLE_SINCE = "gateway_idle_since"
# per engine: the DBAPI connections checked out of its pool now
IN_USE: weakref.WeakKeyDictionary[Engine, set[Any]] = weakref.WeakKeyDictionary()
CANCEL_SECONDS = 2.0
# per engine: the driver's connect arguments, for probes that connect as the pool does
CONNECT_ARGS: weakref.WeakKeyDictionary[Engine, dict[str, Any]] = weakref.WeakKeyDictionary()
# engines behind a transaction pooler: the statement each transaction starts with ("": none)
POOLED_ENGINES: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()


def base_url(database_url: str) -> URL:
    """Parse any postgres URL spelling and drop the driver part."""
    url = make_url(database_url.replace("postgres://", "postgresql://", 1))
    return url.set(drivername="postgresql")


def sync_url(database_url: str) -> URL:
    return base_url(database_url).set(drivername=SYNC_DRIVER)


def async_url(database_url: str) -> URL:
    return base_url(database_url).set(drivername=ASYNC_DRIVER)


def sync_connect_args(settings: Settings) -> dict[str, Any]:
    arguments: dict[str, Any] = {"application_name": f"{APPLICATION_NAME}-sync"}
    if not settings.transaction_pooling:  # a pooler refuses it: see transaction_setup
        arguments["options"] = f"-c statement_timeout={settings.statement_timeout_ms}"
    if not settings.prepared_statements:
        arguments["prepare_threshold"] = None  # psycopg prepares after 5 runs otherwise
    return arguments


def async_connect_args(settings: Settings, role: str = "async") -> dict[str, Any]:
    server_settings = {"application_name": f"{APPLICATION_NAME}-{role}"}
    if not settings.transaction_pooling:
        server_settings["statement_timeout"] = str(settings.statement_timeout_ms)
    arguments: dict[str, Any] = {"server_settings": server_settings}
    if not settings.prepared_statements:
        # asyncpg's own cache (the lean path) and SQLAlchemy's (the ORM path) both name
        # their statements; an empty name is PostgreSQL's unnamed statement.
        arguments.update(
            statement_cache_size=0,
            prepared_statement_cache_size=0,
            prepared_statement_name_func=unnamed_statement,
        )
    return arguments


def unnamed_statement() -> str:
    return ""


def transaction_setup(settings: Settings) -> str:
    """What each transaction runs first when the connection's session is not its own.

    Behind a pooler in transaction mode, consecutive transactions of one client
    run on different server connections, and session settings (startup
    parameters, plain SET) would stay behind on a connection another client gets
    next. `SET LOCAL` lasts exactly one transaction, wherever it runs.
    """
    if not settings.statement_timeout_ms:
        return ""
    return f"SET LOCAL statement_timeout = {settings.statement_timeout_ms}"


def behind_transaction_pooler(engine: Engine, settings: Settings) -> None:
    """Under transaction pooling, start every transaction on `engine` with `transaction_setup`.

    The setup runs on the DBAPI connection, which begins the transaction itself
    (psycopg sends BEGIN first, SQLAlchemy's asyncpg adapter starts its own).
    The engine is remembered, so lean statements run in a transaction too.
    """
    if not settings.transaction_pooling:
        return
    setup = POOLED_ENGINES[engine] = transaction_setup(settings)
    if not setup:
        return

    def run_setup(connection: Any) -> None:
        cursor = connection.connection.dbapi_connection.cursor()
        try:
            cursor.execute(setup)
        finally:
            cursor.close()

    event.listen(engine, "begin", run_setup)


def pooled_setup(engine: Engine) -> str | None:
    """None on a direct connection; behind a transaction pooler, each transaction's setup."""
    return POOLED_ENGINES.get(engine)


def create_sync_engine(settings: Settings, database_url: str) -> Engine:
    connect_args = sync_connect_args(settings)
    engine = create_engine(
        sync_url(database_url),
        pool_size=settings.sync_pool_size,
        max_overflow=settings.sync_max_overflow,
        pool_timeout=settings.pool_timeout,
        connect_args=connect_args,
    )
    CONNECT_ARGS[engine] = connect_args
    ping_when_idle(engine, settings.pool_ping_idle_seconds)
    track_in_use(engine)
    behind_transaction_pooler(engine, settings)
    return engine


def create_async_engine_for(
    settings: Settings, database_url: str, *, pool_size: int | None = None, role: str = "async"
) -> AsyncEngine:
    """An asyncpg engine as the settings want it; `pool_size` and `role` (its connections'
    application name, gateway-ROLE) for a small pool of its own."""
    connect_args = async_connect_args(settings, role)
    engine = create_async_engine(
        async_url(database_url),
        pool_size=settings.async_pool_size if pool_size is None else pool_size,
        max_overflow=settings.async_max_overflow if pool_size is None else 0,
        pool_timeout=settings.pool_timeout,
        connect_args=connect_args,
    )
    CONNECT_ARGS[engine.sync_engine] = connect_args
    ping_when_idle(engine.sync_engine, settings.pool_ping_idle_seconds)
    behind_transaction_pooler(engine.sync_engine, settings)
    return engine


def ping_when_idle(engine: Engine, idle_seconds: float) -> None:
    """Test a connection as it leaves the pool if it sat idle for `idle_seconds` or more.

    A connection that failed the test is replaced before the request sees it, so
    a restarted database costs no failed request once it is back. Busy
    connections skip the round trip: if the database goes away under load, the
    first error invalidates every connection of the pool instead.
    """

    def stamp(dbapi_connection: Any, record: Any) -> None:
        record.info[IDLE_SINCE] = time.monotonic()

    def test(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_since = record.info.get(IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise DisconnectionError("connection failed its test after idling") from error

    event.listen(engine, "checkin", stamp)
    event.listen(engine, "checkout", test)


@dataclass
class Database:
    """Both engines and their session factories; tests may bind the factories to connections."""

    sync_engine: Engine
    async_engine: AsyncEngine
    sync_sessions: sessionmaker[Session]
    async_sessions: async_sessionmaker[AsyncSession]
    extensions: dict[str, bool] = field(default_factory=dict)  # learnt once the database answers
    owns_engines: bool = field(default=True)

    async def dispose(self) -> None:
        if self.owns_engines:
            await self.async_engine.dispose()
            self.sync_engine.dispose()

    def checked_out(self) -> int:
        """Connections of both pools in use now."""
        return sum(
            _checked_out(engine.pool)
            for engine in (self.sync_engine, self.async_engine.sync_engine)
        )

    def cancel_sync_queries(self) -> int:
        """Ask PostgreSQL to cancel what every sync connection in use is running.

        The threads running legacy endpoints cannot be interrupted, but a query
        they wait on can: it fails, the endpoint's session rolls back and its
        thread returns. Returns how many connections were asked.
        """
        running = list(IN_USE.get(self.sync_engine, ()))
        for dbapi_connection in running:
            with contextlib.suppress(Exception):  # it may have finished meanwhile
                dbapi_connection.cancel_safe(timeout=CANCEL_SECONDS)
        return len(running)


def _checked_out(pool: Any) -> int:
    counted = getattr(pool, "checkedout", None)
    return int(counted()) if callable(counted) else 0


def track_in_use(engine: Engine) -> None:
    """Keep the set of DBAPI connections checked out of `engine`'s pool in `IN_USE[engine]`."""
    in_use: set[Any] = IN_USE.setdefault(engine, set())

    def checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        in_use.add(dbapi_connection)

    def checked_in(dbapi_connection: Any, record: Any) -> None:
        in_use.discard(dbapi_connection)

    event.listen(engine, "checkout", checked_out)
    event.listen(engine, "checkin", checked_in)


def open_database(settings: Settings, database_url: str) -> Database:
    sync_engine = create_sync_engine(settings, database_url)
    async_engine = create_async_engine_for(settings, database_url)
    return Database(
        sync_engine=sync_engine,
        async_engine=async_engine,
        sync_sessions=sessionmaker(sync_engine, expire_on_commit=False),
        async_sessions=async_sessionmaker(async_engine, expire_on_commit=False),
    )


def asyncpg_connect_kwargs(database_url: str, application_name: str) -> dict[str, Any]:
    """asyncpg.connect() arguments for a URL, as SQLAlchemy's asyncpg dialect would pass them."""
    dialect: Any = asyncpg_dialect()  # type: ignore[no-untyped-call]
    _, kwargs = dialect.create_connect_args(async_url(database_url))
    kwargs.pop("prepared_statement_cache_size", None)  # the dialect's options, not asyncpg's
    kwargs.pop("prepared_statement_name_func", None)
    kwargs["server_settings"] = {"application_name": application_name}
    return dict(kwargs)


def probe_sync(engine: Engine, timeout: float) -> None:
    """Reach the database on a connection of its own, never the pool's: run SELECT 1, close it.

    An exhausted pool is a busy gateway, not an unreachable database; a probe
    that waited for a pooled connection would answer only after the pool timeout.
    """
    cargs, cparams = engine.dialect.create_connect_args(engine.url)
    cparams.update(CONNECT_ARGS.get(engine, {}))  # what the pool's connections start with
    cparams.update(
        connect_timeout=max(1, round(timeout)), application_name=f"{APPLICATION_NAME}-probe"
    )
    connection = engine.dialect.connect(*cargs, **cparams)
    try:
        connection.cursor().execute("SELECT 1")
    finally:
        connection.close()


async def probe_async(engine: AsyncEngine, timeout: float) -> None:
    """`probe_sync` for the async driver."""
    url = engine.url.render_as_string(hide_password=False)
    kwargs = asyncpg_connect_kwargs(url, f"{APPLICATION_NAME}-probe")
    given = CONNECT_ARGS.get(engine.sync_engine, {})  # what the pool's connections start with
    kwargs["server_settings"] = {**given.get("server_settings", {}), **kwargs["server_settings"]}
    connection = await asyncpg.connect(**kwargs, timeout=timeout)
    try:
        await connection.execute("SELECT 1")  # simple protocol: no statement left behind
    finally:
        await connection.close(timeout=timeout)


def warn_if_pool_starves_threads(settings: Settings) -> None:
    """Legacy endpoints hold a thread while they wait for a connection: size both together."""
    if settings.sync_pool_capacity >= settings.threadpool_size:
        return
    logger.warning(
        "the sync pool (%d + %d overflow = %d connections) is smaller than the threadpool "
        "(%d threads): up to %d legacy requests can hold a thread while they wait for a "
        "connection. Raise GATEWAY_SYNC_POOL_SIZE/GATEWAY_SYNC_MAX_OVERFLOW or lower "
        "GATEWAY_THREADPOOL_SIZE.",
        settings.sync_pool_size,
        settings.sync_max_overflow,
        settings.sync_pool_capacity,
        settings.threadpool_size,
        settings.threadpool_size - settings.sync_pool_capacity,
    )
