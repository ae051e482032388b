"""Pairs legacy and async implementations into one public route per key.

A route is identified by its key, `METHOD /path/template`. The legacy and the
async router may each implement a key; when both do, they are two
implementations of ONE route: the app matches the path once and lists it once
in OpenAPI. Invariants:

- both implementations of a key take the same parameters and declare the same
  response model and status code (checked at start-up, see `gateway.routing.contract`);
- every response from an API route carries `X-Gateway-Impl: legacy|async`.

Which implementation serves a request is `gateway.routing.table`'s business.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.database.sessions import (
    bind_sessions,
    session_kinds,
    sync_dependencies_using_session,
)
from gateway.errors import internal_error
from gateway.impl import Impl
from gateway.metrics.middleware import SCOPE_IMPL
from gateway.metrics.registry import GatewayMetrics, measured_method
from gateway.routing.contract import check_same_contract

IMPL_HEADER = b"x-gateway-impl"
logger = logging.getLogger(__name__)


class RouteConflict(ValueError):
    """Two routes cannot be served as one, or a router holds something the gateway cannot pair."""


def route_key(method: str, path: str) -> str:
    return f"{method.upper()} {path}"


@dataclass
class PublicRoute:
    """One key and the ASGI app of each implementation it has."""

    key: str
    implementations: dict[Impl, ASGIApp] = field(default_factory=dict)


def tag_with_impl(app: ASGIApp, impl: Impl, key: str, metrics: GatewayMetrics) -> ASGIApp:
    """Mark the scope and every response of `app` with the implementation that served it.

    An exception no handler took becomes the uniform 500 here, inside the
    implementation, so that response is tagged too.
    """
    header = (IMPL_HEADER, impl.encode())
    method, template = key.split(" ", 1)
    in_progress = metrics.in_progress.labels(measured_method(method), template, impl)

    async def tagged(scope: Scope, receive: Receive, send: Send) -> None:
        scope[SCOPE_IMPL] = impl
        in_progress.inc()
        started = False

        async def send_tagged(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await app(scope, receive, send_tagged)
        except Exception:
            if started:
                raise
            logger.exception("unhandled error in %s (%s)", scope.get("path"), impl)
            await internal_error()(scope, receive, send_tagged)
        finally:
            in_progress.dec()

    return tagged


def api_routes(router: APIRouter, side: Impl) -> list[APIRoute]:
    routes = []
    for route in router.routes:
        if not isinstance(route, APIRoute):
            raise RouteConflict(
                f"{side} router holds {route!r}: pass every APIRouter to the gateway "
                "directly instead of including routers into each other"
            )
        routes.append(route)
    return routes


def rebuild(route: APIRoute, app: FastAPI, side: Impl) -> APIRoute:
    """A copy of `route` owned by `app`, whose endpoint finishes the request's sessions."""
    where = f"{side} {route.endpoint.__module__}.{route.endpoint.__name__}"
    kinds = session_kinds(route.dependant)
    for dependency in sync_dependencies_using_session(route.dependant):
        app.state.gateway_warnings.append(
            f"{where}: sync dependency {dependency} uses the sync session in another thread "
            "than the endpoint; its connection is held while the request waits for a thread"
        )
    needs_wrapper = kinds or not inspect.iscoroutinefunction(route.endpoint)
    endpoint = bind_sessions(route.endpoint, kinds, where) if needs_wrapper else route.endpoint
    return APIRoute(
        route.path,
        endpoint,
        response_model=route.response_model,
        status_code=route.status_code,
        tags=route.tags,
        dependencies=route.dependencies,
        summary=route.summary,
        description=route.description,
        response_description=route.response_description,
        responses=route.responses,
        deprecated=route.deprecated,
        name=route.name,
        methods=route.methods,
        operation_id=route.operation_id,
        response_model_include=route.response_model_include,
        response_model_exclude=route.response_model_exclude,
        response_model_by_alias=route.response_model_by_alias,
        response_model_exclude_unset=route.response_model_exclude_unset,
        response_model_exclude_defaults=route.response_model_exclude_defaults,
        response_model_exclude_none=route.response_model_exclude_none,
        include_in_schema=route.include_in_schema,
        response_class=route.response_class,
        dependency_overrides_provider=app,
        callbacks=route.callbacks,
        openapi_extra=route.openapi_extra,
        generate_unique_id_function=route.generate_unique_id_function,
    )


def split_by_method(route: APIRoute) -> Iterable[str]:
    for method in sorted(route.methods or ()):
        yield route_key(method, route.path_format)


def collect(app: FastAPI, routers: Iterable[APIRouter], side: Impl) -> dict[str, APIRoute]:
    found: dict[str, APIRoute] = {}
    for router in routers:
        for route in api_routes(router, side):
            if side == "async" and not inspect.iscoroutinefunction(route.endpoint):
                raise RouteConflict(
                    f"async {route.endpoint.__module__}.{route.endpoint.__name__} "
                    "must be an `async def` endpoint"
                )
            rebuilt = rebuild(route, app, side)
            for key in split_by_method(route):
                if key in found:
                    raise RouteConflict(f"{side} routers implement {key} twice")
                found[key] = rebuilt
    return found


Pairing = list[tuple[PublicRoute, APIRoute]]


def pair_routes(
    app: FastAPI,
    legacy_routers: Iterable[APIRouter],
    async_routers: Iterable[APIRouter],
    metrics: GatewayMetrics,
) -> Pairing:
    """One PublicRoute per key, with the APIRoute whose contract the app documents for it."""
    legacy_side = collect(app, legacy_routers, "legacy")
    async_side = collect(app, async_routers, "async")
    paired = []
    # Declaration order, legacy first: the first route whose path matches serves a request.
    for key in [*legacy_side, *(key for key in async_side if key not in legacy_side)]:
        legacy, migrated = legacy_side.get(key), async_side.get(key)
        if legacy is not None and migrated is not None:
            check_same_contract(key, legacy, migrated)
        route = PublicRoute(key=key)
        if legacy is not None:
            route.implementations["legacy"] = tag_with_impl(legacy.app, "legacy", key, metrics)
        if migrated is not None:
            route.implementations["async"] = tag_with_impl(migrated.app, "async", key, metrics)
        shown = legacy if legacy is not None else migrated
        assert shown is not None
        paired.append((route, shown))
    return paired


def mount_routes(
    app: FastAPI, paired: Pairing, dispatcher: Callable[[PublicRoute], ASGIApp]
) -> None:
    """Add one route per key to `app`, matched and documented once, dispatched by `dispatcher`."""
    for route, shown in paired:
        app.router.routes.append(public_route(shown, route.key, dispatcher(route)))


def public_route(shown: APIRoute, key: str, dispatch: ASGIApp) -> APIRoute:
    """The route the app matches and documents for `key`, with `shown`'s contract."""
    public = copy.copy(shown)
    public.methods = {key.split(" ", 1)[0]}
    public.app = dispatch
    return public
