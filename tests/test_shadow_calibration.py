"""Shadow comparisons that calibrate themselves: sampling, rules per route, learned noise."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx
import pytest
from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gateway.database.engines import sync_url
from gateway.routing.compare import BodyRules, differing, readable_diff, shown
from gateway.routing.field_paths import field_path, regex
from gateway.settings import InvalidSettings, load_settings
from tests.helpers import IMPL_HEADER, assert_error, serving
from tests.processes import child_env, gateway_command
from tests.shadowing import (
    PROBE_ROUTE,
    counted,
    probe_routers,
    put_mode,
    real_app,
    report,
    set_mode,
    settled_report,
    shadow_on,
)

pytestmark = [pytest.mark.anyio, pytest.mark.version_independent]

STAMP_ROUTE = "GET /stamps/{n}"
BASKET_ROUTE = "GET /baskets/{n}"
USER_ROUTE = "GET /users/{user_id}"
ORDER_ROUTE = "GET /orders/{order_id}"  # the demo's, legacy only
PLANTED_EVERY = 5
PLANTED_BASKET = 3
READ_ONLY = {"Authorization": "Bearer look-only"}
SHADOW_SECONDS = 0.2


class Stamp(BaseModel):
    n: int
    name: str
    served_at: str


def stamp_routers() -> dict[str, Any]:
    """A GET /stamps/{n} pair whose answers say when they were served; the async twin misnames
    every fifth stamp."""
    legacy, migrated = APIRouter(), APIRouter()

    @legacy.get("/stamps/{n}", response_model=Stamp)
    def stamp_legacy(n: int) -> Stamp:
        return Stamp(n=n, name=f"stamp {n}", served_at=datetime.now(UTC).isoformat())

    @migrated.get("/stamps/{n}", response_model=Stamp)
    async def stamp_async(n: int) -> Stamp:
        name = f"Stamp {n}" if n % PLANTED_EVERY == 0 else f"stamp {n}"
        return Stamp(n=n, name=name, served_at=datetime.now(UTC).isoformat())

    return {"legacy_routers": [legacy], "async_routers": [migrated]}


class Line(BaseModel):
    sku: str
    price: float


class Basket(BaseModel):
    n: int
    lines: list[Line]
    total: float


def basket_routers() -> dict[str, Any]:
    """A GET /baskets/{n} pair: the async twin lists the lines in another order and adds the
    prices up differently (a rounding apart); for the third basket it also gets a price wrong."""
    legacy, migrated = APIRouter(), APIRouter()

    @legacy.get("/baskets/{n}", response_model=Basket)
    def basket_legacy(n: int) -> Basket:
        lines = [Line(sku="a", price=0.1 + 0.2), Line(sku="b", price=2.5)]
        return Basket(n=n, lines=lines, total=sum(line.price for line in lines))

    @migrated.get("/baskets/{n}", response_model=Basket)
    async def basket_async(n: int) -> Basket:
        price = 2.75 if n == PLANTED_BASKET else 2.5
        return Basket(n=n, lines=[Line(sku="b", price=price), Line(sku="a", price=0.3)], total=2.8)

    return {"legacy_routers": [legacy], "async_routers": [migrated]}


async def requested(client: httpx.AsyncClient, path: str, ns: Iterable[int]) -> None:
    for n in ns:
        response = await client.get(f"{path}/{n}")
        assert response.status_code == 200, response.text
        assert response.headers[IMPL_HEADER] == "legacy"


async def noise_of(client: httpx.AsyncClient, key: str) -> list[dict[str, Any]]:
    response = await client.get("/admin/shadow/noise", params={"route": key})
    assert response.status_code == 200, response.text
    routes = response.json()["routes"]
    assert [route["route"] for route in routes] in ([], [key])
    return [] if not routes else list(routes[0]["fields"])


async def quiet_report(client: httpx.AsyncClient, key: str, seconds: float = 10) -> dict[str, Any]:
    """The route's report once its counts have stopped moving (or the deadline has passed)."""
    deadline = time.monotonic() + seconds
    found = await report(client, key)
    while time.monotonic() < deadline:
        await anyio.sleep(0.2)
        again = await report(client, key)
        if again["counts"] == found["counts"]:
            break
        found = again
    return found


