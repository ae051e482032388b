"""Route modes: which implementation serves a request, decided from memory alone.

    legacy   every request to the legacy implementation
    async    every request to the async implementation
    canary   `percent` of requests to async. A request's sticky key, salted
             with the route's key, hashes to one of 10,000 buckets; buckets
             below percent x 100 go to async. The same key always lands in the
             same bucket of a route, so raising the percentage only moves keys
             from legacy to async, never back; the salt makes each route pick
             its own keys, so a 20 % canary on two routes does not send the
             same users to async on both. Without a key, a request draws a
             random bucket.
    shadow   `primary` serves the client; the other implementation runs the
             same request in the background, read-only, and its answer is only
             compared (see `gateway.routing.shadow`). Safe methods only.
             `sample` percent of requests are run twice. While `calibrating`,
             the primary itself runs again instead, so the comparisons learn
             the route's own noise (fields that differ between two runs).

A route with one implementation is always served by it. `validate_change`
refuses what cannot work: a mode needing an implementation the route lacks
(409) and shadow on a method that may write (422).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Literal

from gateway.errors import Conflict, GatewayError
from gateway.impl import Impl, other

Mode = Literal["legacy", "async", "canary", "shadow"]
MODES: tuple[Mode, ...] = ("legacy", "async", "canary", "shadow")
SAFE_METHODS = frozenset({"GET", "HEAD"})
BUCKETS = 10_000


class InvalidMode(GatewayError):
    status_code = 422
    code = "invalid_request"


@dataclass(frozen=True, slots=True)
class RouteMode:
    mode: Mode = "legacy"
    percent: int = 0
    primary: Impl = "legacy"
    sample: int = 100
    calibrating: bool = False

    def needs(self) -> set[Impl]:
        """The implementations this mode sends requests to."""
        if self.mode == "legacy":
            return {"legacy"}
        if self.mode == "async":
            return {"async"}
        if self.mode == "shadow" and self.calibrating:
            return {self.primary}
        return {"legacy", "async"}

    def choose(self, sticky_key: str | None, route: str = "") -> Impl:
        """The implementation that answers the client of `route` (its key salts the bucket)."""
        if self.mode == "canary":
            drawn = bucket(sticky_key, route)
            return "async" if drawn < self.percent * (BUCKETS // 100) else "legacy"
        if self.mode == "shadow":
            return self.primary
        return self.mode

    @property
    def shadow(self) -> Impl | None:
        """The implementation that runs in the background, if any."""
        if self.mode != "shadow":
            return None
        return self.primary if self.calibrating else other(self.primary)


def bucket(sticky_key: str | None, salt: str = "") -> int:
    """The canary bucket of `sticky_key` on the route whose key is `salt` (random without one)."""
    if sticky_key is None:
        return random.randrange(BUCKETS)
    digest = hashlib.blake2b(f"{salt}\n{sticky_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def validate_change(key: str, implementations: set[str], wanted: RouteMode) -> None:
    """Refuse a mode the route cannot serve: 409 for a missing implementation, 422 otherwise."""
    missing = sorted(wanted.needs() - implementations)
    if missing:
        raise Conflict(
            f"{key} has no {' and no '.join(missing)} implementation, "
            f"so it cannot be served in mode {wanted.mode!r}",
            {"route": key, "missing_implementations": missing},
        )
    method = key.split(" ", 1)[0]
    if wanted.mode == "shadow" and method not in SAFE_METHODS:
        raise InvalidMode(
            f"shadow mode runs every request twice, so it is allowed only for safe methods "
            f"(GET, HEAD); {key} may write",
            {"route": key, "method": method},
        )


def default_mode(implementations: set[str], configured: Impl) -> RouteMode:
    """A route's mode until someone sets one: the configured default, or its only implementation."""
    if len(implementations) == 1:
        only = next(iter(implementations))
        return RouteMode(mode="async" if only == "async" else "legacy")
    return RouteMode(mode=configured)
