"""Garbage-collector tuning: applied while the app runs, undone when it stops."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from fastapi import FastAPI

from demo.app import create_demo_app
from gateway.ops.gc_tuning import tune_garbage_collector
from tests.conftest import test_settings as settings_for


@pytest.fixture
def pristine_collector() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    gc.unfreeze()
    yield before
    gc.unfreeze()
    gc.set_threshold(*before)


def test_tuning_freezes_and_raises_the_threshold_then_restores(
    pristine_collector: tuple[int, int, int], database_url: str
) -> None:
    settings = settings_for(database_url, gc_threshold=12_345, gc_freeze=True)
    restore = tune_garbage_collector(settings)
    assert gc.get_threshold() == (12_345, *pristine_collector[1:])
    assert gc.get_freeze_count() > 1000  # the modules, routes and schemas loaded so far
    restore()
    assert gc.get_threshold() == pristine_collector
    assert gc.get_freeze_count() == 0


def test_zero_and_false_leave_the_collector_alone(
    pristine_collector: tuple[int, int, int], database_url: str
) -> None:
    settings = settings_for(database_url, gc_threshold=0, gc_freeze=False)
    restore = tune_garbage_collector(settings)
    assert gc.get_threshold() == pristine_collector
    assert gc.get_freeze_count() == 0
    restore()
    assert gc.get_threshold() == pristine_collector


@pytest.mark.anyio
async def test_the_app_tunes_the_collector_for_its_lifetime(
    pristine_collector: tuple[int, int, int], database_url: str
) -> None:
    app: FastAPI = create_demo_app(settings_for(database_url, gc_threshold=23_456, gc_freeze=True))
    async with app.router.lifespan_context(app):
        assert gc.get_threshold()[0] == 23_456
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == pristine_collector
    assert gc.get_freeze_count() == 0