def changed_lines(diff: str) -> list[str]:
    return [line.strip("-+ ,") for line in diff.splitlines() if line.startswith(("-  ", "+  "))]


async def test_a_timestamp_mismatches_until_calibration_learns_it_as_noise(
    committed_database: str,
) -> None:
    ns = range(1, 11)
    async with serving(real_app(committed_database, stamp_routers())) as client:
        await shadow_on(client, STAMP_ROUTE)
        await requested(client, "/stamps", ns)
        uncalibrated = await settled_report(client, STAMP_ROUTE, runs=10)
        await set_mode(client, STAMP_ROUTE, mode="shadow", calibrate=True, reason="learn")
        await requested(client, "/stamps", ns)
        calibrating = await settled_report(client, STAMP_ROUTE, runs=20)
        noise = await noise_of(client, STAMP_ROUTE)
        await shadow_on(client, STAMP_ROUTE)
        await requested(client, "/stamps", ns)
        calibrated = await settled_report(client, STAMP_ROUTE, runs=30)

    assert uncalibrated["counts"] == counted(mismatch=10)
    assert all(
        "served_at" in " ".join(changed_lines(m["diff"])) for m in uncalibrated["mismatches"]
    )
    assert calibrating["counts"] == counted(mismatch=10, calibration=10)
    assert calibrating["mismatches"] == uncalibrated["mismatches"]  # calibration stores none
    assert [(field["field"], field["seen"]) for field in noise] == [("served_at", 10)]
    assert calibrated["counts"] == counted(mismatch=12, calibration=10, match=8)
    found = calibrated["mismatches"][:2]
    assert {mismatch["path"] for mismatch in found} == {"/stamps/5", "/stamps/10"}
    for mismatch in found:
        n = mismatch["path"].rsplit("/", 1)[1]
        assert changed_lines(mismatch["diff"]) == [f'"name": "stamp {n}"', f'"name": "Stamp {n}"']
        assert "served_at" not in mismatch["diff"]


async def test_every_instance_compares_with_the_noise_any_instance_learned(
    committed_database: str,
) -> None:
    learner = real_app(committed_database, stamp_routers(), instance_name="learner")
    other = real_app(committed_database, stamp_routers(), instance_name="other")
    async with serving(learner) as learning, serving(other) as comparing:
        await set_mode(learning, STAMP_ROUTE, mode="shadow", calibrate=True, reason="learn")
        await requested(learning, "/stamps", [1, 2, 3])
        await settled_report(learning, STAMP_ROUTE, runs=3)
        await shadow_on(comparing, STAMP_ROUTE)
        await requested(comparing, "/stamps", [1, 2, 3, 4])
        compared = await settled_report(comparing, STAMP_ROUTE, runs=4)
        listed_there = await noise_of(comparing, STAMP_ROUTE)

    assert compared["counts"] == counted(match=4)
    assert [(field["field"], field["seen"]) for field in listed_there] == [("served_at", 3)]


