"""A FastAPI gateway that serves legacy sync routes and migrated async routes over one database."""

from gateway.database.sessions import AsyncDB, SyncDB
from gateway.errors import Conflict, GatewayError, NotFound, Unavailable, not_found
from gateway.factory import create_app
from gateway.settings import Settings, load_settings

__all__ = [
    "AsyncDB",
    "Conflict",
    "GatewayError",
    "NotFound",
    "Settings",
    "SyncDB",
    "Unavailable",
    "create_app",
    "load_settings",
    "not_found",
]
