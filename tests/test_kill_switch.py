"""The kill switch: every route, or a router's, back to legacy in one change, on every instance."""

from __future__ import annotations

import subprocess
from typing import Any

import httpx
import pytest

from tests.helpers import IMPL_HEADER, serving
from tests.processes import child_env, gateway_command
from tests.test_route_modes import AUTH, ITEM_ROUTE, USER_ROUTE, real_app, set_mode

pytestmark = [pytest.mark.anyio, pytest.mark.version_independent]

USERS_LIST = "GET /users"
ASYNC_ONLY = "GET /documents/{document_id}"
READ_ONLY = {"Authorization": "Bearer read-only"}


async def modes(client: httpx.AsyncClient) -> dict[str, str]:
    response = await client.get("/admin/routes")
    assert response.status_code == 200, response.text
    return {route["route"]: route["mode"] for route in response.json()}


async def kill(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/admin/kill-switch", json=body, headers=AUTH)


async def test_the_kill_switch_moves_every_route_with_a_legacy_twin_to_legacy(
    committed_database: str,
) -> None:
    async with serving(real_app(committed_database)) as client:
        await set_mode(client, USER_ROUTE, mode="canary", percent=50)
        await set_mode(client, ITEM_ROUTE, mode="async")
        await set_mode(client, USERS_LIST, mode="shadow", primary="async")
        killed = await kill(client, reason="async pool exhausted")
        after = await modes(client)
        served = (await client.get("/items/1")).headers[IMPL_HEADER]
        again = await kill(client, reason="twice")
        events = (await client.get("/admin/routes/events", params={"limit": 20})).json()

    assert killed.status_code == 200, killed.text
    result = killed.json()
    assert result["moved"] == sorted([ITEM_ROUTE, USERS_LIST, USER_ROUTE])
    assert ASYNC_ONLY in result["without_legacy"] and after[ASYNC_ONLY] == "async"
    assert {key: mode for key, mode in after.items() if key not in result["without_legacy"]} == {
        key: "legacy" for key in after if key not in result["without_legacy"]
    }
    assert served == "legacy"
    assert again.json()["moved"] == [] and USER_ROUTE in again.json()["already_legacy"]
    killed_events = [e for e in events if e["id"] in result["events"]]
    assert {(e["route"], e["new_mode"], e["actor"], e["reason"]) for e in killed_events} == {
        (key, "legacy", "ops", "async pool exhausted") for key in result["moved"]
    }


async def test_a_prefix_moves_only_that_routers_routes(committed_database: str) -> None:
    async with serving(real_app(committed_database)) as client:
        await set_mode(client, USER_ROUTE, mode="async")
        await set_mode(client, ITEM_ROUTE, mode="async")
        killed = await kill(client, path_prefix="/users", reason="users twin misbehaves")
        after = await modes(client)

    assert killed.json()["moved"] == [USER_ROUTE]
    assert after[USER_ROUTE] == "legacy" and after[ITEM_ROUTE] == "async"


async def test_the_kill_switch_needs_a_writer_and_a_reason(committed_database: str) -> None:
    app = real_app(committed_database, admin_read_tokens={"viewer": "read-only"})
    async with serving(app, admin=False) as client:
        read_only = await client.post("/admin/kill-switch", json={"reason": "x"}, headers=READ_ONLY)
        no_reason = await kill(client)
        bad_prefix = await kill(client, path_prefix="users", reason="x")

    assert read_only.status_code == 403, read_only.text
    assert no_reason.status_code == 422 and "reason" in no_reason.text
    assert bad_prefix.status_code == 422 and "path_prefix" in bad_prefix.text


def test_the_command_line_kill_switch_works_on_the_database(committed_database: str) -> None:
    env = child_env({"GATEWAY_DATABASE_URL": committed_database})
    for route in (ITEM_ROUTE, USER_ROUTE):
        moved = gateway_command("routes", "set", route, "async")
        assert subprocess.run(moved, env=env, capture_output=True, timeout=60).returncode == 0
    command = gateway_command("routes", "kill", "--prefix", "/items", "--reason", "drill")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    listed = subprocess.run(
        gateway_command("routes", "list"), env=env, capture_output=True, text=True, timeout=60
    )
    refused = subprocess.run(
        gateway_command("routes", "kill", "--prefix", "items", "--reason", "drill"),
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert f"moved to legacy: {ITEM_ROUTE}\n" in done.stdout
    assert "already legacy: 2 routes" in done.stdout  # GET /items, POST /items
    users_row = next(
        line for line in listed.stdout.splitlines() if line.startswith(f"{USER_ROUTE} ")
    )
    assert users_row.split()[3] == "async", listed.stdout  # GET, path, implementations, mode
    assert refused.returncode != 0 and "--prefix must be a path" in refused.stderr
