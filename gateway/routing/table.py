"""The routing table in memory: each route's mode, and the dispatch that applies it per request.

Invariants:
- a request never waits on the database to be routed: `modes` is a plain dict,
  replaced whole (one assignment) whenever modes change;
- a stored mode that needs an implementation the route no longer has is
  ignored in favour of the route's default;
- a change is stored first (row, event, NOTIFY in one transaction) and applied
  here at once; other workers and instances apply it when notified
  (`gateway.routing.sync`);
- an automatic rollback applies locally at once and holds here until it is
  stored (retried until it is) or someone stores a newer change of the route;
  it is stored only if the route is still in canary mode (or, under a rollout
  plan, as that plan's failure);
- routes under a rollout plan count their outcomes (`gateway.routing.samples`)
  for the fleet-wide analysis, and are not judged by this process's window;
- a request an admin forces onto one implementation (`gateway.routing.forcing`)
  runs no shadow and is never judged by the canary guard.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
from anyio.abc import TaskGroup
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.asgi import StatusRecorder
from gateway.impl import Impl
from gateway.metrics.registry import GatewayMetrics
from gateway.routing import store as route_store
from gateway.routing.canary_guard import CanaryGuard
from gateway.routing.forcing import Forcing, TokenCheck
from gateway.routing.mismatches import MismatchStore
from gateway.routing.modes import RouteMode, default_mode, validate_change
from gateway.routing.noise import NoiseStore
from gateway.routing.pairing import PublicRoute
from gateway.routing.samples import Samples
from gateway.routing.shadow import ShadowRunner
from gateway.routing.stickiness import sticky_readers
from gateway.routing.targeting import RequestReader
from gateway.settings import Settings

logger = logging.getLogger(__name__)

AUTOMATIC_ACTOR = "gateway"
RETRY_FIRST, RETRY_LONGEST = 0.5, 10.0

# stores a fast trip of a route under a plan as the plan's failure; False: no plan to fail
PlanTrip = Callable[[str, str], Awaitable[bool]]
# more to do in the kill switch's transaction, given its routes: the rollout plans it aborted
AlsoKill = Callable[[AsyncConnection, list[str]], Awaitable[list[int]]]


def gauges(modes: Mapping[str, RouteMode]) -> dict[str, tuple[str, int]]:
    """Modes as the metrics show them: (mode, canary percent or 0) per route."""
    return {
        key: (mode.mode, mode.percent if mode.mode == "canary" else 0)
        for key, mode in modes.items()
    }


def under(key: str, path_prefix: str | None) -> bool:
    """Whether route `key`'s path is `path_prefix` or below it (every route without one)."""
    if path_prefix is None:
        return True
    path, prefix = key.split(" ", 1)[1], path_prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/") or not prefix


class TableNotAttached(RuntimeError):
    """The route table was used before the app's lifespan gave it a database."""


