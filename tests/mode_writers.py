"""`python -m tests.mode_writers URL KEY NAME COUNT START_AT`: COUNT concurrent mode changes.

Each change is stored through the gateway's own `save_mode`, all at once from
`START_AT` (a `time.time()`), so that two such processes race each other.
"""

from __future__ import annotations

import asyncio
import sys
import time

from sqlalchemy.ext.asyncio import create_async_engine

from gateway.database.engines import async_url
from gateway.routing.modes import RouteMode
from gateway.routing.store import save_mode

MODES = (RouteMode("async"), RouteMode("canary", percent=30), RouteMode("legacy"))


async def write(url: str, key: str, name: str, count: int, start_at: float) -> None:
    engine = create_async_engine(async_url(url), pool_size=count, max_overflow=0)
    try:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        await asyncio.gather(
            *(
                save_mode(
                    engine,
                    key,
                    MODES[n % len(MODES)],
                    actor=f"{name}-{n}",
                    reason="race",
                    default=RouteMode("legacy"),
                )
                for n in range(count)
            )
        )
    finally:
        await engine.dispose()


if __name__ == "__main__":
    url, key, name, count, start_at = sys.argv[1:6]
    asyncio.run(write(url, key, name, int(count), float(start_at)))
