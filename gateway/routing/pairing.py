"""Pairs an app's routes (legacy) with its async twins into one public route per key.

The legacy side is every API route the app already serves, nested routers
included; the async side is every API route of the async routers given to the
gateway. A route is identified by its key, `METHOD /path/template`; twins are
routes of the two sides with the same shape (`gateway.routing.keys`). Invariants:

- twins have the same path, parameter names and converters included, and
  keep one contract (`gateway.routing.contract`); otherwise the start stops
  with one line per difference. Two published paths for one shape never happen;
- a key is published once, where the app had it, so requests match in the
  order they always did; routes only the async side has come after the
  app's own API routes, and everything that is not an API route (mounts,
  websockets, docs) stays where it was;
- every implementation finishes its request's sessions inside the endpoint
  call, and every response it sends carries `X-Gateway-Impl: legacy|async`.

Which implementation serves a request is `gateway.routing.table`'s business.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute, RouteContext
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.database.providers import AliasedOverrides, SessionProviders
from gateway.database.sessions import SCOPE_SESSIONS, bind_sessions, release_unfinished
from gateway.error_docs import documented_responses
from gateway.errors import ConfigurationError, ErrorFormat, cancelled_answer, internal_error
from gateway.impl import Impl
from gateway.metrics.middleware import SCOPE_IMPL, SCOPE_ROUTE
from gateway.metrics.registry import GatewayMetrics, measured_method
from gateway.routing.contract import check_same_contract, fields, flat_fields
from gateway.routing.keys import naming_differences, route_key, shape
from gateway.routing.routes import api_routes, endpoint_name, entries, methods, rebuild

IMPL_HEADER = b"x-gateway-impl"
logger = logging.getLogger(__name__)


class RouteConflict(ConfigurationError):
    """Two routes cannot be served as one, or a route cannot be served by the gateway."""


@dataclass
class PublicRoute:
    """One key and the ASGI app of each implementation it has."""

    key: str
    implementations: dict[Impl, ASGIApp] = field(default_factory=dict)
    endpoints: dict[Impl, Callable[..., Any]] = field(default_factory=dict)  # as the app wrote them


@dataclass
class Implementation:
    """One side's route for one key, rebuilt to finish its sessions in the endpoint call."""

    key: str
    route: APIRoute
    where: str
    endpoint: Callable[..., Any]  # the app's own function, before the gateway wrapped it


@dataclass
class Pairing:
    """The public routes, and where each goes among the app's other routes.

    `layout` is the app's routes list to be: a key stands for the public route
    of that key, anything else is a route of the app left as it was.
    """

    routes: list[PublicRoute]
    shown: dict[str, APIRoute]  # per key: the route whose contract is documented
    layout: list[BaseRoute | str]
    unmanaged: list[str]  # routes with sessions the gateway cannot see, and from where
    threaded: list[str]  # routes whose sync dependencies query the session in another thread

    def app_routes(self, dispatchers: dict[str, ASGIApp]) -> list[BaseRoute]:
        """The app's routes list, each key's public route dispatched by `dispatchers[key]`."""
        return [
            public_route(self.shown[item], item, dispatchers[item])
            if isinstance(item, str)
            else item
            for item in self.layout
        ]


@dataclass
class RouteBuilder:
    """Turns each side's routes into implementations, for one app."""

    app: FastAPI
    providers: SessionProviders
    metrics: GatewayMetrics
    error_format: ErrorFormat
    map_database_errors: bool
    warnings: list[str]
    unmanaged: list[str] = field(default_factory=list)
    threaded: list[str] = field(default_factory=list)  # sync dependencies holding the session

    def implementations(self, context: RouteContext, side: Impl) -> list[Implementation]:
        where = f"{side} {endpoint_name(context)}"
        endpoint = context.endpoint
        if endpoint is None:
            raise RouteConflict(f"{where} has no endpoint")
        if side == "async" and not inspect.iscoroutinefunction(endpoint):
            raise RouteConflict(f"{where} must be an `async def` endpoint")
        dependant = context.dependant
        kinds = self.providers.kinds_used(dependant)
        keys = [route_key(method, str(context.path_format)) for method in methods(context)]
        for dependency in self.providers.sync_dependencies_using_session(dependant):
            self.threaded.extend(f"{key} ({dependency})" for key in keys)
        for unmanaged in self.providers.unmanaged_sessions(endpoint, dependant):
            self.unmanaged.extend(f"{key} ({unmanaged})" for key in keys)
        served = endpoint
        if kinds or not inspect.iscoroutinefunction(endpoint):
            served = bind_sessions(endpoint, kinds, where)
        provider = (
            AliasedOverrides(self.app, self.providers.aliases)
            if self.providers.uses_alias(dependant)
            else self.app
        )
        responses = documented_responses(
            dict(context.responses or {}),
            methods=set(methods(context)),
            takes_input=bool(flat_fields(dependant)),
            takes_body=bool(fields(dependant, "body_params")),
            error_format=self.error_format,
            map_database_errors=self.map_database_errors,
        )
        route = rebuild(
            context, served, dependency_overrides_provider=provider, responses=responses
        )
        return [Implementation(key, route, where, endpoint) for key in keys]

    def tagged(self, implementation: Implementation, impl: Impl) -> ASGIApp:
        return tag_with_impl(
            implementation.route.app, impl, implementation.key, self.metrics, self.error_format
        )