async def test_forgotten_noise_counts_again(committed_database: str) -> None:
    app = real_app(committed_database, stamp_routers(), admin_read_tokens={"viewer": "look-only"})
    async with serving(app) as client:
        await set_mode(client, STAMP_ROUTE, mode="shadow", calibrate=True, reason="learn")
        await requested(client, "/stamps", [1])
        await settled_report(client, STAMP_ROUTE, runs=1)
        refused = await client.delete(
            "/admin/shadow/noise", params={"route": STAMP_ROUTE}, headers=READ_ONLY
        )
        unnamed = await client.delete("/admin/shadow/noise")
        unknown = await client.delete("/admin/shadow/noise", params={"route": "GET /st\x00mps"})
        listed = await client.get("/admin/shadow/noise", headers=READ_ONLY)
        forgotten = await client.delete("/admin/shadow/noise", params={"route": "get  /stamps/{n}"})
        left = await noise_of(client, STAMP_ROUTE)
        await shadow_on(client, STAMP_ROUTE)
        await requested(client, "/stamps", [1])
        found = await settled_report(client, STAMP_ROUTE, runs=2)

    assert_error(refused, 403, "forbidden")
    assert_error(unnamed, 422, "invalid_request")
    assert_error(unknown, 404, "not_found")
    assert STAMP_ROUTE in unknown.json()["error"]["details"]["known"]
    assert [route["route"] for route in listed.json()["routes"]] == [STAMP_ROUTE]
    assert forgotten.status_code == 200, forgotten.text
    assert forgotten.json() == {"route": STAMP_ROUTE, "forgotten": 1}
    assert left == []
    assert found["counts"] == counted(calibration=1, mismatch=1)
    assert "served_at" in found["mismatches"][0]["diff"]


async def test_a_rule_can_leave_a_field_path_out(committed_database: str) -> None:
    rules = {STAMP_ROUTE: {"ignore": ["served_at"]}}
    app = real_app(committed_database, stamp_routers(), shadow_rules=rules)
    async with serving(app) as client:
        await shadow_on(client, STAMP_ROUTE)
        await requested(client, "/stamps", range(1, 6))
        found = await settled_report(client, STAMP_ROUTE, runs=5)

    assert found["counts"] == counted(match=4, mismatch=1)
    (mismatch,) = found["mismatches"]
    assert changed_lines(mismatch["diff"]) == ['"name": "stamp 5"', '"name": "Stamp 5"']


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        pytest.param({}, counted(mismatch=3), id="every-basket-differs-without-rules"),
        pytest.param(
            {BASKET_ROUTE: {"ignore_order": True, "tolerance": 0.001}},
            counted(match=2, mismatch=1),
            id="only-the-wrong-price-with-rules",
        ),
    ],
)
async def test_list_order_and_rounding_count_only_where_the_rules_say(
    committed_database: str, rules: dict[str, Any], expected: dict[str, int]
) -> None:
    app = real_app(committed_database, basket_routers(), shadow_rules=rules)
    async with serving(app) as client:
        await shadow_on(client, BASKET_ROUTE)
        await requested(client, "/baskets", [1, 2, PLANTED_BASKET])
        found = await settled_report(client, BASKET_ROUTE, runs=3)

    assert found["counts"] == expected
    if rules:
        (mismatch,) = found["mismatches"]
        assert mismatch["path"] == f"/baskets/{PLANTED_BASKET}"
        assert changed_lines(mismatch["diff"]) == ['"price": 2.5', '"price": 2.75']


async def test_only_the_sampled_share_of_requests_is_run_twice(committed_database: str) -> None:
    requests = 200
    app = real_app(committed_database, probe_routers(async_side="legacy"))
    async with serving(app) as client:
        await set_mode(client, PROBE_ROUTE, mode="shadow", sample=20, reason="a fifth")
        await requested(client, "/probe", range(requests))
        found = await quiet_report(client, PROBE_ROUTE)

    compared = sum(found["counts"].values())  # a dropped shadow was sampled too
    assert found["counts"]["mismatch"] == found["counts"]["error"] == 0
    assert 0.05 * requests <= compared <= 0.45 * requests


async def test_a_mismatch_carries_the_seconds_of_both_sides(committed_database: str) -> None:
    app = real_app(committed_database, probe_routers(async_delay=SHADOW_SECONDS))
    async with serving(app) as client:
        await shadow_on(client, PROBE_ROUTE)
        await requested(client, "/probe", [1])
        found = await settled_report(client, PROBE_ROUTE, runs=1)

    (mismatch,) = found["mismatches"]
    assert 0 < mismatch["primary_seconds"] < SHADOW_SECONDS
    assert mismatch["shadow_seconds"] >= SHADOW_SECONDS


