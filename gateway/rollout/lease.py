"""Which worker of the fleet drives the rollout plans: the holder of one lease row.

A worker takes the lease when it is free or expired, and renews it while it
holds it; both are one `INSERT ... ON CONFLICT DO UPDATE ... WHERE` statement,
so it works through a pooler in transaction mode (where session advisory
locks do not). The epoch grows at every change of holder. Every change the
driver makes first checks, in its own transaction and holding the row with
`FOR SHARE`, that it still holds the lease at its epoch: a driver that was
frozen past its lease and wakes up changes nothing, and its successor's
takeover waits for any change in flight to commit.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

NAME = "rollouts"
TAKE = text(
    "INSERT INTO gateway_rollout_lease AS lease (name, holder, epoch, expires_at) "
    "VALUES (:name, :holder, 1, now() + :seconds * interval '1 second') "
    "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
    "  expires_at = excluded.expires_at, "
    "  epoch = CASE WHEN lease.holder = excluded.holder AND lease.expires_at >= now() "
    "    THEN lease.epoch ELSE lease.epoch + 1 END "
    "WHERE lease.holder = excluded.holder OR lease.expires_at < now() "
    "RETURNING epoch"
)
HELD = text(
    "SELECT 1 FROM gateway_rollout_lease WHERE name = :name AND holder = :holder "
    "AND epoch = :epoch AND expires_at > now() FOR SHARE"
)
RELEASE = text(
    "UPDATE gateway_rollout_lease SET expires_at = now() - interval '1 second' "
    "WHERE name = :name AND holder = :holder"
)


class LeaseLost(Exception):
    """This worker no longer holds the lease it acted under."""


@dataclass
class Lease:
    holder: str
    seconds: float
    epoch: int | None = None  # held at this epoch, or not held

    async def take(self, engine: AsyncEngine) -> tuple[bool, bool]:
        """Take or renew the lease: (held now, newly taken)."""
        async with engine.begin() as connection:
            taken = await connection.execute(
                TAKE, {"name": NAME, "holder": self.holder, "seconds": self.seconds}
            )
            epoch = taken.scalar_one_or_none()
        newly = epoch is not None and epoch != self.epoch
        self.epoch = epoch
        return epoch is not None, newly

    async def fence(self, connection: AsyncConnection) -> None:
        """Raise `LeaseLost` unless this worker still holds the lease at its epoch."""
        if self.epoch is None:
            raise LeaseLost(f"{self.holder} does not hold the rollout lease")
        held = await connection.execute(
            HELD, {"name": NAME, "holder": self.holder, "epoch": self.epoch}
        )
        if held.first() is None:
            self.epoch = None
            raise LeaseLost(f"{self.holder} lost the rollout lease")

    async def release(self, engine: AsyncEngine) -> None:
        """Let the next worker take over at once (on a clean stop)."""
        if self.epoch is None:
            return
        async with engine.begin() as connection:
            await connection.execute(RELEASE, {"name": NAME, "holder": self.holder})
        self.epoch = None
