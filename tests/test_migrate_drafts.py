"""`gateway migrate draft`: unedited drafts that import, pass the contract check and parity.

Each draft is generated from its legacy module into a package of its own,
imported from there, served as the async twin of its legacy module (the app's
start-up contract check runs as it is built), and checked with the parity
helper against the legacy implementation: the demo's users, items and orders,
and the tracker's tickets and projects. What a draft cannot translate is
listed, and a draft never overwrites a file unless asked.
"""

from __future__ import annotations

import difflib
import importlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from fastapi import APIRouter, Depends
from typer.testing import CliRunner

import async_routes.documents
import legacy_routes.items
import legacy_routes.orders
import legacy_routes.users
from demo.app import ASYNC_ROUTERS, create_demo_app
from gateway import Settings, adopt
from gateway.cli import app as cli
from gateway.migrate.draft import draft_module
from gateway.migrate.inventory import twin_modules
from gateway.migrate.modules import Context, new_context
from gateway.ops.migrations import upgrade
from gateway.testing import ParityRequest, check_parity
from tests import example, legacy_edges, tricky_legacy
from tests.conftest import create_database, drop_database
from tests.conftest import test_settings as settings_for
from tests.migration import (
    ROOT,
    demo_app,
    draft_package,
    expected,
    imported_draft,
    tracker_app,
    tricky_app,
)
from tests.parity_cases import CASES

pytestmark = [pytest.mark.anyio, pytest.mark.version_independent]

Drafts = tuple[Path, str]


@pytest.fixture
def drafts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Drafts:
    """A package of its own for a test's drafts, importable."""
    monkeypatch.syspath_prepend(str(tmp_path))
    return draft_package(tmp_path)


def demo_context() -> Context:
    return new_context(ROOT, twin_modules(demo_app()).twin_of)


def drafted(module: ModuleType, context: Context, drafts: Drafts) -> ModuleType:
    folder, package = drafts
    name = module.__name__.rsplit(".", 1)[-1]
    return imported_draft(draft_module(module, context), folder, package, name)


@pytest.mark.parametrize("name", ["users", "items"])
def test_the_draft_differs_from_the_hand_written_twin_only_in_its_docstring(name: str) -> None:
    legacy = importlib.import_module(f"legacy_routes.{name}")
    draft = draft_module(legacy, demo_context())
    twin = (ROOT / "async_routes" / f"{name}.py").read_text()
    changed = [
        line
        for line in difflib.unified_diff(twin.splitlines(), draft.code.splitlines(), lineterm="")
        if line.startswith(("-", "+")) and not line.startswith(("---", "+++"))
    ]
    assert changed == [f"-{twin.splitlines()[0]}", f"+{draft.code.splitlines()[0]}"]
    assert draft.marks == []


async def test_the_users_and_items_drafts_pass_parity_unedited(
    committed_database: str, drafts: Drafts
) -> None:
    context = demo_context()
    users = drafted(legacy_routes.users, context, drafts)
    items = drafted(legacy_routes.items, context, drafts)
    twins = [async_routes.documents.router, items.router, users.router]
    app = create_demo_app(settings_for(committed_database), async_routers=twins)
    keys = [key for key in CASES if key.split(" ")[1].startswith(("/users", "/items"))]
    requests = [case.request() for key in keys for case in CASES[key]]
    report = await check_parity(
        app, requests, database_url=committed_database, ignore_fields=["created_at"]
    )
    assert report.ok, report.describe()
    assert set(keys) <= report.covered and len(keys) == 8
    served = {exchange.async_.impl for exchange in report.exchanges if exchange.key in keys}
    assert served == {"async"}


def order(user_id: int, *lines: tuple[int, int]) -> ParityRequest:
    body = {"user_id": user_id, "lines": [{"item_id": i, "quantity": q} for i, q in lines]}
    return ParityRequest("POST", "/orders", json=body)


