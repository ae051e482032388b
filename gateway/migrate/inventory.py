"""An app's legacy endpoints as the gateway paired them, their twins, modes and twin modules.

The pairing keeps each implementation's own endpoint function; the public
route of a key carries the legacy side's contract (its response model). Modes
come from the database only when a URL is configured and it answers within a
few seconds; otherwise they are unknown, never a failure.

Where twins live is learned from the twins the app already has:
`app.api.routes.tickets` paired with `app.api_async.routes.tickets` says that
the async side of `app.api.X` is `app.api_async.X`, so a dependency imported
from `app.api.deps` has its async twin, if anyone wrote it, in
`app.api_async.deps`, and a draft of `app/api/routes/projects.py` goes to
`app/api_async/routes/projects.py`.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

from fastapi import FastAPI, params
from fastapi.routing import APIRoute

from gateway.database.engines import create_async_engine_for
from gateway.factory import gateway_of
from gateway.migrate.signatures import uses_sync_session
from gateway.routing import store as route_store
from gateway.routing.keys import route_key
from gateway.routing.modes import RouteMode

MODES_TIMEOUT = 5.0  # seconds the database has to answer before modes are unknown


@dataclass(frozen=True)
class Endpoint:
    """One legacy endpoint of the app."""

    key: str
    function: Callable[..., Any]
    response_model: Any
    twin: Callable[..., Any] | None


def legacy_endpoints(app: FastAPI) -> list[Endpoint]:
    """Every key with a legacy implementation, in the app's order."""
    table = gateway_of(app).table
    models = response_models(app)
    found = []
    for key, route in table.routes.items():
        legacy = route.endpoints.get("legacy")
        if legacy is not None:
            found.append(Endpoint(key, legacy, models.get(key), route.endpoints.get("async")))
    return found


def endpoint_functions(app: FastAPI) -> list[Callable[..., Any]]:
    """Every implementation's endpoint function, legacy and async, of every key."""
    table = gateway_of(app).table
    return [function for route in table.routes.values() for function in route.endpoints.values()]


def response_models(app: FastAPI) -> dict[str, Any]:
    """Each public route's response model, by key."""
    found = {}
    for route in app.router.routes:
        if isinstance(route, APIRoute):
            for method in route.methods or ():
                found[route_key(method, route.path_format)] = route.response_model
    return found


def describe(mode: RouteMode) -> str:
    if mode.mode == "canary":
        return f"canary {mode.percent}%"
    if mode.mode == "shadow":
        return f"shadow ({'calibrating' if mode.calibrating else 'primary ' + mode.primary})"
    return mode.mode


def route_modes(app: FastAPI) -> dict[str, str] | None:
    """Each key's mode as stored, or None when no database is configured or it does not answer."""
    gateway_app = gateway_of(app)
    settings, table = gateway_app.settings, gateway_app.table
    url = settings.database_url
    if url is None:
        return None

    async def load() -> dict[str, Any]:
        engine = create_async_engine_for(settings, url, pool_size=1, role="migrate")
        try:
            return await asyncio.wait_for(route_store.load_modes(engine), MODES_TIMEOUT)
        finally:
            await engine.dispose()

    try:
        stored = asyncio.run(load())
    except Exception:  # unreachable, refused, no gateway tables: the modes are unknown
        return None
    table.apply(stored)
    return {key: describe(mode) for key, mode in table.modes.items()}


@dataclass(frozen=True)
class TwinModules:
    """Where the app keeps the async twin of a legacy module: prefix pairs learned from twins."""

    prefixes: tuple[tuple[str, str], ...]

    def module(self, legacy: str) -> str | None:
        for legacy_prefix, async_prefix in self.prefixes:
            if legacy == legacy_prefix or legacy.startswith(legacy_prefix + "."):
                return async_prefix + legacy[len(legacy_prefix) :]
        return None

    def twin_of(self, module: str, name: str) -> str | None:
        """The module holding an async twin of `module.name` (a dependency), if one exists."""
        candidate = self.module(module)
        if candidate is None or importlib.util.find_spec(candidate) is None:
            return None
        value = getattr(importlib.import_module(candidate), name, None)
        return candidate if value is not None and is_async_dependency(value) else None

    def path(self, legacy: str) -> Path | None:
        """The file the async twin of module `legacy` is (or would be) in."""
        candidate = self.module(legacy)
        if candidate is None:
            return None
        package, _, leaf = candidate.rpartition(".")
        spec = importlib.util.find_spec(package) if package else None
        locations = list(spec.submodule_search_locations or []) if spec else []
        return Path(locations[0]) / f"{leaf}.py" if locations else None


def twin_modules(app: FastAPI) -> TwinModules:
    pairs = {
        (endpoint.function.__module__, endpoint.twin.__module__)
        for endpoint in legacy_endpoints(app)
        if endpoint.twin is not None
    }
    prefixes = set()
    for legacy, migrated in pairs:
        left, right = legacy.split("."), migrated.split(".")
        while len(left) > 1 and len(right) > 1 and left[-1] == right[-1]:
            left, right = left[:-1], right[:-1]
        if left != right:
            prefixes.add((".".join(left), ".".join(right)))
    return TwinModules(tuple(sorted(prefixes, key=lambda pair: -len(pair[0]))))


def is_async_dependency(value: Any) -> bool:
    """`Annotated[T, Depends(f)]` or `f` itself, where `f` is async and needs no sync session."""
    dependency = value
    if get_origin(value) is Annotated:
        markers = [m for m in get_args(value)[1:] if isinstance(m, params.Depends)]
        dependency = markers[0].dependency if markers else None
    if dependency is None or not inspect.iscoroutinefunction(dependency):
        return False
    return not uses_sync_session(dependency)
