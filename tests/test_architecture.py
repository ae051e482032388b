"""The framework knows no app, and its layers import only downwards (import-linter contracts)."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_import_contracts_hold() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_no_gateway_module_names_a_demo_package() -> None:
    """Not even as a string: the framework never finds an app by name."""
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / "gateway").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"['\"]?\b(legacy_routes|async_routes|shared_models)\b", line)
        or re.search(r"['\"]demo[.:]", line)
    ]
    assert found == []


@pytest.mark.slow
def test_installing_the_gateway_adds_only_the_gateway_package(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
         "--wheel-dir", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("hybrid_gateway-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/", 1)[0] for name in names if not name.startswith("hybrid_gateway")}
    assert top_level == {"gateway"}
    assert "gateway/ops/migrations/versions/0001_route_modes.py" in names
    assert "gateway/ops/migrations/script.py.mako" in names
    for asset in ("console.html", "console.js", "console.css", "console.svg"):
        assert f"gateway/ops/static/{asset}" in names