ORDERS = [
    order(2, (1, 2), (3, 1), (1, 1)),
    order(2, (2, 500)),  # more than its stock
    order(999, (1, 1)),
    order(1, (999, 1)),
    ParityRequest("GET", "/orders/1"),
    ParityRequest("GET", "/orders/9"),
    ParityRequest("GET", "/orders/999"),
    ParityRequest("GET", "/users/2/orders"),
    ParityRequest("GET", "/users/2/orders", params={"limit": 1, "offset": 1}),
    ParityRequest("GET", "/users/999/orders"),
    ParityRequest("GET", "/items/1"),
]


async def test_the_orders_draft_needs_no_hand_work_and_answers_alike(
    committed_database: str, drafts: Drafts
) -> None:
    draft = draft_module(legacy_routes.orders, demo_context())
    assert draft.marks == []  # a transaction with stock checks: locked, checked, written, as before
    assert "with_for_update()" in draft.code
    orders = drafted(legacy_routes.orders, demo_context(), drafts)
    app = create_demo_app(
        settings_for(committed_database), async_routers=[*ASYNC_ROUTERS, orders.router]
    )
    report = await check_parity(
        app, ORDERS, database_url=committed_database, ignore_fields=["created_at"]
    )
    assert report.ok, report.describe()
    statuses = [exchange.legacy.status for exchange in report.exchanges]
    assert statuses == [201, 409, 404, 404, 200, 200, 404, 200, 200, 404, 200]
    assert {"POST /orders", "GET /orders/{order_id}", "GET /users/{user_id}/orders"} <= (
        report.covered
    )


@pytest.fixture
def tracker_database(server_url: str) -> Iterator[str]:
    """The tracker's schema (its own Alembic chain, then the gateway's tables) and its rows."""
    name = f"tracker_drafts_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name)
    try:
        example.migrate(url)
        upgrade(url)
        example.seed(url)
        yield url
    finally:
        drop_database(server_url, name)


PARITY_FILE = example.PROJECT / "parity.json"  # the requests `gateway parity` sends the tracker
TRACKER = [
    *(ParityRequest.from_dict(item) for item in json.loads(PARITY_FILE.read_text())),
    ParityRequest("GET", "/api/v1/projects/"),
    ParityRequest("GET", "/api/v1/projects/1"),
    ParityRequest("GET", "/api/v1/projects/99"),
    ParityRequest("POST", "/api/v1/projects/", json={"key": "QA", "name": "Quality"}),
    ParityRequest("GET", "/api/v1/projects/3"),
    ParityRequest("POST", "/api/v1/tickets/1/close"),
    ParityRequest("POST", "/api/v1/tickets/1/close"),
    ParityRequest("DELETE", "/api/v1/tickets/3"),
    ParityRequest("GET", "/api/v1/tickets/3"),
    ParityRequest("DELETE", "/api/v1/tickets/99"),
]


async def test_the_trackers_drafts_pass_parity_unedited(
    tracker_database: str, drafts: Drafts
) -> None:
    adopted = tracker_app()
    context = new_context(example.PROJECT, twin_modules(adopted).twin_of)
    from tracker.api.deps import api_version_header, get_db
    from tracker.api.routes import projects, tickets
    from tracker.main import API_PREFIX, build_app

    twins = APIRouter()
    for legacy in (tickets, projects):
        twins.include_router(drafted(legacy, context, drafts).router)
    served = APIRouter()
    served.include_router(twins, prefix=API_PREFIX, dependencies=[Depends(api_version_header)])
    app = adopt(
        build_app(example.tracker_url(tracker_database)),
        settings=Settings(database_url=tracker_database, log_level="WARNING", gc_freeze=False),
        async_routers=[served],
        sync_session_dependencies=[get_db],
    )
    report = await check_parity(
        app, TRACKER, database_url=tracker_database, ignore_fields=["opened_at"]
    )
    assert report.ok, report.describe()
    assert report.uncovered == [] and len(report.twins) == 9
    assert [exchange.legacy.status for exchange in report.exchanges[-10:]] == [
        200, 200, 404, 201, 200, 200, 409, 204, 404, 404,
    ]  # fmt: skip


