"""The adopter's example app in tests/example_project: its import path, its schema, its data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gateway.database.engines import sync_url

PROJECT = Path(__file__).resolve().parent / "example_project"
PLAIN_APP = "tracker.main:app"
ADOPTED_APP = "tracker.adopted:app"
PROJECTS = [(1, "OPS", "Operations"), (2, "WEB", "Website")]
TICKETS = [
    (1, 1, "Rotate the certificates", "open", "2026-03-01T09:00:00+00:00"),
    (2, 1, "Upgrade PostgreSQL", "open", "2026-03-02T09:00:00+00:00"),
    (3, 2, "Fix the footer", "closed", "2026-03-03T09:00:00+00:00"),
]


def importable() -> None:
    """Put the example project on sys.path, as running from its directory would."""
    if str(PROJECT) not in sys.path:
        sys.path.insert(0, str(PROJECT))


def tracker_url(database_url: str) -> str:
    """The URL as the tracker's own engine takes it (it names its driver)."""
    return sync_url(database_url).render_as_string(hide_password=False)


def project_env(database_url: str, **extra: str) -> dict[str, str]:
    """An environment in which the tracker, its Alembic and the gateway find the database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        TRACKER_DATABASE_URL=tracker_url(database_url),
        GATEWAY_DATABASE_URL=database_url,
        GATEWAY_LOG_LEVEL="WARNING",
        PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT), env.get("PYTHONPATH")])),
    )
    env.update(extra)
    return env


def alembic(database_url: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    """The tracker's own `alembic` command, run in its project directory."""
    return subprocess.run(
        [sys.executable, "-m", "alembic", *arguments],
        cwd=PROJECT,
        env=project_env(database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def migrate(database_url: str) -> None:
    result = alembic(database_url, "upgrade", "head")
    if result.returncode != 0:
        raise RuntimeError(f"the tracker's migrations failed: {result.stderr}")


def seed(database_url: str) -> None:
    engine = create_engine(sync_url(database_url), poolclass=NullPool)
    with engine.begin() as connection:
        for row in PROJECTS:
            connection.execute(
                text("INSERT INTO projects (id, key, name) VALUES (:id, :key, :name)"),
                dict(zip(("id", "key", "name"), row, strict=True)),
            )
        for row in TICKETS:
            connection.execute(
                text(
                    "INSERT INTO tickets (id, project_id, title, status, opened_at) "
                    "VALUES (:id, :project_id, :title, :status, :opened_at)"
                ),
                dict(zip(("id", "project_id", "title", "status", "opened_at"), row, strict=True)),
            )
        for table in ("projects", "tickets"):
            connection.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
                )
            )
    engine.dispose()
