"""The lifespan the gateway wraps around the app's own: database, gates, background work.

On start: find the database (the configured URL; an embedded server only when
`GATEWAY_EMBEDDED_DATABASE` asks for one; otherwise refuse, naming the
variable), open both engines, check the gateway's schema (refusing to start
half-working), size the threadpool, hook the metrics in, load the route
modes and keep them in sync. Then the app's own lifespan runs inside, with
the database ready. On stop, everything in reverse.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import anyio
from fastapi import FastAPI
from prometheus_client.multiprocess import mark_process_dead
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.database.engines import (
    Database,
    create_async_engine_for,
    open_database,
    warn_if_pool_starves_threads,
)
from gateway.database.gates import ConnectionGate, ThreadGate
from gateway.database.state import GatewayState
from gateway.errors import ConfigurationError
from gateway.metrics.history import MetricsHistory, keep_sampling
from gateway.metrics.instrumentation import instrument, watch_loop
from gateway.metrics.registry import GatewayMetrics
from gateway.ops import embedded, http_protocol
from gateway.ops.gc_tuning import tune_garbage_collector
from gateway.ops.migrations import check_schema, upgrade
from gateway.rollout.driver import Driver, run_driver
from gateway.rollout.notifications import WebhookNotifier, run_notifier
from gateway.rollout.store import Action, fail_on_trip
from gateway.routing.fleet import Heartbeat, this_worker
from gateway.routing.mismatches import MismatchStore
from gateway.routing.noise import NoiseStore
from gateway.routing.sync import keep_in_sync, reload_quietly
from gateway.routing.table import AUTOMATIC_ACTOR, RouteTable
from gateway.settings import ENV_PREFIX, Settings

logger = logging.getLogger(__name__)

Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]
CONTROL_POOL_SIZE = 2  # the rollout driver's and the webhook notifier's connections


class MissingDatabaseUrl(ConfigurationError):
    """No database URL is configured, and no embedded database was asked for."""

    def __init__(self) -> None:
        super().__init__(
            f"no database to serve: set {ENV_PREFIX}DATABASE_URL "
            "(postgresql://user:password@host:5432/dbname)"
        )


@dataclass
class GatewayApp:
    """What the gateway keeps for one app: its settings, its routes, what its lifespan needs."""

    settings: Settings
    table: RouteTable
    metrics: GatewayMetrics
    history: MetricsHistory  # what the console charts, sampled in the background
    required_extensions: frozenset[str]
    prepare_embedded_database: Callable[[str], None] | None = None
    database: Database | None = None  # given by the app (tests): used as is, never disposed
    warnings: list[str] = field(default_factory=list)

    def use_database_url(self, url: str) -> None:
        """Serve the database at `url` (the command line started it, e.g. an embedded one)."""
        self.settings = self.settings.model_copy(update={"database_url": url})

    def prepare_embedded(self, url: str) -> None:
        """Give a fresh embedded database the gateway's tables, then the app's own schema."""
        upgrade(url)
        if self.prepare_embedded_database is not None:
            self.prepare_embedded_database(url)


def gateway_lifespan(inner: Lifespan) -> Callable[[FastAPI], AbstractAsyncContextManager[Any]]:
    """The gateway's lifespan, with the app's own (`inner`) running inside it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        gateway_app: GatewayApp = app.state.gateway_app
        async with AsyncExitStack() as stack:
            state = await start(gateway_app, stack)
            app.state.gateway = state
            stack.callback(delattr, app.state, "gateway")
            stack.callback(drain_on_sigterm(state))
            async with anyio.create_task_group() as background:
                await start_background(gateway_app, state, background, stack)
                async with inner(app) as app_state:
                    yield app_state
                background.cancel_scope.cancel()

    return lifespan


async def start(gateway_app: GatewayApp, stack: AsyncExitStack) -> GatewayState:
    settings = gateway_app.settings
    database, url = await open_configured(gateway_app, stack)
    stack.push_async_callback(let_connections_go, database, settings.shutdown_drain_seconds)
    await anyio.to_thread.run_sync(check_schema_if_reachable, database)
    anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threadpool_size
    http_protocol.configure(settings, closed=gateway_app.metrics.connection_closed)
    warn_if_pool_starves_threads(settings)
    threads = ThreadGate(
        settings.threadpool_size,
        max_queue=settings.threadpool_max_queue,
        max_wait=settings.threadpool_max_wait,
    )
    connections = ConnectionGate(settings.async_pool_capacity, max_wait=settings.pool_timeout)
    return GatewayState(
        settings, database, url, threads, connections, gateway_app.required_extensions
    )


async def open_configured(gateway_app: GatewayApp, stack: AsyncExitStack) -> tuple[Database, str]:
    """The app's database: given, configured, or an embedded one when asked for."""
    if gateway_app.database is not None:
        database = gateway_app.database
        return database, database.sync_engine.url.render_as_string(hide_password=False)
    settings = gateway_app.settings
    url = settings.database_url
    if url is None:
        if not settings.embedded_database:
            raise MissingDatabaseUrl()
        url = stack.enter_context(embedded.embedded_postgres(settings.data_dir))
        await anyio.to_thread.run_sync(gateway_app.prepare_embedded, url)
    database = open_database(settings, url)
    stack.push_async_callback(database.dispose)
    return database, url


