"""The rollout loop every worker runs; the lease holder's turn also drives the plans.

Every `rollout_tick_seconds`, each worker flushes its samples of routes under
a plan, reads the plans (so it knows which routes to count and shows them in
its metrics) and tries to take or renew the lease. The holder then judges
every running plan on the fleet's evidence since its step began and stores
the verdict under its lease, and once a minute deletes the samples no step
in progress needs any more (webhook
notifications go out from the holder too, in a loop of their own:
`gateway.rollout.notifications`). A holder that stops releases the lease; one
that dies is replaced once the lease expires, and its successor continues
each plan at the step stored, judging the same evidence: no step is skipped
or entered twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.database.uninterrupted import uninterrupted
from gateway.metrics.registry import GatewayMetrics
from gateway.rollout import store
from gateway.rollout.analysis import judge, thresholds_for
from gateway.rollout.evidence import gather
from gateway.rollout.lease import Lease, LeaseLost
from gateway.routing.table import AUTOMATIC_ACTOR, RouteTable
from gateway.settings import Settings

logger = logging.getLogger(__name__)

TRIM_EVERY_SECONDS = 60.0
# samples serve only the current step of a plan in progress (a verdict keeps its summary)
TRIM = text(
    "DELETE FROM gateway_route_samples samples WHERE at < now() - interval '5 minutes' "
    "AND NOT EXISTS (SELECT 1 FROM gateway_rollouts plans WHERE plans.route = samples.route "
    "AND plans.state IN ('running', 'paused') AND samples.at >= plans.step_started_at)"
)


@dataclass
class Driver:
    """One worker's part in the rollouts."""

    table: RouteTable
    engine: AsyncEngine
    settings: Settings
    metrics: GatewayMetrics
    worker: str
    lease: Lease = field(init=False)
    trimmed_at: float = 0.0

    def __post_init__(self) -> None:
        self.lease = Lease(self.worker, self.settings.rollout_lease_seconds)

    def action(self, reason: str = "") -> store.Action:
        return store.Action(AUTOMATIC_ACTOR, reason, self.table.default_for)

    def leads(self) -> bool:
        """Whether this worker held the lease at its last tick."""
        return self.lease.epoch is not None

    async def tick(self) -> None:
        """One round: flush, follow the plans, and drive them while holding the lease."""
        await self.table.samples.flush(self.engine, self.worker)
        async with self.engine.connect() as connection:
            plans = await store.latest_plans(connection)
        self.follow(plans)
        held, newly = await self.lease.take(self.engine)
        if not held:
            return
        running = [plan for plan in plans if plan.state == "running"]
        if newly:
            await self.announce(plans)
        for plan in running:
            await self.drive(plan)
        await self.trim()

    def follow(self, plans: list[store.Plan]) -> None:
        """Count the routes under a plan in progress; show every route's latest plan."""
        active = {plan.route: plan.id for plan in plans if plan.state in store.ACTIVE}
        self.table.follow_plans(active)
        for plan in plans:
            self.metrics.show_plan(plan.route, plan.state, plan.step + 1, plan.seconds_in_step)

    async def announce(self, plans: list[store.Plan]) -> None:
        """A new driver says so on every plan in progress (and in the log, if there is one)."""
        in_progress = any(plan.state in store.ACTIVE for plan in plans)
        logger.log(
            logging.INFO if in_progress else logging.DEBUG,
            "%s drives the rollout plans (lease epoch %s)",
            self.worker,
            self.lease.epoch,
        )
        detail = {"worker": self.worker, "epoch": self.lease.epoch}
        async with self.engine.begin() as connection:
            await self.lease.fence(connection)
            for plan in plans:
                if plan.state in store.ACTIVE:
                    await store.log_event(connection, plan, "driver", self.action(), detail=detail)

    async def drive(self, plan: store.Plan) -> None:
        async with self.engine.connect() as connection:
            evidence = await gather(connection, plan.route, plan.step_started_at)
        limits = thresholds_for(plan.analysis, self.settings)
        verdict = judge(plan.current, evidence, limits, due=plan.due)
        if verdict.outcome == "pending":
            return
        shown = {**evidence.as_dict(), "missing": verdict.missing}
        stored = await store.judged(
            self.engine,
            plan,
            verdict.outcome,
            verdict.reason,
            shown,
            self.action(verdict.reason),
            self.lease.fence,
        )
        if stored:
            self.metrics.rollout_verdicts.labels(plan.route, verdict.outcome).inc()
            logger.info(
                "rollout %s on %s, step %d (%s): %s, %s",
                plan.id,
                plan.route,
                plan.step + 1,
                plan.current.label(),
                verdict.outcome,
                verdict.reason,
            )

    async def trim(self) -> None:
        if time.monotonic() - self.trimmed_at < TRIM_EVERY_SECONDS:
            return
        self.trimmed_at = time.monotonic()
        async with self.engine.begin() as connection:
            await connection.execute(TRIM)

    async def stop(self) -> None:
        """Flush what was counted and hand the lease on (at shutdown)."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            try:
                await self.table.samples.flush(self.engine, self.worker)
                await self.lease.release(self.engine)
            except Exception as error:
                logger.info("rollout driver not stopped cleanly: %r", error)


async def run_driver(
    driver: Driver, every: float, clock: Callable[[], float] = time.monotonic
) -> None:
    """Tick every `every` seconds until cancelled; a failed tick is logged and the next one runs."""
    while True:
        started = clock()
        try:
            await uninterrupted(driver.tick(), limit=driver.settings.rollout_lease_seconds)
        except LeaseLost as lost:
            logger.warning("%s", lost)
        except Exception as error:
            logger.warning("rollout tick failed: %r", error)
        await anyio.sleep(max(every - (clock() - started), 0.0))
