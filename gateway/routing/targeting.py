"""What a request asks of its route's dispatcher, found in one pass over its headers.

Each route's dispatcher holds a `RequestReader` built at start with the few
header names it may need: the force header, the admin token header, and the
header its sticky key comes from (or Cookie). A request without the force
header costs that one pass and nothing more until a canary asks for its
sticky key (`gateway.routing.stickiness`); one with it is checked and served
as `gateway.routing.forcing` says.
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.types import Scope

from gateway.impl import Impl
from gateway.routing.forcing import Forcing
from gateway.routing.stickiness import Headers, StickyReader


class RequestReader:
    """For one route: the headers it needs, its sticky key, and a forced implementation."""

    __slots__ = ("forcing", "implementations", "key", "sticky", "wanted")

    def __init__(
        self, key: str, implementations: Collection[str], sticky: StickyReader, forcing: Forcing
    ) -> None:
        self.key = key
        self.implementations = frozenset(implementations)
        self.sticky = sticky
        self.forcing = forcing
        needed = (forcing.header, forcing.token_header, sticky.header)
        self.wanted = frozenset(name for name in needed if name is not None)

    def headers(self, scope: Scope) -> dict[bytes, bytes]:
        wanted = self.wanted
        return {name: value for name, value in scope["headers"] if name in wanted}

    def forced(self, scope: Scope, headers: Headers) -> Impl | None:
        """The implementation the request forces (None: it forces none); a refusal raises."""
        if self.forcing.header not in headers:
            return None
        return self.forcing.chosen(self.key, self.implementations, headers, scope)

    def sticky_key(self, scope: Scope, headers: Headers) -> str | None:
        return self.sticky.read(scope, headers)
