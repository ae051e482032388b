"""Webhooks: every route and rollout event, in order, once, to real receivers on 127.0.0.1."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import anyio
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from gateway.database.engines import async_url
from gateway.rollout.notifications import WebhookNotifier, run_notifier
from gateway.routing.modes import RouteMode
from gateway.routing.store import save_mode
from gateway.settings import InvalidSettings, Settings, load_settings
from tests.processes import free_port
from tests.webhook_receiver import Receiver, receiving

pytestmark = pytest.mark.anyio

USER = "GET /users/{user_id}"
ITEM = "GET /items/{item_id}"
LEGACY = RouteMode(mode="legacy")
DEADLINE_SECONDS = 20.0
ROLLBACK = "automatic rollback: async 5xx rate 12.0% exceeds legacy's 0.0% by more than 5.0%"


@pytest.fixture
async def engine(committed_database: str) -> AsyncIterator[AsyncEngine]:
    created = create_async_engine(async_url(committed_database), poolclass=NullPool)
    yield created
    await created.dispose()


def notifier(webhooks: dict[str, str], **options: Any) -> WebhookNotifier:
    values: dict[str, Any] = {
        "instance": "gateway-test",
        "timeout": 2.0,
        "max_attempts": 3,
        "first_retry": 0.05,
        # any transaction open on the shared test server (another test's) would hold events
        # back for up to `settle` seconds; the test of late commits sets it itself
        "settle": 0.0,
        **options,
    }
    return WebhookNotifier(webhooks, **values)


async def route_event(
    engine: AsyncEngine, key: str, mode: RouteMode, actor: str = "ops", reason: str = ""
) -> int:
    event = await save_mode(engine, key, mode, actor=actor, reason=reason, default=LEGACY)
    return int(event["id"])


async def rollout_event(engine: AsyncEngine, **columns: Any) -> int:
    values = {
        "rollout_id": 7,
        "route": USER,
        "step": 2,
        "kind": "judged",
        "verdict": "pass",
        "detail": '{"async_p95_ms": 12.5, "requests": 480}',
        "actor": "gateway",
        "reason": "p95 within 1.1 x legacy",
        **columns,
    }
    insert = text(
        "INSERT INTO gateway_rollout_events "
        "(rollout_id, route, step, kind, verdict, detail, actor, reason) "
        "VALUES (:rollout_id, :route, :step, :kind, :verdict, CAST(:detail AS jsonb), :actor, "
        ":reason) RETURNING id"
    )
    async with engine.begin() as connection:
        return int((await connection.execute(insert, values)).scalar_one())


async def cursors(engine: AsyncEngine) -> dict[tuple[str, str], dict[str, Any]]:
    async with engine.connect() as connection:
        rows = await connection.execute(text("SELECT * FROM gateway_webhook_cursors"))
        return {(row.target, row.source): dict(row._mapping) for row in rows}


async def deliver_until(
    engine: AsyncEngine, sender: WebhookNotifier, done: Callable[[], bool], pause: float = 0.02
) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not done():
        assert time.monotonic() < deadline, "webhooks never got their events"
        await sender.deliver(engine)
        await anyio.sleep(pause)


def has(receiver: Receiver, count: int) -> Callable[[], bool]:
    return lambda: len(receiver.accepted()) >= count


async def test_events_are_delivered_in_order_with_their_payload(engine: AsyncEngine) -> None:
    with receiving() as receiver:
        sender = notifier({"chat": receiver.url})
        assert await sender.deliver(engine) == 0  # the cursors start here
        first = await route_event(engine, USER, RouteMode(mode="canary", percent=25), "ops", "ramp")
        second = await route_event(engine, USER, LEGACY, "gateway", ROLLBACK)
        judged = await rollout_event(engine)
        third = await route_event(engine, ITEM, RouteMode(mode="shadow", primary="async"))
        await deliver_until(engine, sender, has(receiver, 4))
        assert await sender.deliver(engine) == 0
        received = receiver.accepted()

    assert receiver.event_ids() == [
        ("route", first),
        ("route", second),
        ("route", third),
        ("rollout", judged),
    ]
    assert [r.body["text"] for r in received] == [
        "GET /users/{user_id}: legacy -> canary 25 % by ops: ramp",
        f"GET /users/{{user_id}}: canary 25 % -> legacy by gateway: {ROLLBACK}",
        "GET /items/{item_id}: legacy -> shadow by ops",
        "GET /users/{user_id}: rollout 7 step 2: judged (pass) by gateway: p95 within 1.1 x legacy",
    ]
    rollback = received[1].body
    assert rollback["source"] == "route"
    assert rollback["gateway"] == {"instance": "gateway-test"}
    assert {k: v for k, v in rollback["event"].items() if k != "at"} == {
        "id": second,
        "route": USER,
        "old_mode": "canary",
        "old_percent": 25,
        "new_mode": "legacy",
        "percent": 0,
        "primary_impl": "legacy",
        "actor": "gateway",
        "reason": ROLLBACK,
    }
    assert datetime.fromisoformat(rollback["event"]["at"]).tzinfo is not None
    assert received[3].body["event"]["detail"] == {"async_p95_ms": 12.5, "requests": 480}
    assert received[3].body["event"]["rollout_id"] == 7
    assert [r.headers["x-gateway-event"] for r in received] == [
        f"route/{first}",
        f"route/{second}",
        f"route/{third}",
        f"rollout/{judged}",
    ]
    assert {r.headers["content-type"] for r in received} == {"application/json"}
    stored = await cursors(engine)
    assert stored[("chat", "gateway_route_events")]["last_id"] == third
    assert stored[("chat", "gateway_rollout_events")]["last_id"] == judged
    assert {(c["attempts"], c["last_error"]) for c in stored.values()} == {(0, None)}


async def test_a_receiver_failing_twice_gets_every_event_once(engine: AsyncEngine) -> None:
    with receiving(statuses=[500, 503]) as receiver:
        sender = notifier({"flaky": receiver.url}, first_retry=0.1)
        await sender.deliver(engine)
        ids = [
            await route_event(engine, USER, RouteMode(mode="canary", percent=p)) for p in (5, 10)
        ]
        await deliver_until(engine, sender, has(receiver, 2))
        tries = receiver.received

    assert receiver.event_ids() == [("route", ids[0]), ("route", ids[1])]
    assert receiver.event_ids(accepted_only=False) == [("route", ids[0])] * 3 + [("route", ids[1])]
    assert [r.status for r in tries] == [500, 503, 200, 200]
    assert tries[1].at - tries[0].at >= 0.1  # backing off: 0.1 s, then 0.2 s
    assert tries[2].at - tries[1].at >= 0.2
    assert sender.skipped == 0
    stored = (await cursors(engine))[("flaky", "gateway_route_events")]
    assert (stored["last_id"], stored["attempts"], stored["last_error"]) == (ids[1], 0, None)


async def test_a_dead_receiver_is_skipped_without_blocking_a_healthy_one(
    engine: AsyncEngine, gateway_log: pytest.LogCaptureFixture
) -> None:
    timeout = 0.5
    with receiving() as healthy, receiving(delay=10 * timeout) as slow:
        refused = f"http://127.0.0.1:{free_port()}/hook"
        targets = {"healthy": healthy.url, "dead": refused, "slow": slow.url}
        sender = notifier(targets, timeout=timeout, max_attempts=2)
        await sender.deliver(engine)
        ids = [
            await route_event(engine, USER, RouteMode(mode=mode)) for mode in ("async", "legacy")
        ]
        started = time.monotonic()
        await sender.deliver(engine)
        first_call = time.monotonic() - started
        healthy_after_one_call = healthy.event_ids()

        async def both_skipped() -> bool:
            stored = await cursors(engine)
            return all(
                stored[(name, "gateway_route_events")]["last_id"] == ids[-1]
                for name in ("dead", "slow")
            )

        calls = []
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not await both_skipped():
            assert time.monotonic() < deadline, "the failing webhooks were never given up on"
            started = time.monotonic()
            await sender.deliver(engine)
            calls.append(time.monotonic() - started)
            await anyio.sleep(0.02)

    assert healthy_after_one_call == [("route", ids[0]), ("route", ids[1])]
    assert first_call < 2 * timeout + 1.5  # bounded by the timeout, not by the slow answers
    assert max(calls) < 2 * timeout + 1.5
    assert sender.skipped == 4
    stored = await cursors(engine)
    for name in ("dead", "slow"):
        last_error = stored[(name, "gateway_route_events")]["last_error"]
        assert f"route event {ids[1]} skipped after 2 attempts" in last_error
    assert "no answer within 0.5 s" in stored[("slow", "gateway_route_events")]["last_error"]
    assert "ConnectError" in stored[("dead", "gateway_route_events")]["last_error"]
    skipped = [r.getMessage() for r in gateway_log.records if "skipped" in r.getMessage()]
    assert len(skipped) == 4
    assert healthy.event_ids() == [("route", ids[0]), ("route", ids[1])]


async def test_a_new_webhook_does_not_receive_history(engine: AsyncEngine) -> None:
    with receiving() as old, receiving() as new:
        first = notifier({"old": old.url})
        await first.deliver(engine)
        history = [await route_event(engine, USER, RouteMode(mode=m)) for m in ("async", "legacy")]
        judged = await rollout_event(engine)
        await deliver_until(engine, first, has(old, 3))

        late = notifier({"old": old.url, "new": new.url})
        assert await late.deliver(engine) == 0
        fresh = await route_event(engine, ITEM, RouteMode(mode="async"))
        await deliver_until(engine, late, has(new, 1))

    assert new.event_ids() == [("route", fresh)]
    assert old.event_ids() == [
        ("route", history[0]),
        ("route", history[1]),
        ("rollout", judged),
        ("route", fresh),
    ]


async def test_an_event_committed_late_is_not_passed_over(engine: AsyncEngine) -> None:
    with receiving() as receiver:
        sender = notifier({"chat": receiver.url}, settle=10.0)
        await sender.deliver(engine)
        async with engine.connect() as slow_writer:
            transaction = await slow_writer.begin()
            late = await slow_writer.execute(
                text(
                    "INSERT INTO gateway_route_events (route, new_mode, percent, primary_impl, "
                    "actor, reason) VALUES (:route, 'async', 0, 'legacy', 'slow', '') RETURNING id"
                ),
                {"route": ITEM},
            )
            late_id = late.scalar_one()
            early_id = await route_event(engine, USER, RouteMode(mode="async"))
            assert early_id > late_id
            assert await sender.deliver(engine) == 0  # the later id waits for the earlier one
            await transaction.commit()
        await deliver_until(engine, sender, has(receiver, 2))

    assert receiver.event_ids() == [("route", late_id), ("route", early_id)]


async def test_run_notifier_delivers_until_cancelled(engine: AsyncEngine) -> None:
    with receiving() as receiver:
        sender = notifier({"chat": receiver.url})
        await sender.deliver(engine)
        event = await route_event(engine, USER, RouteMode(mode="async"))
        with anyio.fail_after(DEADLINE_SECONDS):
            async with anyio.create_task_group() as group:
                group.start_soon(run_notifier, engine, sender, 0.05)
                while not receiver.accepted():
                    await anyio.sleep(0.02)
                group.cancel_scope.cancel()
    assert receiver.event_ids() == [("route", event)]


def test_webhook_settings_name_each_webhook_and_refuse_other_schemes() -> None:
    secret_url = "https://chat.example/hooks/T0001/s3cret"
    listed = load_settings(Settings, webhook_urls=[secret_url])
    ((name, url),) = listed.webhook_urls.items()
    assert re.fullmatch(r"chat\.example-[0-9a-f]{8}", name)
    assert url.get_secret_value() == secret_url and "s3cret" not in repr(listed)
    named = load_settings(Settings, webhook_urls={"chat": "http://127.0.0.1:9/x"})
    sender = WebhookNotifier.from_settings(named)
    assert [(w.name, w.url) for w in sender.webhooks] == [("chat", "http://127.0.0.1:9/x")]
    assert (sender.timeout, sender.max_attempts) == (5.0, 5)
    with pytest.raises(InvalidSettings, match="GATEWAY_WEBHOOK_URLS: chat: not an http"):
        load_settings(Settings, webhook_urls={"chat": "ftp://example.com/x"})
    with pytest.raises(InvalidSettings, match="GATEWAY_WEBHOOK_MAX_ATTEMPTS"):
        load_settings(Settings, webhook_max_attempts=0)
