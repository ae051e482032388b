"""The gateway's errors, and how they and the app's failures are answered.

Two shapes, chosen by `GATEWAY_ERROR_FORMAT`:

    detail     {"detail": "user 7 not found"}                      FastAPI's own (the default)
    envelope   {"error": {"code": "not_found", "message": "user 7 not found", "details": {...}}}

`ConfigurationError` (and its subclasses across the gateway: contract
mismatches, route conflicts, invalid settings, a missing database URL or
schema) stops the start; the command line prints its message, no traceback.

Exception tree of request errors, and who answers what:

    GatewayError                    always answered by the gateway, in the chosen shape
    ├── Unauthorized      401       admin write without a valid token
    ├── Forbidden         403       admin writes disabled
    ├── NotFound          404
    ├── Conflict          409
    ├── InvalidMode       422       (gateway.routing.modes) a mode the route may not take
    └── Unavailable       503       overload shed, a missing extension; with Retry-After
    envelope only (detail leaves them to FastAPI and the app):
        HTTPException               404 for unknown paths, 405, the app's own raises
        RequestValidationError 422  `details.fields` names each bad field
        any other exception   500   logged with its traceback, answered without it
    with GATEWAY_MAP_DATABASE_ERRORS (off: they are the app's 500s, as without the gateway):
        IntegrityError        409   the message comes from the constraint's name, never the SQL
        DataError             422   a value PostgreSQL cannot store (range, NUL byte)
        sqlalchemy TimeoutError 503 no pool connection within the pool timeout
        DBAPIError            504   the statement timeout cancelled a query
                              503   the database is unreachable or went away
                              500   anything else the database refused
        OSError, asyncpg connection errors
                              503   the database cannot be reached at all

A handler the app registered itself for any of these classes is kept: the
gateway only fills the gaps.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any, Literal, TypeVar

from asyncpg import exceptions as asyncpg_errors
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse, Response

from gateway.failures import RateLimitedLog, sqlstate, unavailability

logger = logging.getLogger(__name__)

ErrorFormat = Literal["detail", "envelope"]
Handler = Callable[[Request, Exception], Awaitable[Response]]
E = TypeVar("E", bound=Exception)
FASTAPI_DEFAULTS: frozenset[Any] = frozenset(
    {http_exception_handler, request_validation_exception_handler}
)


class ConfigurationError(Exception):
    """The app cannot be served as configured; the message says what to change, line by line."""


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


RETRY_AFTER = {"Retry-After": "1"}
QUERY_CANCELED = "57014"
DATA_EXCEPTION = "22"  # SQLSTATE class: a value out of range, invalid bytes, ...


def code_of(status: int) -> str:
    """The envelope's `code` for an HTTP status: 414 -> "request_uri_too_long"."""
    return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")


def error_response(
    status_code: int,
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    error_format: ErrorFormat = "envelope",
) -> JSONResponse:
    if error_format == "detail":
        return JSONResponse({"detail": message}, status_code=status_code, headers=headers)
    body = {"error": {"code": code, "message": message, "details": dict(details or {})}}
    return JSONResponse(jsonable_encoder(body), status_code=status_code, headers=headers)


def internal_error(error_format: ErrorFormat) -> Response:
    """What an unhandled exception is answered with: Starlette's own text, or the envelope."""
    if error_format == "detail":
        return PlainTextResponse("Internal Server Error", status_code=500)
    return error_response(500, "internal_error", "internal server error")


def cancelled_answer(error_format: ErrorFormat) -> Response:
    """The answer to a request cancelled before it answered (a shutdown past its drain)."""
    return error_response(
        503,
        "unavailable",
        "the request was cancelled before it completed: retry",
        {"resource": "gateway"},
        RETRY_AFTER,
        error_format=error_format,
    )


def constraint_name(error: IntegrityError) -> str | None:
    """The violated constraint's name, from psycopg's diagnostics or asyncpg's exception."""
    original = error.orig
    diag = getattr(original, "diag", None)
    if diag is not None:
        return getattr(diag, "constraint_name", None)
    cause = getattr(original, "__cause__", None)
    return getattr(cause, "constraint_name", None)


