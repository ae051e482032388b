"""The app factory: adopt the FastAPI app a team already has, or build one, and serve it.

`adopt(app, ...)` takes an existing app as it is: its routes (nested routers,
prefixes, tags, dependencies, operation ids), middleware, exception handlers,
mounts, lifespan and OpenAPI settings stay where the team put them. It adds
what the gateway needs around them: each API route served through its key's
dispatcher, paired with its async twin when one is given; sessions finished
inside the endpoint call; a metrics middleware, a body limit, and the
operations routes (/healthz, /readyz, /metrics, /admin; after the app's own
routes, so an app that serves one of those paths keeps it, and out of its
OpenAPI). `create_app(...)` is `adopt(FastAPI(...))` for a new app: it takes
everything `FastAPI(...)` takes, and the legacy routers to include.

Adopting an instance rather than rebuilding one is deliberate: adoption is
one call added at the end of the app's main module, and nothing the team
configured has to move.

The lifespan owns every engine and pool: nothing connects at import, and the
CLI can read an app's routes without starting its database.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry

from gateway.database.engines import Database
from gateway.database.extensions import required_extensions
from gateway.database.providers import SessionProviders
from gateway.errors import ConfigurationError, install_error_handlers
from gateway.lifespan import GatewayApp, gateway_lifespan
from gateway.metrics.exposition import router as metrics_router
from gateway.metrics.fleet_figures import FleetFigures
from gateway.metrics.history import MetricsHistory
from gateway.metrics.middleware import MetricsMiddleware
from gateway.metrics.registry import GatewayMetrics
from gateway.ops.admin import router as admin_router
from gateway.ops.admin_access import AdminRoute, token_check
from gateway.ops.admin_rollouts import router as rollouts_router
from gateway.ops.console import router as console_router
from gateway.ops.console_data import router as console_data_router
from gateway.ops.health import router as health_router
from gateway.ops.limits import BodyLimitMiddleware
from gateway.ops.logs import configure_logging, correlate_requests
from gateway.routing.pairing import Pairing, RouteBuilder, pair_routes
from gateway.routing.routes import paths
from gateway.routing.table import RouteTable
from gateway.settings import Settings, load_settings

logger = logging.getLogger(__name__)

OPERATIONS = (
    health_router,
    metrics_router,
    admin_router,
    rollouts_router,
    console_data_router,
    console_router,
)
SessionDependency = Callable[..., Any]


class NotAGatewayApp(ConfigurationError):
    """The object was not built with `gateway.create_app()` or `gateway.adopt()`."""


class AlreadyStarted(ConfigurationError):
    """The app has served requests already: the gateway can no longer wrap it."""


def gateway_of(app: object) -> GatewayApp:
    """What the gateway keeps for `app`; `NotAGatewayApp` if it never adopted it."""
    found = getattr(getattr(app, "state", None), "gateway_app", None)
    if not isinstance(found, GatewayApp):
        raise NotAGatewayApp(
            f"{app!r} is not served by the gateway: build it with gateway.create_app(), "
            "or pass it to gateway.adopt()"
        )
    return found


def adopt(
    app: FastAPI,
    *,
    async_routers: Iterable[APIRouter] = (),
    settings: Settings | None = None,
    sync_session_dependencies: Iterable[SessionDependency] = (),
    async_session_dependencies: Iterable[SessionDependency] = (),
    constraint_messages: Mapping[str, str] | None = None,
    prepare_embedded_database: Callable[[str], None] | None = None,
    database: Database | None = None,
) -> FastAPI:
    """Serve `app`'s routes through the gateway, paired with the async twins in `async_routers`.

    `sync_session_dependencies` are the app's own dependencies that give an
    endpoint a sync `Session` (its `get_db`): routes that use them get the
    gateway's session for the request, with its lifetime and its metrics.
    `constraint_messages` turn a violated constraint's name into the message of
    the 409 it causes (with `GATEWAY_MAP_DATABASE_ERRORS`).
    `prepare_embedded_database` is called with the URL of an embedded database
    the gateway started (`GATEWAY_EMBEDDED_DATABASE`), to create the app's own
    schema there. A `database` given here is used as is and never disposed
    (tests bind its session factories to connections they roll back).
    Returns `app`, adopted in place.
    """
    if app.middleware_stack is not None:
        raise AlreadyStarted(f"{app!r} has started serving: adopt it before it starts")
    if getattr(app.state, "gateway_app", None) is not None:
        raise AlreadyStarted(f"{app!r} is adopted already")
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_format, settings.instance_name)
    registry = CollectorRegistry(auto_describe=True)
    metrics = GatewayMetrics(registry, settings.metrics_buckets)
    providers = SessionProviders(sync_session_dependencies, async_session_dependencies)
    builder = RouteBuilder(
        app,
        providers,
        metrics,
        settings.error_format,
        settings.map_database_errors,
        warnings=[],
    )
    pairing = pair_routes(builder, async_routers)
    table = RouteTable(pairing.routes, settings, metrics, check_token=token_check(settings))
    serve_routes(app, pairing, table, builder, admin_in_openapi=settings.admin_in_openapi)
    install_error_handlers(
        app,
        error_format=settings.error_format,
        map_database_errors=settings.map_database_errors,
        constraint_messages=constraint_messages or {},
    )
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, error_format=settings.error_format
    )
    app.add_middleware(MetricsMiddleware, metrics=lambda: metrics)
    correlate_requests(app)  # around everything, FastAPI's own error middleware too
    app.state.route_table = table
    app.state.metrics = metrics
    app.state.metrics_registry = registry
    app.state.gateway_app = GatewayApp(
        settings=settings,
        table=table,
        metrics=metrics,
        history=console_sources(app, settings, registry),
        required_extensions=required_extensions(r.dependant for r in pairing.shown.values()),
        prepare_embedded_database=prepare_embedded_database,
        database=database,
        warnings=builder.warnings,
    )
    app.router.lifespan_context = gateway_lifespan(app.router.lifespan_context)
    log_warnings(builder.warnings, pairing)
    return app


def console_sources(
    app: FastAPI, settings: Settings, registry: CollectorRegistry
) -> MetricsHistory:
    """Where the console's figures come from: the instance's history, and Prometheus if set."""
    every, window = settings.console_sample_seconds, settings.console_window_seconds
    history = MetricsHistory(registry, settings.metrics_dir, every=every, window=window)
    url = settings.console_prometheus_url
    app.state.metrics_history = history
    app.state.fleet_figures = None if url is None else FleetFigures(url, every=every, window=window)
    return history


def serve_routes(
    app: FastAPI,
    pairing: Pairing,
    table: RouteTable,
    builder: RouteBuilder,
    *,
    admin_in_openapi: bool,
) -> None:
    """Replace the app's routes list: each key's public route, then the operations routes."""
    dispatchers = {route.key: table.dispatcher(route) for route in pairing.routes}
    own_paths = paths(app.router.routes)
    app.router.routes[:] = [
        *pairing.app_routes(dispatchers),
        *operations_routes(own_paths, builder, admin_in_openapi=admin_in_openapi),
    ]
    app.openapi_schema = None  # documented anew, from the routes it serves now


def operations_routes(
    own_paths: set[str], builder: RouteBuilder, *, admin_in_openapi: bool
) -> list[Any]:
    """The gateway's operations routes, minus any path the app already serves itself."""
    routes = []
    for router in OPERATIONS:
        for route in router.routes:
            path = getattr(route, "path_format", None)
            if path in own_paths:
                builder.warnings.append(
                    f"the app serves {path} itself, so the gateway's {path} is not mounted"
                )
                continue
            routes.append(in_app_schema(route) if admin_in_openapi else route)
    return routes


