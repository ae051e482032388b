"""The demo's contract parity, with gateway.testing: both implementations of every twin alike.

Each twin's cases run in order, writes included, once per implementation from
the same database state; statuses are checked against what the legacy side
must answer, and every difference between the two sides is a failure.
"""

from __future__ import annotations

import pytest
from fastapi import APIRouter

from demo.app import create_demo_app
from demo.settings import DemoSettings
from gateway import AsyncDB, error_responses
from gateway.database.queries import read_or_404
from gateway.testing import ParityReport, check_parity
from gateway.testing import twin_keys as parity_twins
from shared_models.models import User
from shared_models.params import UserId
from shared_models.schemas import UserRead
from tests.conftest import TEST_SIZE, MakeApi
from tests.conftest import test_settings as settings_for
from tests.parity_cases import CASES, Case

UNUSED_URL = "postgresql://unused@127.0.0.1/unused"
IGNORED = ("created_at",)  # set by the database at each side's own insert time

pytestmark = pytest.mark.anyio


def twin_keys() -> list[str]:
    """The keys of the demo app that have both a legacy and an async implementation."""
    return parity_twins(create_demo_app(DemoSettings(database_url=UNUSED_URL, log_level="WARNING")))


def test_every_twin_route_has_parity_cases() -> None:
    twins = twin_keys()
    assert twins, "the demo pairs no route"
    assert [key for key in twins if not CASES.get(key)] == []
    assert sorted(set(CASES) - set(twins)) == []


async def parity(database_url: str, cases: list[Case], **routers: list[APIRouter]) -> ParityReport:
    app = create_demo_app(settings_for(database_url), **routers)
    requests = [case.request() for case in cases]
    return await check_parity(app, requests, database_url=database_url, ignore_fields=IGNORED)


@pytest.mark.parametrize("key", twin_keys())
async def test_both_implementations_answer_alike(database_url: str, key: str) -> None:
    cases = CASES[key]
    report = await parity(database_url, cases)
    assert report.ok, report.describe()
    assert key in report.covered
    for case, exchange in zip(cases, report.exchanges, strict=True):
        where = case.request().label()
        assert exchange.legacy.status == case.status, f"{where}: {exchange.legacy.body!r}"
        if exchange.key in report.twins:
            assert (exchange.legacy.impl, exchange.async_.impl) == ("legacy", "async"), where


def planted_twin() -> APIRouter:
    """GET /users/{user_id} as a careless migration might write it: one field differs."""
    router = APIRouter(prefix="/users")

    @router.get("/{user_id}", response_model=UserRead, responses=error_responses(404))
    async def get_user(user_id: UserId, db: AsyncDB) -> UserRead:
        user = await read_or_404(db, User, user_id, UserRead)
        return user.model_copy(update={"name": user.name.upper()})

    return router


async def test_a_planted_one_field_difference_is_reported(database_url: str) -> None:
    cases = [Case("GET", "/users/3", 200), Case("GET", "/users/99", 404)]
    report = await parity(database_url, cases, async_routers=[planted_twin()])
    assert [difference.request.path for difference in report.differences] == ["/users/3"]
    (difference,) = report.differences
    assert difference.key == "GET /users/{user_id}"
    changed = [line for line in difference.diff.splitlines() if line.startswith(("-  ", "+  "))]
    assert len(changed) == 2 and all('"name"' in line for line in changed), difference.diff
    assert "1 differences" in report.describe()


async def test_created_rows_carry_a_timestamp_on_both_sides(make_api: MakeApi) -> None:
    for impl in ("legacy", "async"):
        async with make_api(impl=impl) as api:
            response = await api.post("/users", json={"email": "stamp@example.com", "name": "S"})
        assert response.status_code == 201
        assert response.json()["id"] == TEST_SIZE.users + 1
        assert isinstance(response.json()["created_at"], str) and response.json()["created_at"]
