"""The lazy-load guard, for an app's own test suite: relationship reads that would load lazily.

Under a sync Session a relationship that was not loaded is fetched when first
read; under an AsyncSession that read raises (`MissingGreenlet`), often only
once the response is serialised. The guard reads the code of every endpoint
(never running it) and lists each read of a relationship that the query which
fetched the objects does not load, so the async twin loads it explicitly:

    from gateway.migrate.guard import assert_no_lazy_loads

    def test_no_endpoint_loads_lazily() -> None:
        assert_no_lazy_loads(app)        # or modules: assert_no_lazy_loads(api.routes.orders)

An app's endpoints are both implementations of every route; a module's are
the routes of its routers. Each finding names the file and line, the
relationship, and the query to add `selectinload(...)` to.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

from fastapi import FastAPI

from gateway.migrate.idioms import Idiom
from gateway.migrate.inventory import endpoint_functions
from gateway.migrate.scan import module_idioms


def lazy_loads(*targets: FastAPI | ModuleType, root: Path | None = None) -> list[Idiom]:
    """Each relationship read of the targets' endpoints that would load lazily."""
    base = (root or Path.cwd()).resolve()
    found: list[Idiom] = []
    for module in _modules(targets):
        found.extend(idiom for idiom in module_idioms(module, base) if idiom.kind == "lazy_load")
    return found


def assert_no_lazy_loads(*targets: FastAPI | ModuleType, root: Path | None = None) -> None:
    """Fail, listing each one, when an endpoint of the targets reads a relationship lazily."""
    found = lazy_loads(*targets, root=root)
    if found:
        listed = "\n".join(
            f"  {idiom.path}:{idiom.line}: {idiom.code}: load it with {idiom.async_form}"
            for idiom in found
        )
        raise AssertionError(f"{len(found)} relationship read(s) would load lazily:\n{listed}")


def _modules(targets: tuple[FastAPI | ModuleType, ...]) -> list[ModuleType]:
    modules: dict[str, ModuleType] = {}
    for target in targets:
        if isinstance(target, ModuleType):
            modules[target.__name__] = target
            continue
        for function in endpoint_functions(target):
            module = sys.modules.get(getattr(function, "__module__", ""))
            if module is not None:
                modules[module.__name__] = module
    return list(modules.values())
