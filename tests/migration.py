"""What the migration assistant's tests share: the apps they scan, and drafts they import.

Apps are built, never started: the scan imports an app only to read its
routes. A draft is written into a package of its own under a temporary
directory and imported from there, as a team would import a twin module.
"""

from __future__ import annotations

import importlib
import uuid
from pathlib import Path
from types import ModuleType

from fastapi import FastAPI

from demo.app import create_demo_app
from demo.settings import DemoSettings
from gateway import Settings, create_app
from gateway.migrate.draft import Draft
from tests import example, tricky_legacy

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = Path(__file__).resolve().parent / "migrate_expected"


def demo_app() -> FastAPI:
    """The demo, with no database: its modes are unknown to a scan."""
    return create_demo_app(DemoSettings(database_url=None, log_level="WARNING", gc_freeze=False))


def tricky_app() -> FastAPI:
    settings = Settings(database_url=None, log_level="WARNING", gc_freeze=False)
    return create_app(settings, legacy_routers=[tricky_legacy.router])


def tracker_app() -> FastAPI:
    """The tracker as adopted, twins and all (it imports from its own project directory)."""
    example.importable()
    return importlib.import_module("tracker.adopted").app  # type: ignore[no-any-return]


def expected(name: str) -> str:
    return (EXPECTED / name).read_text()


def draft_package(directory: Path) -> tuple[Path, str]:
    """A fresh package below `directory` (which must be on sys.path): its folder and name."""
    name = f"drafts_{uuid.uuid4().hex[:8]}"
    folder = directory / name
    folder.mkdir()
    (folder / "__init__.py").write_text('"""Drafts of the migration assistant, for a test."""\n')
    return folder, name


def imported_draft(draft: Draft, folder: Path, package: str, module: str) -> ModuleType:
    """`draft` written as `package.module` and imported, unedited."""
    (folder / f"{module}.py").write_text(draft.code)
    return importlib.import_module(f"{package}.{module}")


tricky = tricky_app()  # for `gateway migrate scan --app tests.migration:tricky`