def drain_on_sigterm(state: GatewayState) -> Callable[[], None]:
    """On SIGTERM, mark the gateway draining (readiness 503), then hand the signal on.

    The server that runs the app (uvicorn) installed its own handler before the
    lifespan started; it still stops accepting, lets requests in flight finish
    for its graceful-shutdown timeout and cancels the rest. Returns the undo.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGTERM)

    def draining(signum: int, frame: FrameType | None) -> None:
        state.draining = True
        logger.info("draining: readiness answers 503 while requests in flight finish")
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, draining)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


async def let_connections_go(database: Database, seconds: float) -> None:
    """At shutdown, before the pools close: wait for every connection to come back.

    Requests the server cancelled give theirs back as their cleanup runs; a
    legacy endpoint's thread cannot be cancelled, but the query it waits on can,
    so those queries are cancelled first. Waits at most `seconds`.
    """
    if not database.checked_out():
        return
    with anyio.move_on_after(seconds):
        cancelled = await anyio.to_thread.run_sync(database.cancel_sync_queries)
        logger.info("shutdown: cancelled the queries of %d legacy requests", cancelled)
        while database.checked_out():
            await anyio.sleep(0.05)


def listen_url(settings: Settings, state: GatewayState) -> str | None:
    """Where to LISTEN for route changes: the direct URL, the database's, or nowhere."""
    if settings.listen_database_url is not None:
        return settings.listen_database_url
    if settings.transaction_pooling:
        logger.info(
            "transaction pooling and no %sLISTEN_DATABASE_URL: route changes apply at the "
            "next reload, every %g s",
            ENV_PREFIX,
            settings.route_reload_seconds,
        )
        return None
    return state.database_url


def check_schema_if_reachable(database: Database) -> None:
    """Refuse a database whose gateway schema this code cannot use; start anyway if it is down."""
    try:
        with database.sync_engine.connect() as connection:
            status = check_schema(connection)
    except (OSError, SQLAlchemyError) as error:
        logger.warning(
            "the database does not answer yet (%s): starting anyway", type(error).__name__
        )
        return
    if status.newer_than_code:
        logger.info(
            "the gateway schema is at %s, newer than this code: compatible", status.revision
        )


async def start_background(
    gateway_app: GatewayApp,
    state: GatewayState,
    background: anyio.abc.TaskGroup,
    stack: AsyncExitStack,
) -> None:
    settings, database, table = state.settings, state.database, gateway_app.table
    stack.callback(
        instrument(database, gateway_app.metrics, raise_on_blocking=settings.raise_on_blocking)
    )
    if settings.metrics_dir is not None:
        stack.callback(mark_process_dead, os.getpid(), str(settings.metrics_dir))
    worker = this_worker(settings.instance_name)
    mismatches = MismatchStore(
        database.async_sessions, worker.name, keep=settings.shadow_mismatches_kept
    )
    noise = NoiseStore(database.async_sessions)
    table.attach(database.async_engine, background, mismatches, noise)
    await reload_quietly(table)
    heartbeat = Heartbeat(database.async_engine, worker, settings.route_reload_seconds)
    stack.push_async_callback(heartbeat.stop)
    background.start_soon(
        keep_in_sync, table, settings.route_reload_seconds, listen_url(settings, state), heartbeat
    )
    background.start_soon(watch_loop, database, gateway_app.metrics, state.threads.limiter)
    background.start_soon(keep_sampling, gateway_app.history)
    # the rollouts' own small pool: their work never waits for, nor holds, a request's connection
    control = create_async_engine_for(
        settings, state.database_url, pool_size=CONTROL_POOL_SIZE, role="control"
    )
    stack.push_async_callback(control.dispose)
    driver = start_rollouts(gateway_app, control, worker.name)
    stack.push_async_callback(driver.stop)
    background.start_soon(run_driver, driver, settings.rollout_tick_seconds)
    if settings.webhook_urls:
        notifier = WebhookNotifier.from_settings(settings)
        background.start_soon(
            run_notifier, control, notifier, settings.rollout_tick_seconds, driver.leads
        )
    stack.callback(tune_garbage_collector(settings))


def start_rollouts(gateway_app: GatewayApp, engine: AsyncEngine, worker: str) -> Driver:
    """This worker's rollout driver; a fast trip of a route under a plan fails the plan."""
    table = gateway_app.table

    async def plan_trip(route: str, reason: str) -> bool:
        action = Action(AUTOMATIC_ACTOR, reason, table.default_for)
        return await fail_on_trip(engine, route, reason, action)

    table.plan_trip = plan_trip
    return Driver(table, engine, gateway_app.settings, gateway_app.metrics, worker)
