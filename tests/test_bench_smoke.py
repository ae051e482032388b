"""The benchmark suite still runs end to end: one tiny configuration through `python -m bench`."""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from pathlib import Path

import anyio
import pytest

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = 4


def bench_command(server_url: str, output: Path) -> list[str]:
    return [
        sys.executable, "-m", "bench", "--database-url", server_url,
        "--database-name", f"bench_smoke_{uuid.uuid4().hex[:8]}", "--users", "100",
        "--rounds", "1", "--duration", "1", "--warmup", "0", "--connections", str(CONNECTIONS),
        "--scenarios", "gateway", "--configurations", "gateway_async", "--output", str(output),
    ]  # fmt: skip


async def test_one_tiny_run_measures_the_gateway_and_writes_every_output(
    server_url: str, tmp_path: Path
) -> None:
    assert shutil.which("wrk"), "the benchmark needs wrk: sudo apt-get install wrk"
    done = await anyio.run_process(bench_command(server_url, tmp_path), cwd=REPO_ROOT, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-4000:]

    document = json.loads((tmp_path / "benchmarks.json").read_text())
    [run] = document["runs"]
    assert run["configuration"] == "gateway_async"
    assert run["connections"] == CONNECTIONS
    assert run["status"] == "ok"
    load = run["load"]
    assert load["rps"] > 0
    assert load["answers"] > 0
    assert run["errors"] == 0
    assert load["impls"] == {"async": load["answers"]}
    assert load["p50_ms"] is not None and load["p50_ms"] <= load["p99_ms"]
    assert run["peak_rss_mb"] > 0

    page = (tmp_path / "benchmarks.md").read_text()
    assert f"| `gateway_async` | {CONNECTIONS} | {load['rps']:,.0f} |" in page
    assert "## Targets" in page and "## Environment" in page
    assert (tmp_path / "benchmarks.png").read_bytes().startswith(b"\x89PNG")
