"""An app's routes as FastAPI builds them, flattened, and rebuilt around another endpoint.

FastAPI keeps an included router as one lazy entry among its parent's routes
and applies the inclusion's prefix, tags, dependencies and responses when it
matches a request. The gateway needs every API route with its full path and
its effective settings, so it reads them through
`fastapi.routing.iter_route_contexts`, which yields each route as its
inclusions make it, and builds one plain `APIRoute` from each.

A rebuilt route serialises an instance of its response model as it is: FastAPI
would validate it again first (pydantic passes an instance of the very class
through, but still runs its model validators), a second validation of what the
endpoint just built. Anything else, an ORM object or a dict, is validated as
FastAPI always does, and the OpenAPI schema is FastAPI's own.

This is the one module that relies on FastAPI beyond its documented API:
`iter_route_contexts`, `RouteContext.original_route`, FastAPI's habit of
keeping every `APIRoute.__init__` argument as an attribute of the same name,
and the route handler reading `response_field.validate` and its serialisers.
`rebuild` fails loudly, naming the argument, when a release breaks that habit;
`pyproject.toml` pins FastAPI below the next minor release that could.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

# Arguments whose value the gateway supplies itself instead of copying them.
SUPPLIED = frozenset({"self", "path", "endpoint", "dependency_overrides_provider"})


class UnsupportedFastAPI(RuntimeError):
    """This FastAPI release builds routes in a way the gateway does not know how to copy."""


@dataclass
class Entry:
    """One entry of a routes list and the API routes it stands for, with their full paths.

    A plain API route stands for itself; an included router for every API route
    below it. `others` is true when the entry also serves routes that are not
    API routes (mounts, websockets, plain Starlette routes), which the gateway
    leaves to it.
    """

    route: BaseRoute
    api_routes: list[RouteContext] = field(default_factory=list)
    others: bool = False


def entries(routes: Sequence[BaseRoute]) -> list[Entry]:
    """Each entry of `routes`, in order, with the API routes it serves."""
    found = []
    for route in routes:
        entry = Entry(route)
        for context in iter_route_contexts([route]):
            if isinstance(context.original_route, APIRoute):
                entry.api_routes.append(context)
            else:
                entry.others = True
        found.append(entry)
    return found


def api_routes(routes: Sequence[BaseRoute]) -> Iterator[RouteContext]:
    """Every API route below `routes`, in matching order, as its inclusions make it."""
    for entry in entries(routes):
        yield from entry.api_routes


def is_api_route_only(entry: Entry) -> bool:
    return bool(entry.api_routes) and not entry.others


@dataclass(frozen=True)
class BuiltResponseField:
    """A route's response field that passes an instance of the response model through."""

    field: Any  # FastAPI's ModelField
    model: type[BaseModel]

    def validate(
        self, value: Any, values: dict[str, Any] | None = None, *, loc: tuple[Any, ...] = ()
    ) -> tuple[Any, list[dict[str, Any]]]:
        if type(value) is self.model:
            return value, []
        validated: tuple[Any, list[dict[str, Any]]] = self.field.validate(
            value, values or {}, loc=loc
        )
        return validated

    def __getattr__(self, name: str) -> Any:
        return getattr(self.field, name)


class GatewayRoute(APIRoute):
    """An `APIRoute` whose handler serialises its response model's instances unvalidated."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        field, model = self.response_field, self.response_model
        if field is None or not (isinstance(model, type) and issubclass(model, BaseModel)):
            return super().get_route_handler()
        self.response_field = BuiltResponseField(field, model)  # type: ignore[assignment]
        try:
            return super().get_route_handler()
        finally:
            self.response_field = field


def rebuild(
    source: RouteContext | APIRoute,
    endpoint: Callable[..., Any],
    *,
    dependency_overrides_provider: Any,
    **changed: Any,
) -> APIRoute:
    """A plain `GatewayRoute` with `source`'s effective path and settings, calling `endpoint`.

    `changed` replaces some of those settings (`responses`, say).
    """
    arguments = {name: _effective(source, name) for name in copied_arguments()}
    arguments.update(changed)
    return GatewayRoute(
        str(source.path),
        endpoint,
        dependency_overrides_provider=dependency_overrides_provider,
        **arguments,
    )


def copied_arguments() -> list[str]:
    """The `APIRoute.__init__` arguments a rebuilt route takes over from its source."""
    signature = inspect.signature(APIRoute.__init__)
    return [name for name in signature.parameters if name not in SUPPLIED]


def _effective(source: RouteContext | APIRoute, name: str) -> Any:
    for holder in (source, getattr(source, "original_route", source)):
        try:
            return getattr(holder, name)
        except AttributeError:
            continue
    raise UnsupportedFastAPI(
        f"FastAPI's APIRoute takes {name!r} but keeps no attribute of that name, so the "
        "gateway cannot copy it: install the FastAPI version pyproject.toml allows"
    )


def endpoint_name(route: RouteContext | APIRoute) -> str:
    endpoint = route.endpoint
    module = getattr(endpoint, "__module__", "?")
    return f"{module}.{getattr(endpoint, '__qualname__', repr(endpoint))}"


def methods(route: RouteContext | APIRoute) -> list[str]:
    return sorted(route.methods or ())


def paths(routes: Iterable[BaseRoute]) -> set[str]:
    """Every path template served below `routes`, API or not."""
    found = set()
    for context in iter_route_contexts(list(routes)):
        template = context.path_format
        if isinstance(template, str):
            found.add(template)
    return found
