"""A route's events form one unbroken chain, whatever the concurrency, first change included."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gateway.database.engines import sync_url
from tests.processes import REPO_ROOT, child_env

pytestmark = [pytest.mark.slow]

KEY = "GET /users/{user_id}"
WRITERS_PER_PROCESS = 20


def events(database_url: str) -> list[tuple[str | None, int | None, str, int, str]]:
    engine = create_engine(sync_url(database_url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT old_mode, old_percent, new_mode, percent, actor "
                    "FROM gateway_route_events WHERE route = :key ORDER BY id"
                ),
                {"key": KEY},
            )
            return [tuple(row) for row in rows]  # type: ignore[misc]
    finally:
        engine.dispose()


def test_forty_concurrent_first_changes_from_two_processes_chain_their_events(
    committed_database: str,
) -> None:
    start_at = f"{time.time() + 1.5:.3f}"
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.mode_writers",
                committed_database,
                KEY,
                name,
                str(WRITERS_PER_PROCESS),
                start_at,
            ],
            env=child_env({}),
            cwd=REPO_ROOT,
        )
        for name in ("first", "second")
    ]
    for writer in writers:
        assert writer.wait(timeout=60) == 0

    chain = events(committed_database)
    assert len(chain) == 2 * WRITERS_PER_PROCESS
    assert chain[0][:2] == ("legacy", 0)  # the route's default, before any change
    for earlier, later in itertools.pairwise(chain):
        assert later[:2] == earlier[2:4], (
            f"{later[4]} read {later[:2]}, {earlier[4]} wrote {earlier[2:4]}"
        )
    assert {actor.split("-")[0] for *_, actor in chain} == {"first", "second"}
