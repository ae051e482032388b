"""The README documents what the code does: every setting, every route and its implementations."""

from __future__ import annotations

import re
from pathlib import Path

from demo.app import create_demo_app
from demo.settings import DemoSettings
from gateway.settings import ENV_PREFIX, Settings

README = (Path(__file__).parent.parent / "README.md").read_text()


def table_rows(heading: str) -> list[list[str]]:
    section = README.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header_and_rule = 2
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[header_and_rule:]]


def test_settings_table_lists_every_setting_once() -> None:
    documented = [re.sub(r"`", "", row[0]) for row in table_rows("Settings")]
    expected = [ENV_PREFIX + name.upper() for name in Settings.model_fields]
    assert sorted(documented) == sorted(expected)


def test_settings_table_gives_the_real_defaults() -> None:
    defaults = {
        ENV_PREFIX + name.upper(): field.default for name, field in Settings.model_fields.items()
    }
    for row in table_rows("Settings"):
        name, default = row[0].strip("`"), row[1].strip("`")
        value = defaults[name]
        if isinstance(value, bool):
            assert default == str(value).lower(), name
        elif isinstance(value, int | float):
            assert float(default) == float(value), name
        elif isinstance(value, str):
            assert default == value, name


def test_route_table_in_readme_matches_the_app() -> None:
    app = create_demo_app(DemoSettings(database_url="postgresql://unused@127.0.0.1/unused"))
    served = {
        key: set(route.implementations) for key, route in app.state.route_table.routes.items()
    }
    documented = {}
    for route, legacy, migrated in table_rows("The demo API"):
        key = re.match(r"`([A-Z]+ [^`]+)`", route)
        assert key is not None, route
        documented[key.group(1)] = {
            impl for impl, mark in (("legacy", legacy), ("async", migrated)) if mark == "✓"
        }
    assert documented == served
