"""Route mode changes and rollout events, told to webhooks by one worker of the fleet.

Every event of `gateway_route_events` and `gateway_rollout_events` is POSTed,
in id order, to every webhook of `GATEWAY_WEBHOOK_URLS`, as JSON:

    {"source": "route",
     "text": "GET /users/{user_id}: canary 25 % -> legacy by gateway: automatic rollback: ...",
     "event": {"id": 42, "route": "GET /users/{user_id}", ..., "at": "2026-12-02T18:46:03+00:00"},
     "gateway": {"instance": "gateway-a"}}

with the header `X-Gateway-Event: route/42`, by which a receiver can tell a
repeated delivery. Each webhook's place in each table is its cursor row
(`gateway_webhook_cursors`: the last event it answered with a 2xx); a new
webhook starts at the newest event, without the history. The worker holding
the fleet's lease calls `deliver` at every tick; each event is sent inside a
transaction holding its cursor row (`FOR UPDATE SKIP LOCKED`), so two callers
never send one event twice.

A failure (no 2xx within GATEWAY_WEBHOOK_TIMEOUT_SECONDS) is recorded on the
cursor and retried by later calls after 1, 2, 4 ... seconds (at most five
minutes); after GATEWAY_WEBHOOK_MAX_ATTEMPTS failures the event is skipped
for that webhook, with a warning. Webhooks are served concurrently, each
stops at its first failure, and none starts a send once the call has lasted
the timeout: a dead or slow receiver delays no other, and a call lasts about
twice the timeout at most.

Ids are drawn when an event is written but become visible when its
transaction commits, not always in id order. So an event is sent only once no
transaction older than its own is still open (or `settle` seconds after it
was written): an event committed late is never passed over.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import anyio
import httpx
from sqlalchemy import Table, func, literal, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.database.uninterrupted import uninterrupted
from gateway.routing.schema import events_table, rollout_events_table, webhook_cursors_table
from gateway.settings import Settings

logger = logging.getLogger(__name__)

SOURCES: dict[str, Table] = {"route": events_table, "rollout": rollout_events_table}
Outcome = Literal["delivered", "failed", "idle"]
LONGEST_RETRY_SECONDS = 300.0
ERROR_CHARS = 500
# Settled: every transaction older than the row's own has ended (ages count back from now).
NEXT_EVENT = """
SELECT * FROM {table}
WHERE id > :last_id
  AND (age(xmin) > age(pg_snapshot_xmin(pg_current_snapshot())::xid)
       OR at < now() - make_interval(secs => :settle))
