"""The lazy-load guard: relationship reads that would load lazily, found before they fail.

The demo loads everything it reads, on both sides; the tricky legacy module
and a careless async twin do not, and the guard names each read with its
file, line and the loader option to add. The careless twin's first route
really fails when served, which is what the guard spares a team.
"""

from __future__ import annotations

import pytest

from gateway.migrate.guard import assert_no_lazy_loads, lazy_loads
from tests import careless_twin, tricky_legacy
from tests.conftest import MakeApi
from tests.migration import ROOT, demo_app

pytestmark = [pytest.mark.anyio, pytest.mark.version_independent]


def test_the_demo_loads_everything_it_reads_on_both_sides() -> None:
    assert_no_lazy_loads(demo_app(), root=ROOT)


def test_a_careless_twin_is_named_with_the_fix() -> None:
    found = [(i.line, i.code, i.async_form) for i in lazy_loads(careless_twin, root=ROOT)]
    assert found == [
        (26, "return ... (Order.lines)", "selectinload(Order.lines) on the get on line 26"),
        (32, "order.user", "selectinload(Order.user) on the get on line 31"),
    ]
    with pytest.raises(AssertionError) as refused:
        assert_no_lazy_loads(careless_twin, root=ROOT)
    assert str(refused.value).splitlines() == [
        "2 relationship read(s) would load lazily:",
        "  tests/careless_twin.py:26: return ... (Order.lines): load it with "
        "selectinload(Order.lines) on the get on line 26",
        "  tests/careless_twin.py:32: order.user: load it with "
        "selectinload(Order.user) on the get on line 31",
    ]


def test_the_tricky_legacy_reads_are_found() -> None:
    found = [(i.line, i.code, i.automatic) for i in lazy_loads(tricky_legacy, root=ROOT)]
    assert [(code, automatic) for _, code, automatic in found] == [
        ("task.team", True),
        ("member.team", False),
        ("member.team.members", False),
    ]


async def test_what_the_guard_finds_fails_when_served(make_api: MakeApi) -> None:
    async with make_api(impl="async", async_routers=[careless_twin.router]) as api:
        response = await api.get("/orders/1")
    assert response.status_code == 500