class ErrorHandlers:
    """The handlers for one app, in its error format."""

    def __init__(self, error_format: ErrorFormat, constraint_messages: Mapping[str, str]) -> None:
        self.format: ErrorFormat = error_format
        self.constraint_messages = dict(constraint_messages)
        self.log = RateLimitedLog()

    def respond(
        self,
        status_code: int,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> JSONResponse:
        return error_response(
            status_code, code, message, details, headers, error_format=self.format
        )

    async def gateway_error(self, request: Request, exc: Exception) -> Response:
        error = _expect(exc, GatewayError)
        headers = RETRY_AFTER if error.status_code == 503 else None
        return self.respond(error.status_code, error.code, error.message, error.details, headers)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        error = _expect(exc, HTTPException)
        status = HTTPStatus(error.status_code)
        message = error.detail if isinstance(error.detail, str) else status.phrase
        return self.respond(error.status_code, code_of(status), message, headers=error.headers)

    async def validation_error(self, request: Request, exc: Exception) -> Response:
        error = _expect(exc, RequestValidationError)
        fields = [
            {"location": ".".join(str(part) for part in err["loc"]), "message": err["msg"]}
            for err in error.errors()
        ]
        names = ", ".join(field["location"] for field in fields)
        return self.respond(422, "invalid_request", f"invalid request: {names}", {"fields": fields})

    async def unexpected_error(self, request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error in %s %s", request.method, request.url.path)
        return internal_error(self.format)

    async def integrity_error(self, request: Request, exc: Exception) -> Response:
        name = constraint_name(_expect(exc, IntegrityError))
        message = self.constraint_messages.get(
            name or "", "the request conflicts with existing data"
        )
        return self.respond(409, "conflict", message, {"constraint": name})

    async def database_error(self, request: Request, exc: Exception) -> Response:
        """A failure the database or its driver reported (wrapped by SQLAlchemy or not)."""
        state = sqlstate(exc)
        if state.startswith(DATA_EXCEPTION):
            return await self.unstorable_value(request, exc)
        if state == QUERY_CANCELED:
            return self.respond(
                504, "query_timeout", "the query took longer than the statement timeout"
            )
        kind = unavailability(exc)
        if kind is not None:
            self.log.unavailable(kind)
            return self.database_unavailable()
        return await self.unexpected_error(request, exc)

    async def unstorable_value(self, request: Request, exc: Exception) -> Response:
        message = "a value cannot be stored: out of range, or a character PostgreSQL refuses"
        return self.respond(422, "invalid_request", message)

    async def pool_timeout(self, request: Request, exc: Exception) -> Response:
        message = "no database connection was free within the pool timeout"
        return self.respond(503, "unavailable", message, {"resource": "connections"}, RETRY_AFTER)

    def database_unavailable(self) -> JSONResponse:
        message = "the database is unavailable; retry shortly"
        return self.respond(503, "unavailable", message, {"resource": "database"}, RETRY_AFTER)

    def table(self, *, map_database_errors: bool) -> dict[type[Exception], Handler]:
        """Which exception classes this app's gateway answers, and with what."""
        handlers: dict[type[Exception], Handler] = {GatewayError: self.gateway_error}
        if self.format == "envelope":
            handlers[HTTPException] = self.http_error
            handlers[RequestValidationError] = self.validation_error
        if map_database_errors:
            handlers[IntegrityError] = self.integrity_error
            handlers[DBAPIError] = self.database_error
            handlers[DataError] = self.unstorable_value
            handlers[PoolTimeout] = self.pool_timeout
            # Raised raw by asyncpg while it connects, before SQLAlchemy can wrap them
            # (over a unix socket a missing server is a FileNotFoundError: any OSError counts).
            handlers[asyncpg_errors.PostgresError] = self.database_error
            handlers[OSError] = self.database_error
        if self.format == "envelope":
            handlers[Exception] = self.unexpected_error
        return handlers


def _expect(exc: Exception, kind: type[E]) -> E:
    if not isinstance(exc, kind):  # only reachable if registered for the wrong class
        raise TypeError(f"a {kind.__name__} handler was given {type(exc).__name__}") from exc
    return exc


def install_error_handlers(
    app: FastAPI,
    *,
    error_format: ErrorFormat,
    map_database_errors: bool,
    constraint_messages: Mapping[str, str],
) -> ErrorHandlers:
    """Answer the gateway's errors (and, as configured, the app's), keeping the app's handlers."""
    handlers = ErrorHandlers(error_format, constraint_messages)
    for exception, handler in handlers.table(map_database_errors=map_database_errors).items():
        current = app.exception_handlers.get(exception)
        if current is None or current in FASTAPI_DEFAULTS:
            app.add_exception_handler(exception, handler)
    return handlers
