"""PostgreSQL extensions a route needs: declared on the route, checked once, reported by /readyz.

A route (or a whole router) that cannot work without an extension declares it
with a dependency:

    router = APIRouter(dependencies=[Depends(require_extension("vector", "document search"))])

Where the extension is not installed, those routes answer 503 naming it, and
the rest of the API is unaffected. The gateway finds every declared extension
in the app's routes at start-up and reports each on /readyz; an app that
declares none has none reported.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from fastapi import Request
from fastapi.dependencies.models import Dependant
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.database.engines import Database
from gateway.database.state import gateway_state
from gateway.errors import Unavailable

logger = logging.getLogger(__name__)

INSTALLED = text("SELECT 1 FROM pg_extension WHERE extname = :name")


async def is_installed(engine: AsyncEngine, name: str) -> bool:
    async with engine.connect() as connection:
        return (await connection.scalar(INSTALLED, {"name": name})) is not None


async def probe_extension(database: Database, name: str) -> bool | None:
    """Whether `name` is installed; None while the database does not answer (asked again later)."""
    known = database.extensions.get(name)
    if known is not None:
        return known
    try:
        database.extensions[name] = await is_installed(database.async_engine, name)
    except (OSError, SQLAlchemyError) as error:
        url = database.async_engine.url.render_as_string(hide_password=True)
        logger.warning("database at %s does not answer yet: %s", url, type(error).__name__)
        return None
    return database.extensions[name]


class RequiredExtension:
    """A dependency that answers 503 unless the PostgreSQL extension `name` is installed."""

    def __init__(self, name: str, feature: str) -> None:
        self.name = name
        self.feature = feature

    async def __call__(self, request: Request) -> None:
        available = await probe_extension(gateway_state(request.app).database, self.name)
        if available is None:
            raise Unavailable("the database does not answer", {"retry": True})
        if not available:
            raise Unavailable(
                f"{self.feature} needs the PostgreSQL extension {self.name!r}, "
                "which is not installed in this database",
                {"missing_extension": self.name},
            )

    def __repr__(self) -> str:
        return f"require_extension({self.name!r})"


def require_extension(name: str, feature: str) -> RequiredExtension:
    """A dependency for routes that need the extension `name` to provide `feature`."""
    return RequiredExtension(name, feature)


def required_extensions(dependants: Iterable[Dependant]) -> frozenset[str]:
    """The extensions the routes with these dependency trees declare."""
    return frozenset(
        call.name for dependant in dependants for call in _calls(dependant)
        if isinstance(call, RequiredExtension)
    )  # fmt: skip


def _calls(dependant: Dependant) -> Iterator[object]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)