def test_the_tricky_draft_keeps_what_it_cannot_translate_and_lists_it(drafts: Drafts) -> None:
    tricky_app()
    draft = draft_module(tricky_legacy, new_context(ROOT))
    assert draft.code == expected("tricky_draft.py.txt")
    assert [why.split(":")[0] for _, why in draft.marks] == [
        "tests.tricky_helpers.audit (tests/tricky_helpers.py",  # a helper in another module
        "reads Member.team, which the dependency that gives `member` does not load",
        "reads Team.members, which the dependency that gives `member` does not load",
        "file I/O blocks the event loop",
        "checksum() blocks (time.sleep(0.01) at tricky_legacy.py",  # a helper of the module
    ]
    for line, _ in draft.marks:
        assert draft.code.splitlines()[line - 1].strip().startswith("# MIGRATE:")
    folder, package = drafts
    module = imported_draft(draft, folder, package, "tricky")
    assert [route.path for route in module.router.routes][:2] == [
        "/teams/{team_id}/tasks",
        "/teams/{team_id}/members/by-email",
    ]


def test_a_draft_never_overwrites_a_file_unless_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    runner = CliRunner()
    twin = ROOT / "async_routes" / "users.py"
    before = twin.read_text()
    refused = runner.invoke(cli, ["migrate", "draft", "legacy_routes/users.py"])
    assert refused.exit_code == 1 and "async_routes/users.py exists: give --force" in refused.output
    assert twin.read_text() == before
    out = tmp_path / "users.py"
    first = runner.invoke(cli, ["migrate", "draft", "legacy_routes/users.py", "--out", str(out)])
    assert first.exit_code == 0, first.output
    assert "nothing left to finish by hand" in first.output
    again = runner.invoke(cli, ["migrate", "draft", "legacy_routes/users.py", "--out", str(out)])
    assert again.exit_code == 1
    out.write_text("edited by hand\n")
    forced = runner.invoke(
        cli, ["migrate", "draft", "legacy_routes/users.py", "--out", str(out), "--force"]
    )
    assert forced.exit_code == 0 and out.read_text().startswith('"""Users, the classic way')


def test_the_run_lists_each_spot_left_to_a_person(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    out = tmp_path / "tricky.py"
    result = CliRunner().invoke(
        cli,
        ["migrate", "draft", "tests/tricky_legacy.py", "--out", str(out),
         "--app", "tests.migration:tricky"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    spots = [line for line in result.output.splitlines() if line.startswith(f"  {out}:")]
    assert len(spots) == 5 and "5 spot(s) to finish by hand:" in result.output
    assert all(
        "# MIGRATE:" in out.read_text().splitlines()[int(s.split(":")[1]) - 1] for s in spots
    )


def test_draft_keeps_a_legacy_module_it_cannot_place_and_names_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(
        cli, ["migrate", "draft", "tests/tricky_legacy.py", "--app", "tests.migration:tricky"]
    )
    assert result.exit_code == 2 and "name the file to write with --out" in result.output


def test_drafts_at_the_edges_of_what_they_rewrite(drafts: Drafts) -> None:
    draft = draft_module(legacy_edges, new_context(ROOT))
    code = " ".join(draft.code.split())
    assert "async def list_books(limit: int = 10, *, db: AsyncDB)" in code  # keyword-only now
    assert ".limit(limit).options(selectinload(Book.author))" in code  # read in a comprehension
    assert "async with db.begin():" in code
    assert "await db.get(Author, author_id, options=[selectinload(Author.books)])" in code
    assert "async def titles_of(db, author_id):" in code
    assert "return await titles_of(db, author_id)" in code
    assert [why.split("(")[0] for _, why in draft.marks] == [
        "AsyncSession has no bulk_save_objects",
        "titles_of",
    ]
    folder, package = drafts
    assert imported_draft(draft, folder, package, "edges").router.routes
