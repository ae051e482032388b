"""Database work of a background loop that a shutdown lets finish rather than cuts short."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import anyio

T = TypeVar("T")


async def uninterrupted(work: Awaitable[T], *, limit: float) -> T:
    """Await `work` to its end even if the caller is cancelled meanwhile, for `limit` s at most.

    A cancellation that arrives meanwhile takes effect at the caller's next
    checkpoint. Cancelling asyncpg while it negotiates a new connection leaves a
    future whose error nobody retrieves ("Future exception was never
    retrieved"); a loop stopped at shutdown would do that whenever the
    database is slow to accept it. Past `limit`, TimeoutError.
    """
    with anyio.CancelScope(shield=True), anyio.fail_after(limit):
        done = await work
    return done
