"""Forcing an implementation: an admin tries a route's twin in production with their own requests.

A request carrying `X-Gateway-Force-Impl: legacy|async` (`GATEWAY_FORCE_IMPL_HEADER`)
and an admin token, read-write or read-only, in `X-Gateway-Admin-Token`
(`GATEWAY_ADMIN_TOKEN_HEADER`) is served by that implementation whatever the
route's mode. A force header is never ignored:

    no admin token, or one that is not valid    403
    a value other than legacy or async          422
    an implementation the route lacks           409

A forced request runs no shadow, is not counted by the canary guard, and is
logged with the token's name; its token header is taken out of the request
before the implementation sees it. The tokens belong to the admin API: the
ops layer gives the route table a `TokenCheck`, so routing never reads them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping

from starlette.types import Scope

from gateway.errors import Conflict, Forbidden, GatewayError
from gateway.impl import IMPLS, Impl

logger = logging.getLogger(__name__)

TokenCheck = Callable[[str], str | None]  # an offered token -> its name; None: not valid
BY_NAME: dict[str, Impl] = {impl: impl for impl in IMPLS}


class InvalidForce(GatewayError):
    status_code = 422
    code = "invalid_request"


class Forcing:
    """The force and token headers (lower-case bytes, as in the scope) and the token check."""

    def __init__(self, header: str, token_header: str, check_token: TokenCheck | None) -> None:
        self.header_name, self.token_header_name = header, token_header
        self.header = header.lower().encode("latin-1")
        self.token_header = token_header.lower().encode("latin-1")
        self.check_token = check_token

    def chosen(
        self,
        key: str,
        implementations: Collection[str],
        headers: Mapping[bytes, bytes],
        scope: Scope,
    ) -> Impl:
        """The implementation the request forces on route `key`; a refusal raises."""
        token_name = self.token_name(headers.get(self.token_header))
        wanted = headers[self.header].decode("latin-1").strip().lower()
        impl = BY_NAME.get(wanted)
        if impl is None:
            raise InvalidForce(
                f"{self.header_name} must be legacy or async, not {wanted!r}",
                {"header": self.header_name, "value": wanted},
            )
        if impl not in implementations:
            raise Conflict(
                f"{key} has no {impl} implementation to force",
                {"route": key, "implementations": sorted(implementations)},
            )
        scope["headers"] = [(n, v) for n, v in scope["headers"] if n != self.token_header]
        logger.info("%s: %s forced by admin token %r", key, impl, token_name)
        return impl

    def token_name(self, offered: bytes | None) -> str:
        """The name of the admin token offered with a force header; 403 without a valid one."""
        name = None
        if offered and self.check_token is not None:
            name = self.check_token(offered.decode("latin-1"))
        if name is None:
            raise Forbidden(
                f"{self.header_name} needs a valid admin token in {self.token_header_name}",
                {"header": self.token_header_name},
            )
        return name
