"""The tracker app, as it was before the gateway."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from tracker import errors
from tracker.api.deps import api_version_header
from tracker.api.main import api_router
from tracker.config import database_url

API_PREFIX = "/api/v1"


def unique_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def build_app(url: str | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(url or database_url())
        app.state.sessions = sessionmaker(engine, expire_on_commit=False)
        yield
        engine.dispose()

    app = FastAPI(
        title="Tracker",
        openapi_url=f"{API_PREFIX}/openapi.json",
        generate_unique_id_function=unique_id,
        lifespan=lifespan,
    )
    app.add_middleware(CORSMiddleware, allow_origins=["https://tracker.example"])
    errors.install(app)
    app.include_router(api_router, prefix=API_PREFIX, dependencies=[Depends(api_version_header)])
    return app


app = build_app()
