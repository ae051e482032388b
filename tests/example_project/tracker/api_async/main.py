"""The migrated routers, mounted under the same version prefix as their legacy twins."""

from fastapi import APIRouter, Depends

from tracker.api.deps import api_version_header
from tracker.api_async.routes import tickets
from tracker.main import API_PREFIX

async_api_router = APIRouter()
async_api_router.include_router(
    tickets.router, prefix=API_PREFIX, dependencies=[Depends(api_version_header)]
)