class RouteTable:
    def __init__(
        self,
        routes: list[PublicRoute],
        settings: Settings,
        metrics: GatewayMetrics,
        *,
        check_token: TokenCheck | None = None,
    ) -> None:
        self.routes = {route.key: route for route in routes}
        self.metrics = metrics
        self.default: Impl = settings.default_mode
        self.sticky = sticky_readers(self.routes, settings.sticky_keys, settings.sticky_header)
        self.forcing = Forcing(settings.force_impl_header, settings.admin_token_header, check_token)
        self.shadows = ShadowRunner(
            max_concurrent=settings.shadow_max_concurrent,
            timeout=settings.shadow_timeout,
            ignore_fields=settings.shadow_ignore_fields,
            rules=settings.shadow_rules,
            redact_fields=settings.shadow_redact_fields,
            on_result=self._shadow_result,
        )
        self.samples = Samples()
        self.planned: dict[str, int] = {}  # route -> the plan in progress on it
        self.plan_trip: PlanTrip | None = None  # given by the rollout layer
        self.tripped: dict[str, int] = {}  # route -> stored version its local rollback overrides
        self.guard = CanaryGuard(
            window=settings.rollback_window_seconds,
            min_requests=settings.rollback_min_requests,
            error_margin=settings.rollback_error_margin,
            latency_ratio=settings.rollback_latency_ratio,
            latency_floor=settings.rollback_latency_floor_ms / 1000,
            roll_back=self.roll_back,
            consecutive_errors=settings.rollback_fast_trip_errors,
            judged_elsewhere=lambda key: key in self.planned,
        )
        self.stored: dict[str, route_store.StoredMode] = {}
        self.pinned: Impl | None = None
        self.modes: dict[str, RouteMode] = self._effective({})
        metrics.show_modes(gauges(self.modes))
        metrics.show_implementations(self.implementations_by_key())
        self.engine: AsyncEngine | None = None
        self.task_group: TaskGroup | None = None

    @property
    def database(self) -> AsyncEngine:
        """The engine the modes are stored through; set by the app's lifespan (or the CLI)."""
        if self.engine is None:
            raise TableNotAttached(
                "the route table has no database yet: it is attached when the app starts"
            )
        return self.engine

    def attach(
        self,
        engine: AsyncEngine,
        task_group: TaskGroup,
        mismatches: MismatchStore | None = None,
        noise: NoiseStore | None = None,
    ) -> None:
        self.engine = engine
        self.task_group = task_group
        self.shadows.task_group = task_group
        self.shadows.store = mismatches
        self.shadows.noise = noise

    def implementations(self, key: str) -> set[str]:
        return set(self.routes[key].implementations)

    def implementations_by_key(self) -> dict[str, set[str]]:
        return {key: self.implementations(key) for key in self.routes}

    def default_for(self, key: str) -> RouteMode:
        return default_mode(self.implementations(key), self.default)

    def _effective(self, stored: Mapping[str, route_store.StoredMode]) -> dict[str, RouteMode]:
        modes = {}
        for key in self.routes:
            if key in self.tripped:
                modes[key] = RouteMode(mode="legacy")
                continue
            if self.pinned is not None:
                modes[key] = default_mode(self.implementations(key), self.pinned)
                continue
            wanted = stored.get(key)
            usable = wanted is not None and wanted.mode.needs() <= self.implementations(key)
            modes[key] = wanted.mode if usable and wanted else self.default_for(key)
        return modes

    @property
    def version(self) -> int:
        """The version of the stored table this worker holds (0: no change stored yet)."""
        return route_store.table_version(self.stored)

    def apply(self, stored: dict[str, route_store.StoredMode]) -> None:
        """Swap in the modes loaded from the database."""
        self.stored = stored
        self.tripped = {
            key: version
            for key, version in self.tripped.items()
            if (stored[key].version if key in stored else 0) == version
        }
        self.modes = self._effective(stored)
        self.metrics.show_modes(gauges(self.modes))
        self.shadows.expire_noise()

    def pin(self, impl: Impl | None) -> None:
        """Serve every route with `impl` where it has it, whatever is stored (None: as stored).

        For parity checks only: a pinned table ignores the modes in the database.
        """
        self.pinned = impl
        self.apply(self.stored)

    def set_local(self, key: str, mode: RouteMode) -> None:
        self.modes = {**self.modes, key: mode}
        self.metrics.show_modes(gauges({key: mode}))

    async def reload(self) -> None:
        self.apply(await route_store.load_modes(self.database))

    async def change(
        self, key: str, wanted: RouteMode, *, actor: str, reason: str
    ) -> dict[str, Any]:
        """Validate, store (with its event and NOTIFY) and apply a mode change."""
        validate_change(key, self.implementations(key), wanted)
        event = await route_store.save_mode(
            self.database, key, wanted, actor=actor, reason=reason, default=self.default_for(key)
        )
        # A reload, not a local overwrite: a newer change from another instance may
        # already have been applied here by the listener.
        await self.reload()
        return event

    async def kill_switch(
        self,
        *,
        path_prefix: str | None,
        actor: str,
        reason: str,
        also: AlsoKill | None = None,
    ) -> dict[str, Any]:
        """Every route (under `path_prefix`) back to legacy, fleet-wide, in one transaction.

        Routes without a legacy implementation stay as they are, and are named;
        `also` runs in the same transaction (the rollout layer aborts the plans).
        """
        await self.reload()  # what the fleet holds now, not what this worker last heard
        chosen = [key for key in self.routes if under(key, path_prefix)]
        movable = [key for key in chosen if "legacy" in self.implementations(key)]
        legacy = RouteMode(mode="legacy")
        changes = {
            key: (legacy, self.default_for(key)) for key in movable if self.modes[key] != legacy
        }
        aborted: list[int] = []

        async def abort_plans(connection: AsyncConnection) -> None:
            if also is not None:
                aborted.extend(await also(connection, movable))

        events = await route_store.save_modes(
            self.database, changes, actor=actor, reason=reason, also=abort_plans
        )
        await self.reload()
        return {
            "aborted_plans": aborted,
            "moved": sorted(changes),
            "already_legacy": sorted(set(movable) - set(changes)),
            "without_legacy": sorted(set(chosen) - set(movable)),
            "events": [event["id"] for event in events],
        }

    def follow_plans(self, planned: Mapping[str, int]) -> None:
        """The routes under a rollout plan in progress (route -> plan id): count their outcomes."""
        self.planned = dict(planned)
        self.samples.watch(planned)

    def _shadow_result(self, key: str, result: str) -> None:
        self.metrics.shadow_comparisons.labels(key, result).inc()
        self.samples.record(key, result)

    def roll_back(self, key: str, reason: str) -> None:
        """Back to legacy here at once; stored in the background, retried until it is."""
        logger.warning("%s: %s", key, reason)
        self.metrics.rollbacks.labels(key).inc()
        stored = self.stored.get(key)
        self.tripped[key] = stored.version if stored else 0
        self.set_local(key, RouteMode(mode="legacy"))
        if self.task_group is not None:
            self.task_group.start_soon(self._store_rollback, key, reason)

    async def _store_rollback(self, key: str, reason: str) -> None:
        wait = RETRY_FIRST
        while key in self.tripped:
            try:
                await self._stored_rollback(key, reason)
            except route_store.ModeChanged as changed:
                logger.info("rollback of %s not stored: %s", key, changed)
                self.tripped.pop(key, None)
            except Exception as error:
                logger.warning(
                    "rollback of %s not stored yet (%r): it holds on this process, retried in %g s",
                    key,
                    error,
                    wait,
                )
                await anyio.sleep(wait)
                wait = min(wait * 2, RETRY_LONGEST)
                continue
            await self.reload()
            return

    async def _stored_rollback(self, key: str, reason: str) -> None:
        if self.plan_trip is not None and await self.plan_trip(key, reason):
            return
        await route_store.save_mode(
            self.database,
            key,
            RouteMode(mode="legacy"),
            actor=AUTOMATIC_ACTOR,
            reason=reason,
            default=self.default_for(key),
            expect="canary",
        )

    def dispatcher(self, route: PublicRoute) -> ASGIApp:
        key, implementations = route.key, route.implementations
        reader = RequestReader(key, implementations, self.sticky[key], self.forcing)

        async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
            headers = reader.headers(scope)
            forced = reader.forced(scope, headers)
            if forced is not None:  # an admin's own request: no shadow, not judged by the guard
                await implementations[forced](scope, receive, send)
                return
            mode = self.modes[key]
            if mode.mode == "canary":
                sticky_key = reader.sticky_key(scope, headers)
                await self._canary(key, mode, sticky_key, scope, receive, send)
            elif mode.mode == "shadow" and mode.shadow is not None:
                primary, shadow = mode.primary, mode.shadow
                await self.shadows.serve(
                    key,
                    (primary, implementations[primary]),
                    (shadow, implementations[shadow]),
                    scope,
                    receive,
                    send,
                    sample=mode.sample,
                )
            else:
                await implementations[mode.choose(None)](scope, receive, send)

        return dispatch

    async def _canary(
        self,
        key: str,
        mode: RouteMode,
        sticky_key: str | None,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        impl = mode.choose(sticky_key, key)
        recorder = StatusRecorder(send)
        started = time.perf_counter()
        try:
            await self.routes[key].implementations[impl](scope, receive, recorder)
        finally:
            seconds = time.perf_counter() - started
            self.samples.record(key, impl, recorder.status >= 500, seconds)
            self.guard.record(key, impl, recorder.status, seconds)

    def describe(self) -> list[dict[str, Any]]:
        described = []
        for key, route in self.routes.items():
            mode, stored = self.modes[key], self.stored.get(key)
            described.append(
                {
                    "route": key,
                    "implementations": sorted(route.implementations),
                    "mode": mode.mode,
                    "percent": mode.percent,
                    "primary": mode.primary,
                    "sample": mode.sample,
                    "calibrating": mode.calibrating,
                    "serves": mode.choose(None) if mode.mode != "canary" else "legacy+async",
                    "changed_by": stored.changed_by if stored else None,
                    "changed_at": stored.changed_at if stored else None,
                    "reason": stored.reason if stored else None,
                    "version": stored.version if stored else 0,
                }
            )
        return described