ORDER BY id
LIMIT 1
"""


@dataclass(frozen=True, slots=True)
class Webhook:
    name: str  # the cursor's target
    url: str


@dataclass
class Round:
    """One call of `deliver`: what its webhooks share, and how many events they took."""

    engine: AsyncEngine
    client: httpx.AsyncClient
    deadline: float  # no send starts after it
    delivered: int = 0


@dataclass(frozen=True, slots=True)
class Cursor:
    last_id: int
    attempts: int
    waited: float  # seconds since it last changed


def backoff(attempts: int, first_retry: float) -> float:
    """Seconds to wait after the `attempts`-th failure of one event."""
    return min(first_retry * 2.0 ** (attempts - 1), LONGEST_RETRY_SECONDS)


def mode_text(mode: str | None, percent: int | None) -> str:
    if mode is None:
        return "default"
    return f"canary {percent} %" if mode == "canary" else mode


def describe(source: str, event: Mapping[str, Any]) -> str:
    """One line a person reads in a chat channel."""
    if source == "route":
        what = (
            f"{mode_text(event['old_mode'], event['old_percent'])} -> "
            f"{mode_text(event['new_mode'], event['percent'])}"
        )
    else:
        verdict = f" ({event['verdict']})" if event["verdict"] else ""
        what = f"rollout {event['rollout_id']} step {event['step']}: {event['kind']}{verdict}"
    why = f": {event['reason']}" if event["reason"] else ""
    return f"{event['route']}: {what} by {event['actor']}{why}"


def jsonable(event: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in event.items()}


def payload(source: str, event: Mapping[str, Any], instance: str) -> bytes:
    body = {
        "source": source,
        "text": describe(source, event),
        "event": jsonable(event),
        "gateway": {"instance": instance},
    }
    return json.dumps(body, ensure_ascii=False).encode()


class WebhookNotifier:
    """Sends the events each webhook has not had yet; `skipped` counts events given up on."""

    def __init__(
        self,
        webhooks: Mapping[str, str],
        *,
        instance: str,
        timeout: float,
        max_attempts: int,
        first_retry: float = 1.0,
        settle: float = 5.0,
    ) -> None:
        self.webhooks = [Webhook(name, url) for name, url in webhooks.items()]
        self.instance = instance
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.first_retry = first_retry
        self.settle = settle
        self.started: set[str] = set()  # webhooks whose cursors exist
        self.skipped = 0

    @property
    def longest_round(self) -> float:
        """Seconds a call of `deliver` may last: sends start within the timeout and last it."""
        return 2 * self.timeout + 1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookNotifier:
        return cls(
            {name: url.get_secret_value() for name, url in settings.webhook_urls.items()},
            instance=settings.instance_name,
            timeout=settings.webhook_timeout_seconds,
            max_attempts=settings.webhook_max_attempts,
        )

    async def deliver(self, engine: AsyncEngine) -> int:
        """Send what every webhook is due; the number of events delivered.

        It returns within about twice the timeout, whatever the webhooks do.
        """
        if not self.webhooks:
            return 0
        await self._start_cursors(engine)
        headers = {"User-Agent": "hybrid-gateway"}
        async with httpx.AsyncClient(timeout=self.timeout, headers=headers) as client:
            this_round = Round(engine, client, deadline=time.monotonic() + self.timeout)
            async with anyio.create_task_group() as group:
                for webhook in self.webhooks:
                    group.start_soon(self._deliver_to, this_round, webhook)
        return this_round.delivered

    async def _start_cursors(self, engine: AsyncEngine) -> None:
        """A webhook seen for the first time starts after the newest event of each table."""
        new = [webhook.name for webhook in self.webhooks if webhook.name not in self.started]
        if not new:
            return
        cursors = webhook_cursors_table
        async with engine.begin() as connection:
            for name in new:
                for table in SOURCES.values():
                    newest = select(
                        literal(name), literal(table.name), func.coalesce(func.max(table.c.id), 0)
                    )
                    start = insert(cursors).from_select(["target", "source", "last_id"], newest)
                    await connection.execute(start.on_conflict_do_nothing())
        self.started.update(new)

    async def _deliver_to(self, this_round: Round, webhook: Webhook) -> None:
        """The webhook's due events, table by table, until one fails or the round is over."""
        for source, table in SOURCES.items():
            while time.monotonic() < this_round.deadline:
                outcome = await self._send_next(this_round, webhook, source, table)
                if outcome == "failed":
                    return
                if outcome == "idle":
                    break
                this_round.delivered += 1

    async def _send_next(
        self, this_round: Round, webhook: Webhook, source: str, table: Table
    ) -> Outcome:
        """Send the webhook's next event of `table`, in the transaction holding its cursor."""
        async with this_round.engine.begin() as connection:
            cursor = await locked_cursor(connection, webhook.name, table.name)
            if cursor is None or not self.due(cursor):
                return "idle"  # another caller holds it, or it waits to retry
            event = await next_event(connection, table, cursor.last_id, self.settle)
            if event is None:
                return "idle"
            error = await self._post(this_round.client, webhook, source, event)
            if error is None:
                await move_cursor(connection, webhook.name, table.name, event["id"], 0, None)
                return "delivered"
            await self._record_failure(connection, webhook, source, table, cursor, event, error)
            return "failed"

    def due(self, cursor: Cursor) -> bool:
        return cursor.attempts == 0 or cursor.waited >= backoff(cursor.attempts, self.first_retry)

    async def _post(
        self, client: httpx.AsyncClient, webhook: Webhook, source: str, event: Mapping[str, Any]
    ) -> str | None:
        """None once the webhook answered 2xx; otherwise what went wrong."""
        headers = {"Content-Type": "application/json", "X-Gateway-Event": f"{source}/{event['id']}"}
        try:
            with anyio.fail_after(self.timeout):
                response = await client.post(
                    webhook.url, content=payload(source, event, self.instance), headers=headers
                )
        except TimeoutError:
            return f"no answer within {self.timeout:g} s"
        except httpx.HTTPError as error:
            said = str(error).replace(webhook.url, webhook.name)  # the URL may hold a secret
            return f"{type(error).__name__}: {said}"[:ERROR_CHARS]
        if response.is_success:
            return None
        return f"answered {response.status_code}"

    async def _record_failure(
        self,
        connection: AsyncConnection,
        webhook: Webhook,
        source: str,
        table: Table,
        cursor: Cursor,
        event: Mapping[str, Any],
        error: str,
    ) -> None:
        attempts = cursor.attempts + 1
        where = f"webhook {webhook.name}: {source} event {event['id']}"
        if attempts < self.max_attempts:
            logger.info(
                "%s failed (attempt %d of %d): %s", where, attempts, self.max_attempts, error
            )
            await move_cursor(connection, webhook.name, table.name, cursor.last_id, attempts, error)
            return
        logger.warning("%s skipped after %d failed attempts: %s", where, attempts, error)
        self.skipped += 1
        skipped = f"{source} event {event['id']} skipped after {attempts} attempts: {error}"
        await move_cursor(connection, webhook.name, table.name, event["id"], 0, skipped)


