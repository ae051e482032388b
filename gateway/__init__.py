"""A FastAPI gateway that serves legacy sync routes and migrated async routes over one database.

The public API; everything else is reached through its module.

    adopt(app, async_routers=[...], sync_session_dependencies=[get_db])   serve an existing app
    create_app(settings, legacy_routers=[...], async_routers=[...], **fastapi_options)
    SyncDB, AsyncDB                   the session each side's endpoints declare
    require_extension(name, feature)  a dependency for routes that need a PostgreSQL extension
    GatewayError and its kinds        errors routes raise, answered in the app's error format
    error_responses(404, ...)         `responses=` documenting them, in that format
    JsonInteger                       an integer field that takes 5 or 5.0, never "5" or true
    Settings, load_settings           every `GATEWAY_*` setting
    gateway_metadata, exclude_gateway_tables
                                      the gateway's tables, and the hook that keeps an app's
                                      Alembic autogenerate and `alembic check` off them
"""

from gateway.database.extensions import require_extension
from gateway.database.sessions import AsyncDB, SyncDB
from gateway.error_docs import error_responses
from gateway.errors import Conflict, GatewayError, NotFound, Unavailable, not_found
from gateway.factory import adopt, create_app, gateway_of
from gateway.json_types import JsonInteger
from gateway.ops.migrations import exclude_gateway_tables
from gateway.routing.schema import metadata as gateway_metadata
from gateway.settings import Settings, load_settings

__all__ = [
    "AsyncDB",
    "Conflict",
    "GatewayError",
    "JsonInteger",
    "NotFound",
    "Settings",
    "SyncDB",
    "Unavailable",
    "adopt",
    "create_app",
    "error_responses",
    "exclude_gateway_tables",
    "gateway_metadata",
    "gateway_of",
    "load_settings",
    "not_found",
    "require_extension",
]
