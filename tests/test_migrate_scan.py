"""`gateway migrate scan`: the idioms of every legacy endpoint, found statically, as expected.

The scans of the demo, of the adoption tests' tracker and of a module of
tricky legacy code (`tests/tricky_legacy.py`) match the files in
`tests/migrate_expected/`; the async routers, scanned the same way, show
nothing; modes are read from the database when it answers; the advisor's
ranking is joined when metrics are given. No endpoint runs.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import get_args

import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

import async_routes.documents
import async_routes.items
import async_routes.users
from demo.app import create_demo_app
from gateway.cli import app as cli
from gateway.database.engines import create_async_engine_for
from gateway.factory import gateway_of
from gateway.metrics import advisor
from gateway.migrate.idioms import Kind
from gateway.migrate.inventory import route_modes
from gateway.migrate.report import lines
from gateway.migrate.scan import Scan, module_idioms, scan_app
from gateway.routing.modes import RouteMode
from tests import example
from tests.conftest import test_settings as settings_for
from tests.migration import ROOT, demo_app, expected, tracker_app, tricky_app

pytestmark = pytest.mark.version_independent

KINDS = set(get_args(Kind))  # every kind a scan may name in its JSON


def text(scan: Scan) -> str:
    return "\n".join(lines(scan)) + "\n"


def test_the_demo_scan_is_as_expected() -> None:
    assert text(scan_app(demo_app(), "demo.app:app", root=ROOT)) == expected("demo_scan.txt")


def test_the_tricky_module_scan_is_as_expected() -> None:
    scan = scan_app(tricky_app(), "tests.migration:tricky_app", root=ROOT)
    assert text(scan) == expected("tricky_scan.txt")


def test_the_tricky_module_shows_each_trap() -> None:
    idioms = [i for r in scan_app(tricky_app(), "t", root=ROOT).routers for e in r.endpoints
              for i in e.idioms]  # fmt: skip
    codes = {(idiom.kind, idiom.code, idiom.automatic) for idiom in idioms}
    assert (
        "query",
        "db.query(Member).filter_by(team_id=team_id, email=email).first()",
        True,
    ) in codes
    assert ("commit_in_loop", "db.commit()", True) in codes
    assert ("lazy_load", "task.team", True) in codes  # loaded by the draft's query
    assert ("lazy_load", "member.team", False) in codes  # fetched by a dependency
    assert ("blocking", "time.sleep(0.01)", False) in codes
    assert ("helper", "checksum(titles)", False) in codes
    forms = {idiom.code: idiom.async_form for idiom in idioms}
    joined = forms[
        "db.query(Team).options(joinedload(Team.members)).filter(Team.id == team_id).first()"
    ]
    assert ".unique().scalars().first()" in joined
    counted = [form for code, form in forms.items() if "func.count" in code]
    assert counted and "select(func.count(Task.id))" in counted[0]
    paged = forms["query.order_by(Task.id.desc()).limit(limit).offset(offset).all()"]
    assert paged.startswith("(await db.execute(query.order_by(Task.id.desc()).limit(limit)")
    sleep = next(i for i in idioms if i.code == "time.sleep(0.01)")
    assert sleep.via.startswith("checksum (tests/tricky_legacy.py:")
    opened = next(i for i in idioms if i.code.startswith("urlopen("))
    assert (opened.path, opened.via) == (
        "tests/tricky_helpers.py",
        "audit (tests/tricky_helpers.py:10)",
    )


def test_the_tracker_scan_is_as_expected() -> None:
    scan = scan_app(tracker_app(), "tracker.adopted:app", root=example.PROJECT)
    assert text(scan) == expected("tracker_scan.txt")


@pytest.mark.parametrize(
    "module", [async_routes.users, async_routes.items, async_routes.documents], ids=str
)
def test_nothing_is_invented_on_the_async_routers(module: object) -> None:
    assert module_idioms(module, ROOT) == []  # type: ignore[arg-type]


def test_nothing_is_invented_on_the_trackers_async_twins() -> None:
    tracker_app()
    import tracker.api_async.routes.tickets as tickets

    assert module_idioms(tickets, example.PROJECT) == []


def test_a_path_limits_the_scan_to_the_endpoints_below_it() -> None:
    scan = scan_app(demo_app(), "demo.app:app", root=ROOT, paths=[ROOT / "legacy_routes/orders.py"])
    assert [router.path for router in scan.routers] == ["legacy_routes/orders.py"]
    assert scan_app(demo_app(), "d", root=ROOT, paths=[ROOT / "async_routes"]).routers == []


def test_modes_come_from_the_database_when_it_answers(committed_database: str) -> None:
    app = demo_app_on(committed_database)
    table = gateway_of(app).table

    async def canary() -> None:
        table.engine = create_async_engine_for(gateway_of(app).settings, committed_database)
        try:
            await table.change("GET /users", RouteMode("canary", 25), actor="test", reason="scan")
        finally:
            await table.engine.dispose()
            table.engine = None

    asyncio.run(canary())
    modes = route_modes(demo_app_on(committed_database))
    assert modes is not None
    assert modes["GET /users"] == "canary 25%" and modes["POST /orders"] == "legacy"
    scan = scan_app(app, "demo", root=ROOT, modes=modes, paths=[ROOT / "legacy_routes/users.py"])
    assert "modes from the database" in text(scan)
    assert "  GET /users  list_users (legacy_routes/users.py:17)  twin: yes  mode: canary 25%" in (
        text(scan)
    )


def test_modes_are_unknown_when_the_database_does_not_answer() -> None:
    assert route_modes(demo_app_on("postgresql://nobody@127.0.0.1:9/none")) is None


def demo_app_on(url: str) -> FastAPI:
    return create_demo_app(settings_for(url))


def test_the_advisors_ranking_is_joined_when_metrics_are_known() -> None:
    busy = {"GET /orders/{order_id}": 3.0, "GET /users/{user_id}": 1.0}
    series: advisor.Series = {
        ("gateway_threadpool_seconds_total", (("route", key),)): seconds
        for key, seconds in busy.items()
    }
    app = demo_app()
    known = gateway_of(app).table.implementations_by_key()
    ranking = advisor.build_report(series, 10.0, known_routes=known)
    scan = scan_app(app, "demo", root=ROOT, ranking=ranking, metrics="http://prometheus:9090")
    ranked = {router.path: router for router in scan.routers}
    assert ranked["legacy_routes/orders.py"].advisor_rank == 1
    assert ranked["legacy_routes/orders.py"].threadpool_share == pytest.approx(0.75)
    assert ranked["legacy_routes/users.py"].advisor_rank == 2
    summary = text(scan).split("Routers, the most automatic first", 1)[1]
    assert "(advisor from http://prometheus:9090)" in summary
    assert "#1, 75% of threadpool" in summary and "#2, 25% of threadpool" in summary


def test_the_command_prints_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(
        cli, ["migrate", "scan", "--app", "tests.migration:tricky", "--json"]
    )
    assert result.exit_code == 0, result.output
    scanned = json.loads(result.output)
    assert scanned["app"] == "tests.migration:tricky" and scanned["modes_known"] is False
    (router,) = scanned["routers"]
    assert router["path"] == "tests/tricky_legacy.py" and router["idioms"] == 32
    kinds = {idiom["kind"] for e in router["endpoints"] for idiom in e["idioms"]}
    assert kinds <= KINDS and {"query", "lazy_load", "blocking", "helper"} <= kinds
    first = router["endpoints"][0]["idioms"][1]
    assert set(first) == {"kind", "path", "line", "code", "async_form", "automatic", "why", "via"}
