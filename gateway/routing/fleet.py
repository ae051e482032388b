"""Which version of the route table every worker of every instance holds, and who lags.

Each worker writes its row in `gateway_workers` (instance, pid, the version
it holds, whether it listens for changes) whenever that changes, and at least
once per reload period as a heartbeat; it deletes the row when it stops. A
worker lags when it holds an older version than the newest stored change; a
worker not heard of for three reload periods is stale (stopped without saying
so, or cut off from the database) and does not count, and its row goes after a
day.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.routing.schema import routes_table, workers_table

logger = logging.getLogger(__name__)

STALE_AFTER_PERIODS = 3
# asyncpg's parameters: run on the raw listening connection or through the async engine
REPORT = (
    "WITH gone AS (DELETE FROM gateway_workers WHERE seen_at < now() - interval '1 day') "
    "INSERT INTO gateway_workers (worker, instance, pid, version, listening) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (worker) DO UPDATE SET "
    "version = excluded.version, listening = excluded.listening, seen_at = now()"
)


@dataclass(frozen=True)
class Worker:
    instance: str
    pid: int

    @property
    def name(self) -> str:
        return f"{self.instance}/{self.pid}"


def this_worker(instance: str) -> Worker:
    return Worker(instance, os.getpid())


class Heartbeat:
    """A worker's reports: written when what it holds changes, else once per `every` seconds."""

    def __init__(self, engine: AsyncEngine, worker: Worker, every: float) -> None:
        self.engine = engine
        self.worker = worker
        self.every = every
        self.reported: tuple[int, bool] | None = None
        self.reported_at = 0.0
        self.failed = False  # the last report did not reach the database: retry soon

    async def beat(self, version: int, listener: Any = None) -> None:
        """Report, on the listening connection when there is one, else through the pool.

        Quietly: a database that does not answer must not stop the worker.
        """
        now = time.monotonic()
        listening = listener is not None
        if self.reported == (version, listening) and now - self.reported_at < self.every:
            return
        arguments = (self.worker.name, self.worker.instance, self.worker.pid, version, listening)
        try:
            if listener is not None:
                await listener.execute(REPORT, *arguments)
            else:
                async with self.engine.begin() as connection:
                    await connection.exec_driver_sql(REPORT, arguments)
        except Exception as error:
            logger.warning("worker report not written (retried in 1 s): %r", error)
            self.failed = True
            return
        self.reported, self.reported_at, self.failed = (version, listening), now, False

    async def stop(self) -> None:
        try:
            async with self.engine.begin() as connection:
                await connection.execute(
                    delete(workers_table).where(workers_table.c.worker == self.worker.name)
                )
        except Exception as error:
            logger.info("worker report not removed: %s", type(error).__name__)


async def fleet_status(engine: AsyncEngine, reload_seconds: float) -> dict[str, Any]:
    """The newest stored version and every worker's, with the laggards and the stale named."""
    newest = select(func.coalesce(func.max(routes_table.c.version), 0))
    async with engine.connect() as connection:
        version = int((await connection.execute(newest)).scalar_one())
        rows = await connection.execute(
            select(workers_table, func.now().label("now")).order_by(workers_table.c.worker)
        )
        workers = [dict(row._mapping) for row in rows]
    return describe_fleet(version, workers, stale_after=STALE_AFTER_PERIODS * reload_seconds)


def describe_fleet(
    version: int, rows: Iterable[Mapping[str, Any]], *, stale_after: float
) -> dict[str, Any]:
    workers = [_described(row, version, stale_after) for row in rows]
    live = [worker for worker in workers if not worker["stale"]]
    return {
        "version": version,
        "converged": all(not worker["lagging"] for worker in live),
        "workers": workers,
        "lagging": [worker["worker"] for worker in live if worker["lagging"]],
        "stale": [worker["worker"] for worker in workers if worker["stale"]],
    }


def _described(row: Mapping[str, Any], version: int, stale_after: float) -> dict[str, Any]:
    now: datetime = row["now"]
    silent = (now - row["seen_at"]).total_seconds()
    return {
        "worker": row["worker"],
        "instance": row["instance"],
        "pid": row["pid"],
        "version": row["version"],
        "listening": row["listening"],
        "seen_seconds_ago": round(max(silent, 0.0), 3),
        "lagging": row["version"] < version,
        "stale": silent > stale_after,
    }


def lagging_on(fleet: Mapping[str, Any], version: int) -> list[str]:
    """The live workers of `fleet` that hold a table older than `version`."""
    return [
        worker["worker"]
        for worker in fleet["workers"]
        if not worker["stale"] and worker["version"] < version
    ]