async def locked_cursor(connection: AsyncConnection, target: str, source: str) -> Cursor | None:
    """The cursor, locked to this transaction; None while another transaction holds it."""
    cursors = webhook_cursors_table
    waited = func.extract("epoch", func.clock_timestamp() - cursors.c.updated_at)
    query = (
        select(cursors.c.last_id, cursors.c.attempts, waited)
        .where(cursors.c.target == target, cursors.c.source == source)
        .with_for_update(skip_locked=True)
    )
    row = (await connection.execute(query)).first()
    return None if row is None else Cursor(row[0], row[1], float(row[2]))


async def next_event(
    connection: AsyncConnection, table: Table, last_id: int, settle: float
) -> dict[str, Any] | None:
    query = text(NEXT_EVENT.format(table=table.name))
    row = (await connection.execute(query, {"last_id": last_id, "settle": settle})).first()
    return None if row is None else dict(row._mapping)


async def move_cursor(
    connection: AsyncConnection,
    target: str,
    source: str,
    last_id: int,
    attempts: int,
    last_error: str | None,
) -> None:
    cursors = webhook_cursors_table
    await connection.execute(
        update(cursors)
        .where(cursors.c.target == target, cursors.c.source == source)
        .values(
            last_id=last_id,
            attempts=attempts,
            last_error=last_error,
            updated_at=func.clock_timestamp(),
        )
    )


async def run_notifier(
    engine: AsyncEngine,
    notifier: WebhookNotifier,
    every: float,
    leading: Callable[[], bool] = lambda: True,
) -> None:
    """Deliver every `every` seconds while `leading()` (this worker drives the fleet), until
    cancelled; a round that fails is logged and retried."""
    while True:
        try:
            if leading():
                await uninterrupted(notifier.deliver(engine), limit=notifier.longest_round)
        except Exception as error:
            logger.warning("webhook delivery failed, retried in %g s: %r", every, error)
        await anyio.sleep(every)