async def test_sample_and_calibrate_are_shadow_options(committed_database: str) -> None:
    async with serving(real_app(committed_database, stamp_routers())) as client:
        chosen = await put_mode(
            client, STAMP_ROUTE, mode="shadow", sample=10, calibrate=True, reason="learn"
        )
        listed = (await client.get("/admin/routes")).json()
        schema = (await client.get("/admin/openapi.json")).json()

    assert chosen.status_code == 200, chosen.text
    route = chosen.json()["route"]
    assert (route["mode"], route["sample"], route["calibrating"]) == ("shadow", 10, True)
    listed_route = next(r for r in listed if r["route"] == STAMP_ROUTE)
    assert (listed_route["sample"], listed_route["calibrating"]) == (10, True)
    hints = schema["components"]["schemas"]["ModeChange"]["allOf"]
    shadow_only = {
        option
        for hint in hints
        if hint["if"]["properties"]["mode"]["const"] == "shadow"
        for option in hint["else"]["properties"]
    }
    assert shadow_only == {"primary", "sample", "calibrate"}


INVALID_OPTIONS: list[tuple[dict[str, Any], str, str]] = [
    ({"mode": "legacy", "sample": 10}, "body", "sample applies to shadow only, not to legacy"),
    (
        {"mode": "canary", "percent": 5, "calibrate": True},
        "body",
        "calibrate applies to shadow only, not to canary",
    ),
    ({"mode": "async", "calibrate": False}, "body", "calibrate applies to shadow only"),
    ({"mode": "shadow", "sample": 0}, "body.sample", "greater than or equal to 1"),
    ({"mode": "shadow", "sample": 101}, "body.sample", "less than or equal to 100"),
    ({"mode": "shadow", "sample": "10"}, "body.sample", "must be an integer"),
    ({"mode": "shadow", "sample": True}, "body.sample", "must be an integer"),
    ({"mode": "shadow", "calibrate": "yes"}, "body.calibrate", "valid boolean"),
]


async def test_sample_and_calibrate_are_refused_where_they_make_no_sense(
    committed_database: str,
) -> None:
    async with serving(real_app(committed_database)) as client:
        answers = [await put_mode(client, USER_ROUTE, **change) for change, _, _ in INVALID_OPTIONS]
        writing = await put_mode(client, "POST /users", mode="shadow", calibrate=True)
        events = (await client.get("/admin/routes/events")).json()

    for answer, (change, location, said) in zip(answers, INVALID_OPTIONS, strict=True):
        details = assert_error(answer, 422, "invalid_request")
        assert [field["location"] for field in details["fields"]] == [location], change
        assert said in answer.text, change
    assert_error(writing, 422, "invalid_request")
    assert "only for safe methods (GET, HEAD)" in writing.json()["error"]["message"]
    assert events == []


async def test_calibration_needs_only_the_legacy_implementation(committed_database: str) -> None:
    async with serving(real_app(committed_database)) as client:
        compared = await put_mode(client, ORDER_ROUTE, mode="shadow")
        await set_mode(client, ORDER_ROUTE, mode="shadow", calibrate=True, reason="learn")
        response = await client.get("/orders/1")
        found = await settled_report(client, ORDER_ROUTE, runs=1)

    assert_error(compared, 409, "conflict")
    assert response.status_code == 200, response.text
    assert found["counts"] == counted(calibration=1)
    assert found["mismatches"] == []


