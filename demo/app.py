"""The demo's composition root: the gateway's public API, used exactly as an adopter uses it.

`gateway serve` in the repository finds it through `[tool.gateway] app` in
pyproject.toml; `uvicorn demo.app:app` serves it too.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

import async_routes.documents
import async_routes.items
import async_routes.users
import legacy_routes.items
import legacy_routes.orders
import legacy_routes.reports
import legacy_routes.users
from demo.database import prepare
from demo.settings import DemoSettings
from gateway import Settings, create_app, load_settings
from gateway.database.engines import Database
from shared_models.constraints import CONSTRAINT_MESSAGES

LEGACY_ROUTERS: list[APIRouter] = [
    legacy_routes.items.router,
    legacy_routes.orders.router,
    legacy_routes.reports.router,
    legacy_routes.users.router,
]
ASYNC_ROUTERS: list[APIRouter] = [
    async_routes.documents.router,
    async_routes.items.router,
    async_routes.users.router,
]


def create_demo_app(
    settings: Settings | None = None,
    *,
    legacy_routers: list[APIRouter] | None = None,
    async_routers: list[APIRouter] | None = None,
    database: Database | None = None,
) -> FastAPI:
    """The demo app; tests give it other settings, routers or a database bound to a test's."""
    settings = settings or load_settings(DemoSettings)
    seed = bool(getattr(settings, "seed_demo_data", False))
    return create_app(
        settings,
        legacy_routers=LEGACY_ROUTERS if legacy_routers is None else legacy_routers,
        async_routers=ASYNC_ROUTERS if async_routers is None else async_routers,
        constraint_messages=CONSTRAINT_MESSAGES,
        prepare_embedded_database=lambda url: prepare(url, seed=seed),
        database=database,
        title="Hybrid gateway demo shop",
        summary="Legacy sync routes and migrated async routes over one set of models",
    )


app = create_demo_app()
