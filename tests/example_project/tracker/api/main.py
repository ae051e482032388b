"""Every router of the API, mounted under the version prefix by `tracker.main`."""

from fastapi import APIRouter

from tracker.api.routes import projects, tickets

api_router = APIRouter()
api_router.include_router(projects.router)
api_router.include_router(tickets.router)