def test_the_command_line_sets_sample_and_calibration(committed_database: str) -> None:
    env = child_env({"GATEWAY_DATABASE_URL": committed_database, "GATEWAY_LOG_LEVEL": "ERROR"})
    command = gateway_command(
        "routes", "set", USER_ROUTE, "shadow", "--sample", "10", "--calibrate"
    )
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    refused = subprocess.run(
        gateway_command("routes", "set", USER_ROUTE, "legacy", "--sample", "10"),
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    engine = create_engine(sync_url(committed_database), poolclass=NullPool)
    with engine.connect() as connection:
        stored = connection.execute(
            text("SELECT mode, sample_percent, calibrating FROM gateway_routes WHERE route = :r"),
            {"r": USER_ROUTE},
        ).one()
    engine.dispose()

    assert done.returncode == 0, done.stderr
    assert tuple(stored) == ("shadow", 10, True)
    assert refused.returncode == 2
    assert "sample applies to shadow only, not to legacy" in refused.stderr


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ('{"GET /x": {"tolerance": -1}}', "GATEWAY_SHADOW_RULES.GET /x.tolerance: "),
        ('{"GET /x": {"ignore": ["a..b"]}}', "GATEWAY_SHADOW_RULES.GET /x.ignore.0: "),
        ('{"GET /x": {"ignore_ordr": true}}', "GATEWAY_SHADOW_RULES.GET /x.ignore_ordr: "),
        ('{"/x": {}}', "GATEWAY_SHADOW_RULES./x.[key]: "),
        ('{"GET /x": ', "GATEWAY_SHADOW_RULES: not valid JSON"),
    ],
)
def test_a_bad_rule_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, said: str
) -> None:
    monkeypatch.setenv("GATEWAY_SHADOW_RULES", value)
    with pytest.raises(InvalidSettings) as refused:
        load_settings()
    assert said in str(refused.value)


def test_rules_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    rule = '{"get /items": {"ignore": ["[].updated_at", "prices.*.amount"], "ignore_order": true}}'
    monkeypatch.setenv("GATEWAY_SHADOW_RULES", rule)
    settings = load_settings()
    (key, read) = next(iter(settings.shadow_rules.items()))
    assert (key, read.ignore, read.ignore_order, read.tolerance) == (
        "get /items",
        ("[].updated_at", "prices.*.amount"),
        True,
        None,
    )


def test_field_paths_name_every_element_and_any_key() -> None:
    pattern = regex(("items[].created_at", "[].id", "prices.*.amount", "it's"))
    assert pattern is not None
    named = [
        "root['items'][3]['created_at']",
        "root[0]['id']",
        "root['prices']['eur']['amount']",
        'root["it\'s"]',
    ]
    unnamed = ["root['items'][3]", "root['items']['created_at']", "root['prices']['amount']"]
    assert all(pattern.match(path) for path in named)
    assert not any(pattern.match(path) for path in unnamed)
    assert field_path(["items", 0, "created_at"]) == "items[].created_at"
    assert field_path([2, "id"]) == "[].id"
    assert field_path(["by.key", "n"]) == "*.n"
    assert field_path([]) == ""


def test_only_differences_outside_the_ignored_paths_are_named_and_shown() -> None:
    primary = {"n": 1, "name": "a", "served_at": "t1", "items": [{"id": 1, "at": "t1"}]}
    shadow = {"n": 1, "name": "b", "served_at": "t2", "items": [{"id": 1, "at": "t2"}]}
    rules = BodyRules().ignoring(["served_at", "items[].at"])
    assert differing(primary, shadow, BodyRules()) == ["items[].at", "name", "served_at"]
    assert differing(primary, shadow, rules) == ["name"]
    diff = readable_diff(*shown(primary, shadow, rules), ("primary", "shadow"))
    assert changed_lines(diff) == ['"name": "a"', '"name": "b"']


def test_unordered_lists_with_near_numbers_match_whatever_their_shape() -> None:
    rules = BodyRules(ignore_order=True, tolerance=0.001)
    primary = [{"a": 1.0, "b": 2.0}, {"a": 5.0, "b": 6.0}, [1, 2.5]]
    shadow = [[2.5004, 1], {"a": 5.0004, "b": 6.0004}, {"a": 1.0004, "b": 1.9996}]
    assert differing(primary, shadow, rules) == []
    assert differing(primary, [*shadow[:2], {"a": 1.0, "b": 2.1}], rules) == ["[].b"]
    assert differing({"x": 0.0004999}, {"x": 0.0005001}, rules) == []
    assert differing({"x": 1}, {"x": 1.0}, BodyRules()) == []
    assert differing("text", "other text", BodyRules()) == [""]