def in_app_schema(route: Any) -> Any:
    """An admin endpoint listed in the app's OpenAPI (`GATEWAY_ADMIN_IN_OPENAPI`); the
    console's page and assets never are."""
    if not isinstance(route, AdminRoute) or route.path.endswith("/openapi.json"):
        return route
    listed = copy.copy(route)
    listed.include_in_schema = True
    return listed


def log_warnings(warnings: list[str], pairing: Pairing) -> None:
    for warning in warnings:
        logger.warning(warning)
    if pairing.unmanaged:
        logger.warning(
            "%d route(s) open a database session the gateway does not manage: it cannot give "
            "them its session lifetime or measure their database time. Pass the dependency to "
            "adopt(app, sync_session_dependencies=[...]) (or async_session_dependencies), or "
            "use gateway.SyncDB:\n%s",
            len(pairing.unmanaged),
            listed(pairing.unmanaged),
        )
    if pairing.threaded:
        logger.warning(
            "%d route(s) have a sync dependency that queries the sync session: FastAPI runs it "
            "in another thread than the endpoint, so its connection is held while the request "
            "waits for the endpoint's thread. Make the dependency `async def` without queries, "
            "or do the query in the endpoint:\n%s",
            len(pairing.threaded),
            listed(pairing.threaded),
        )


def listed(routes: list[str]) -> str:
    return "\n".join(f"  {route}" for route in routes)


def create_app(
    settings: Settings | None = None,
    *,
    legacy_routers: Iterable[APIRouter] = (),
    async_routers: Iterable[APIRouter] = (),
    sync_session_dependencies: Iterable[SessionDependency] = (),
    async_session_dependencies: Iterable[SessionDependency] = (),
    constraint_messages: Mapping[str, str] | None = None,
    prepare_embedded_database: Callable[[str], None] | None = None,
    database: Database | None = None,
    **fastapi_options: Any,
) -> FastAPI:
    """A new FastAPI app (`fastapi_options` go to `FastAPI(...)`) serving these routers.

    The other arguments are `adopt`'s.
    """
    app = FastAPI(**fastapi_options)
    for router in legacy_routers:
        app.include_router(router)
    return adopt(
        app,
        async_routers=async_routers,
        settings=settings,
        sync_session_dependencies=sync_session_dependencies,
        async_session_dependencies=async_session_dependencies,
        constraint_messages=constraint_messages,
        prepare_embedded_database=prepare_embedded_database,
        database=database,
    )


__all__ = ["AlreadyStarted", "GatewayApp", "NotAGatewayApp", "adopt", "create_app", "gateway_of"]
