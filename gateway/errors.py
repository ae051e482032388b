"""One JSON shape for every error, whichever implementation raised it.

    {"error": {"code": "not_found", "message": "user 7 not found", "details": {...}}}

Exception tree handled here:

    GatewayError                    raised by routes and the gateway itself
    ├── Unauthorized      401       admin write without a valid token
    ├── Forbidden         403       admin writes disabled
    ├── NotFound          404
    ├── Conflict          409
    ├── InvalidMode       422       (gateway.routing.modes) a mode the route may not take
    └── Unavailable       503
    HTTPException                   FastAPI/Starlette's own (404 for unknown paths, 405, ...)
    RequestValidationError  422     bad body, path or query: `details.fields` names each field
    IntegrityError          409     a constraint refused a write; the message comes from
                                    the constraint's name, never from the SQL
    sqlalchemy TimeoutError 503     no pool connection within the pool timeout
    DataError               422     a value PostgreSQL cannot store (range, NUL byte)
    DBAPIError              504     the statement timeout cancelled a query
                            503     the database is unreachable or went away
                            500     anything else the database refused
    OSError, asyncpg connection errors
                            503     the database cannot be reached at all
    any other exception     500     logged with its traceback, answered without it
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from asyncpg import exceptions as asyncpg_errors
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

logger = logging.getLogger(__name__)


class GatewayError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = dict(details or {})


class Unauthorized(GatewayError):
    status_code = 401
    code = "unauthorized"


class Forbidden(GatewayError):
    status_code = 403
    code = "forbidden"


class NotFound(GatewayError):
    status_code = 404
    code = "not_found"


class Conflict(GatewayError):
    status_code = 409
    code = "conflict"


class Unavailable(GatewayError):
    status_code = 503
    code = "unavailable"


def not_found(entity: str, key: object) -> NotFound:
    return NotFound(f"{entity} {key} not found", {"entity": entity, "id": key})


def error_response(
    status_code: int,
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": dict(details or {})}}
    return JSONResponse(jsonable_encoder(body), status_code=status_code, headers=headers)


def constraint_name(error: IntegrityError) -> str | None:
    """The violated constraint's name, from psycopg's diagnostics or asyncpg's exception."""
    original = error.orig
    diag = getattr(original, "diag", None)
    if diag is not None:
        return getattr(diag, "constraint_name", None)
    cause = getattr(original, "__cause__", None)
    return getattr(cause, "constraint_name", None)


RETRY_AFTER = {"Retry-After": "1"}
QUERY_CANCELED = "57014"
DATA_EXCEPTION = "22"  # SQLSTATE class: a value out of range, invalid bytes, ...
UNAVAILABLE_STATES = ("08", "57P")  # connection exceptions; admin shutdown, crash, cannot connect


async def _gateway_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    headers = RETRY_AFTER if exc.status_code == 503 else None
    return error_response(exc.status_code, exc.code, exc.message, exc.details, headers)


def sqlstate(error: DBAPIError) -> str:
    original = error.orig
    state = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    if state is None:
        state = getattr(getattr(original, "__cause__", None), "sqlstate", None)
    return str(state or "")


def database_unavailable() -> JSONResponse:
    message = "the database is unavailable; retry shortly"
    return error_response(503, "unavailable", message, {"resource": "database"}, RETRY_AFTER)


async def _pool_timeout(request: Request, exc: Exception) -> JSONResponse:
    message = "no database connection was free within the pool timeout"
    return error_response(503, "unavailable", message, {"resource": "connections"}, RETRY_AFTER)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    state = sqlstate(exc)
    if state.startswith(DATA_EXCEPTION):
        return await _unstorable_value(request, exc)
    if state == QUERY_CANCELED:
        message = "the query took longer than the statement timeout"
        return error_response(504, "query_timeout", message)
    unknown_link_error = not state and isinstance(exc, OperationalError | InterfaceError)
    if exc.connection_invalidated or state.startswith(UNAVAILABLE_STATES) or unknown_link_error:
        logger.warning("database unavailable: %s", type(exc.orig).__name__)
        return database_unavailable()
    return await _unexpected_error(request, exc)


async def _unstorable_value(request: Request, exc: Exception) -> JSONResponse:
    message = "a value cannot be stored: out of range, or a character PostgreSQL refuses"
    return error_response(422, "invalid_request", message)


async def _unreachable(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("database unreachable: %s", type(exc).__name__)
    return database_unavailable()


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    status = HTTPStatus(exc.status_code)
    code = status.phrase.lower().replace(" ", "_").replace("-", "_")
    message = exc.detail if isinstance(exc.detail, str) else status.phrase
    return error_response(exc.status_code, code, message, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = [
        {"location": ".".join(str(part) for part in err["loc"]), "message": err["msg"]}
        for err in exc.errors()
    ]
    names = ", ".join(field["location"] for field in fields)
    return error_response(422, "invalid_request", f"invalid request: {names}", {"fields": fields})


async def _integrity_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IntegrityError)
    name = constraint_name(exc)
    messages: Mapping[str, str] = getattr(request.app.state, "constraint_messages", {})
    message = messages.get(name or "", "the request conflicts with existing data")
    return error_response(409, "conflict", message, {"constraint": name})


def internal_error() -> JSONResponse:
    return error_response(500, "internal_error", "internal server error")


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error in %s %s", request.method, request.url.path)
    return internal_error()


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(DataError, _unstorable_value)
    app.add_exception_handler(PoolTimeout, _pool_timeout)
    # Raised raw by asyncpg while it connects, before SQLAlchemy can wrap them.
    # (over a unix socket a missing server is a FileNotFoundError: any OSError counts)
    for unreachable in (
        OSError,
        asyncpg_errors.PostgresConnectionError,
        asyncpg_errors.OperatorInterventionError,
    ):
        app.add_exception_handler(unreachable, _unreachable)
    app.add_exception_handler(Exception, _unexpected_error)
