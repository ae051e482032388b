"""Who may use the admin API, and how it answers: tokens, scopes, and its own error shape.

Every /admin endpoint needs `Authorization: Bearer <token>`. Tokens come from
`GATEWAY_ADMIN_TOKENS` (read and change) and `GATEWAY_ADMIN_READ_TOKENS`
(read only), compared in constant time against every configured token; the
token's name, never the token, is what is recorded and shown. With no token
configured the admin API is disabled (403). Any of these tokens may also
force an implementation on a request (`token_check`, `gateway.routing.forcing`).

The admin API is the gateway's own, so it answers its errors in the gateway's
documented envelope (`gateway.errors`) whatever error format the app has
chosen, and a database it cannot reach is a 503, whatever the app maps. Every
admin module shares the route table dependency (`Table`), the check of a
route key (`known_route`) and the documentation of these errors.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from gateway.asgi import answering_cancellation
from gateway.database.state import gateway_state
from gateway.error_docs import ErrorEnvelope, documented_responses
from gateway.errors import (
    ErrorHandlers,
    Forbidden,
    GatewayError,
    NotFound,
    Unauthorized,
    Unavailable,
    cancelled_answer,
)
from gateway.failures import RateLimitedLog, unavailability
from gateway.routing.keys import normalized
from gateway.routing.table import RouteTable
from gateway.settings import Settings

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="admin token",
    description="a token from GATEWAY_ADMIN_TOKENS (read and change) "
    "or GATEWAY_ADMIN_READ_TOKENS (read only)",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
ENVELOPE = ErrorHandlers("envelope", {})
unavailable_log = RateLimitedLog()


def matching_name(offered: str, tokens: Mapping[str, SecretStr]) -> str | None:
    """The name of the token equal to `offered`; every token is compared, in constant time."""
    matched = None
    for name, token in tokens.items():
        if hmac.compare_digest(offered.encode(), token.get_secret_value().encode()):
            matched = name
    return matched


def token_check(settings: Settings) -> Callable[[str], str | None]:
    """Names a token offered outside the admin API (to force an implementation): any admin token."""
    tokens = {**settings.admin_read_tokens, **settings.admin_tokens}
    return lambda offered: matching_name(offered, tokens) if tokens else None


def offered_token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or not credentials.credentials:
        raise Unauthorized("an admin token is required: Authorization: Bearer <token>")
    return credentials.credentials


def reader(request: Request, credentials: Credentials) -> str:
    """The name of a token that may read; 401 or 403 otherwise."""
    settings = gateway_state(request.app).settings
    tokens = {**settings.admin_read_tokens, **settings.admin_tokens}
    if not tokens:
        raise Forbidden(
            "the admin API is disabled: no GATEWAY_ADMIN_TOKENS or GATEWAY_ADMIN_READ_TOKENS "
            "are configured"
        )
    name = matching_name(offered_token(credentials), tokens)
    if name is None:
        raise Unauthorized("the admin token is not valid")
    return name


def writer(request: Request, credentials: Credentials) -> str:
    """The name of a token that may change modes; 401 or 403 otherwise."""
    settings = gateway_state(request.app).settings
    if not settings.admin_tokens:
        raise Forbidden("admin writes are disabled: no GATEWAY_ADMIN_TOKENS are configured")
    offered = offered_token(credentials)
    name = matching_name(offered, settings.admin_tokens)
    if name is not None:
        return name
    if matching_name(offered, settings.admin_read_tokens) is not None:
        raise Forbidden("this admin token may only read")
    raise Unauthorized("the admin token is not valid")


def may_change(request: Request, credentials: Credentials) -> bool:
    """Whether the (valid) token offered is a read-write one."""
    settings = gateway_state(request.app).settings
    offered = "" if credentials is None else credentials.credentials
    return matching_name(offered, settings.admin_tokens) is not None


Reader = Annotated[str, Depends(reader)]
Writer = Annotated[str, Depends(writer)]
MayChange = Annotated[bool, Depends(may_change)]


class AdminRoute(APIRoute):
    """An admin endpoint: its errors in the gateway's envelope, whatever the app's format.

    Cancelled before it answered (a shutdown past its drain time), it answers 503.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = answering_cancellation(self.app, cancelled_answer("envelope"))

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except GatewayError as error:
                return await ENVELOPE.gateway_error(request, error)
            except RequestValidationError as error:
                return await ENVELOPE.validation_error(request, error)

        return answer


@contextmanager
def database_or_unavailable() -> Iterator[None]:
    """A database that cannot be used is a 503 on the admin API, whatever the app maps."""
    try:
        yield
    except Exception as error:
        kind = unavailability(error)
        if kind is None:
            raise
        unavailable_log.unavailable(kind)
        raise Unavailable(
            "the database is unavailable; retry shortly", {"resource": "database"}
        ) from None


def route_table(request: Request) -> RouteTable:
    table: RouteTable = request.app.state.route_table
    return table


Table = Annotated[RouteTable, Depends(route_table)]


def admin_errors(own: dict[int, str], *, takes_body: bool) -> dict[int | str, dict[str, Any]]:
    """`responses=` for admin endpoints: their `own` errors and the gateway's, in the envelope."""
    return documented_responses(
        {status: {"model": ErrorEnvelope, "description": text} for status, text in own.items()},
        methods=set(),
        takes_input=True,
        takes_body=takes_body,
        error_format="envelope",
        map_database_errors=False,
    )


ADMIN_ERRORS = admin_errors({401: "no admin token, or not a valid one"}, takes_body=False)


def known_route(table: RouteTable, key: str) -> str:
    key = normalized(key)
    if key not in table.routes:
        raise NotFound(f"no route {key!r}", {"route": key, "known": sorted(table.routes)})
    return key


def admin_router(prefix: str) -> APIRouter:
    """A router of admin endpoints: a token to read, the envelope, out of the app's OpenAPI."""
    return APIRouter(
        prefix=prefix,
        tags=["admin"],
        route_class=AdminRoute,
        dependencies=[Depends(reader)],
        responses=ADMIN_ERRORS,
        include_in_schema=False,
    )
