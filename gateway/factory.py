"""The app factory: one FastAPI app serving legacy and async routers over one database.

`create_app()` builds the app; its lifespan owns every engine and pool, so
nothing connects at import and tests can build apps with other settings.
"""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import mark_process_dead

from gateway.database.engines import (
    Database,
    open_database,
    probe_pgvector,
    warn_if_pool_starves_threads,
)
from gateway.database.gates import ConnectionGate, ThreadGate
from gateway.database.state import GatewayState
from gateway.errors import install_error_handlers
from gateway.metrics.exposition import router as metrics_router
from gateway.metrics.instrumentation import instrument, watch_loop
from gateway.metrics.middleware import MetricsMiddleware
from gateway.metrics.registry import GatewayMetrics
from gateway.ops import embedded, schema
from gateway.ops.admin import router as admin_router
from gateway.ops.gc_tuning import tune_garbage_collector
from gateway.ops.health import router as health_router
from gateway.ops.limits import BodyLimitMiddleware
from gateway.ops.logs import configure_logging
from gateway.routing.pairing import mount_routes, pair_routes
from gateway.routing.sync import keep_in_sync, reload_quietly
from gateway.routing.table import RouteTable
from gateway.settings import Settings, load_settings

logger = logging.getLogger(__name__)


def discover_routers(package: str) -> list[APIRouter]:
    """The module-level `router` of every module in `package`, in module-name order."""
    root = importlib.import_module(package)
    routers = []
    for module_info in sorted(pkgutil.iter_modules(root.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{package}.{module_info.name}")
        router = getattr(module, "router", None)
        if isinstance(router, APIRouter):
            routers.append(router)
    return routers


def default_constraint_messages() -> Mapping[str, str]:
    from shared_models.constraints import CONSTRAINT_MESSAGES

    return CONSTRAINT_MESSAGES


async def resolve_database_url(settings: Settings, stack: AsyncExitStack) -> str:
    """The configured URL, or the embedded server's (started, migrated and seeded here)."""
    if settings.database_url is not None:
        return settings.database_url
    url = stack.enter_context(embedded.embedded_postgres(settings.data_dir))
    await anyio.to_thread.run_sync(schema.upgrade, url)
    if settings.seed_demo_data:
        await anyio.to_thread.run_sync(schema.seed_if_empty, url)
    return url


def gateway_lifespan(settings: Settings, database: Database | None):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if database is None:
                url = await resolve_database_url(settings, stack)
                active = open_database(settings, url)
            else:
                active = database
                url = active.sync_engine.url.render_as_string(hide_password=False)
            stack.push_async_callback(active.dispose)
            await probe_pgvector(active)
            anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threadpool_size
            warn_if_pool_starves_threads(settings)
            threads = ThreadGate(
                settings.threadpool_size,
                max_queue=settings.threadpool_max_queue,
                max_wait=settings.threadpool_max_wait,
            )
            connections = ConnectionGate(
                settings.async_pool_capacity, max_wait=settings.pool_timeout
            )
            app.state.gateway = GatewayState(settings, active, url, threads, connections)
            table: RouteTable = app.state.route_table
            metrics: GatewayMetrics = app.state.metrics
            stack.callback(
                instrument(active, metrics, raise_on_blocking=settings.raise_on_blocking)
            )
            if settings.metrics_dir is not None:
                stack.callback(mark_process_dead, os.getpid(), str(settings.metrics_dir))
            async with anyio.create_task_group() as background:
                table.attach(active.async_engine, background)
                await reload_quietly(table)
                background.start_soon(
                    keep_in_sync, table, active.async_engine, settings.route_reload_seconds
                )
                background.start_soon(watch_loop, active, metrics, threads.limiter)
                stack.callback(tune_garbage_collector(settings))
                yield
                background.cancel_scope.cancel()
            del app.state.gateway

    return lifespan


def create_app(
    settings: Settings | None = None,
    *,
    legacy_routers: Iterable[APIRouter] | None = None,
    async_routers: Iterable[APIRouter] | None = None,
    database: Database | None = None,
    constraint_messages: Mapping[str, str] | None = None,
) -> FastAPI:
    """Build the gateway app.

    Routers default to those found in the `legacy_routes` and `async_routes`
    packages. A `database` given here is used as is and not disposed (tests bind
    its session factories to a connection they roll back). `constraint_messages`
    turn a violated constraint's name into the message of the 409 it causes.
    """
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    app = FastAPI(
        title="Hybrid gateway",
        summary="Legacy sync routes and migrated async routes over one set of models",
        lifespan=gateway_lifespan(settings, database),
    )
    app.state.gateway_warnings = []
    app.state.constraint_messages = dict(
        default_constraint_messages() if constraint_messages is None else constraint_messages
    )
    install_error_handlers(app)
    for operations in (health_router, admin_router, metrics_router):
        # Added route by route: FastAPI matches an included router through a wrapper
        # that every API request passed through (measured: 2-3 % of throughput).
        app.router.routes.extend(operations.routes)
    legacy = discover_routers("legacy_routes") if legacy_routers is None else legacy_routers
    migrated = discover_routers("async_routes") if async_routers is None else async_routers
    registry = CollectorRegistry(auto_describe=True)
    metrics = GatewayMetrics(registry, settings.metrics_buckets)
    app.state.metrics_registry = registry
    app.state.metrics = metrics
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=lambda: metrics)
    paired = pair_routes(app, legacy, migrated, metrics)
    table = RouteTable([route for route, _ in paired], settings, metrics)
    mount_routes(app, paired, table.dispatcher)
    app.state.route_table = table
    for warning in app.state.gateway_warnings:
        logger.warning(warning)
    return app