def tag_with_impl(
    app: ASGIApp, impl: Impl, key: str, metrics: GatewayMetrics, error_format: ErrorFormat
) -> ASGIApp:
    """Mark the scope and every response of `app` with the implementation that served it.

    Sessions a dependency opened for a request whose endpoint never ran (the
    dependency raised, a parameter was invalid) are rolled back and returned
    here, once the implementation is done with the request.

    With the envelope error format, an exception no handler took becomes the
    uniform 500 here, inside the implementation, so that response is tagged
    too. With FastAPI's format it goes on to the app's server error handling,
    exactly as it would without the gateway.
    """
    header = (IMPL_HEADER, impl.encode())
    method = key.split(" ", 1)[0]
    in_progress = metrics.in_progress.labels(measured_method(method), key, impl)
    answers_errors = error_format == "envelope"

    async def tagged(scope: Scope, receive: Receive, send: Send) -> None:
        scope[SCOPE_IMPL] = impl
        scope[SCOPE_ROUTE] = key
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
            if started or not answers_errors:
                raise
            logger.exception("unhandled error in %s (%s)", scope.get("path"), impl)
            await internal_error(error_format)(scope, receive, send_tagged)
        except anyio.get_cancelled_exc_class():
            if not started:  # the server gave up on it (shutdown): a retry belongs elsewhere
                with anyio.CancelScope(shield=True):
                    await cancelled_answer(error_format)(scope, receive, send_tagged)
            raise
        finally:
            in_progress.dec()
            sessions = scope.get(SCOPE_SESSIONS)
            if sessions is not None and sessions.unfinished:
                await release_unfinished(sessions)

    return tagged


class Side:
    """One side's implementations, by shape, in the order the app matches them."""

    def __init__(self, impl: Impl) -> None:
        self.impl = impl
        self.by_shape: dict[str, Implementation] = {}

    def add(self, implementation: Implementation, warnings: list[str]) -> bool:
        """Keep `implementation` unless its shape is taken; True if kept."""
        method, _, path = implementation.key.partition(" ")
        taken = self.by_shape.get(shape(method, path))
        if taken is None:
            self.by_shape[shape(method, path)] = implementation
            return True
        if self.impl == "async":
            raise RouteConflict(f"async routes implement {taken.key} twice")
        warnings.append(
            f"{implementation.key} ({implementation.where}) is never reached: "
            f"{taken.key} ({taken.where}) matches the same requests first"
        )
        return False


def pair_routes(builder: RouteBuilder, async_routers: Iterable[APIRouter]) -> Pairing:
    """The public route of every key, and where each goes among the app's routes."""
    legacy, layout, after_api_routes = _legacy_side(builder)
    migrated = _async_side(builder, async_routers)
    routes, shown = [], {}
    for key_shape in {**legacy.by_shape, **migrated.by_shape}:
        route, shown_route = _public_route(builder, legacy, migrated, key_shape)
        routes.append(route)
        shown[route.key] = shown_route
    only_async = [twin.key for s, twin in migrated.by_shape.items() if s not in legacy.by_shape]
    layout[after_api_routes:after_api_routes] = only_async
    return Pairing(routes, shown, layout, builder.unmanaged, builder.threaded)


def _legacy_side(builder: RouteBuilder) -> tuple[Side, list[BaseRoute | str], int]:
    """The app's own API routes, the layout of its routes list, and where its API routes end."""
    legacy = Side("legacy")
    layout: list[BaseRoute | str] = []
    after_api_routes = 0
    for entry in entries(builder.app.router.routes):
        for context in entry.api_routes:
            for implementation in builder.implementations(context, "legacy"):
                if legacy.add(implementation, builder.warnings):
                    layout.append(implementation.key)
        if entry.others or not entry.api_routes:
            layout.append(entry.route)
        if entry.api_routes:
            after_api_routes = len(layout)
    return legacy, layout, after_api_routes


def _async_side(builder: RouteBuilder, async_routers: Iterable[APIRouter]) -> Side:
    migrated = Side("async")
    for router in async_routers:
        for context in api_routes(router.routes):
            for implementation in builder.implementations(context, "async"):
                migrated.add(implementation, builder.warnings)
    return migrated


def _public_route(
    builder: RouteBuilder, legacy: Side, migrated: Side, key_shape: str
) -> tuple[PublicRoute, APIRoute]:
    left, right = legacy.by_shape.get(key_shape), migrated.by_shape.get(key_shape)
    if left is not None and right is not None:
        _check_twins(left, right)
    shown = left or right
    if shown is None:
        raise RouteConflict(f"{key_shape} has no implementation")
    route = PublicRoute(key=shown.key)
    sides: tuple[tuple[Impl, Implementation | None], ...] = (("legacy", left), ("async", right))
    for impl, side in sides:
        if side is not None:
            route.implementations[impl] = builder.tagged(side, impl)
            route.endpoints[impl] = side.endpoint
    return route, shown.route


def _check_twins(legacy: Implementation, migrated: Implementation) -> None:
    if legacy.key != migrated.key:
        found = naming_differences(legacy.key, migrated.key)
        raise RouteConflict(
            f"{legacy.key}: the async twin is {migrated.key}; name its path parameters as the "
            "legacy route does (clients see the names in 422 errors and the docs):\n"
            + "\n".join(f"  {difference}" for difference in found)
        )
    check_same_contract(legacy.key, legacy.route, migrated.route)


def public_route(shown: APIRoute, key: str, dispatch: ASGIApp) -> APIRoute:
    """The route the app matches and documents for `key`, with `shown`'s contract."""
    public = copy.copy(shown)
    public.methods = {key.split(" ", 1)[0]}
    public.app = dispatch
    return public
