"""Load generators: wrk with a bench Lua script on 127.0.0.1, and pgbench for the database."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.database import plain
from bench.machine import Pinning
from bench.servers import HOST
from bench.workloads import Workload

LUA_SCRIPT = Path(__file__).with_name("load.lua")
ROUTER_SCRIPT = Path(__file__).with_name("router.lua")
TIMEOUT_SECONDS = 10
RESULT_PREFIX = "BENCH_RESULT "
EXTRA_WAIT_SECONDS = 60
PGBENCH_QUERY = "SELECT id, email, name, is_active, created_at FROM users WHERE id = :id;"


class LoadFailed(RuntimeError):
    """The load generator did not run to the end or printed no result."""


@dataclass
class OperationLoad:
    """One operation of a router.lua workload: its matched answers and their latency."""

    rps: float
    answers: int
    non2xx: int = 0
    empty_pages: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None


@dataclass
class Load:
    """What one load generator measured over the measured window (after warm-up)."""

    rps: float
    answers: int
    non2xx: int = 0
    socket_errors: int = 0
    timeouts: int = 0
    unanswered: int = 0
    slow_answers: int = 0
    unmatched: int = 0
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    generator_p99_ms: float | None = None
    impls: dict[str, int] = field(default_factory=dict)
    collisions: int = 0
    operations: dict[str, OperationLoad] = field(default_factory=dict)


def operations_from_lua(values: Mapping[str, Any]) -> dict[str, OperationLoad]:
    """router.lua's per-operation figures, by operation name; none from load.lua."""
    return {
        str(name): OperationLoad(
            rps=float(figures["rate"]),
            answers=int(figures["answers"]),
            non2xx=int(figures["non2xx"]),
            empty_pages=int(figures["empty_pages"]),
            p50_ms=figures["p50_ms"],
            p99_ms=figures["p99_ms"],
        )
        for name, figures in sorted(values.get("operations", {}).items())
    }


def from_lua(values: dict[str, Any]) -> Load:
    return Load(
        rps=float(values["rate"]),
        answers=int(values["answers"]),
        non2xx=int(values["non2xx"]),
        socket_errors=sum(
            int(values[key]) for key in ("connect_errors", "read_errors", "write_errors")
        ),
        timeouts=int(values["timeouts"]),
        unanswered=int(values["unanswered"]),
        slow_answers=int(values["slow"]),
        unmatched=int(values["unmatched"]),
        p50_ms=values["p50_ms"],
        p90_ms=values["p90_ms"],
        p99_ms=values["p99_ms"],
        max_ms=values["max_ms"],
        generator_p99_ms=values["wrk_p99_ms"],
        impls={str(key): int(value) for key, value in values["impls"].items()},
        collisions=int(values.get("collisions", 0)),
        operations=operations_from_lua(values),
    )


@dataclass(frozen=True)
class WrkRun:
    """One wrk invocation: `warmup` + `duration` seconds on the same connections.

    load.lua asks for `path`; with a `workload`, router.lua drives it instead.
    """

    wrk: str
    port: int
    path: str
    connections: int
    duration: int
    warmup: int
    max_id: int
    workload: Workload | None = None

    def script_and_arguments(self) -> tuple[Path, list[str]]:
        if self.workload is None:
            return LUA_SCRIPT, [self.path, str(self.warmup), str(self.max_id)]
        return ROUTER_SCRIPT, self.workload.arguments(self.warmup, self.max_id)

    def command(self, pinning: Pinning) -> list[str]:
        threads = min(pinning.load_threads(), self.connections)
        options = f"-t {threads} -c {self.connections} -d {self.warmup + self.duration}s"
        lua, arguments = self.script_and_arguments()
        script = ["-s", str(lua), f"http://{HOST}:{self.port}", "--"]
        timeout = f"--timeout {TIMEOUT_SECONDS}s"
        return [
            *pinning.load_prefix(),
            self.wrk,
            *options.split(),
            *timeout.split(),
            *script,
            *arguments,
        ]

    def start(self, pinning: Pinning) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(pinning), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def finish(self, process: subprocess.Popen[str]) -> Load:
        limit = self.warmup + self.duration + EXTRA_WAIT_SECONDS
        try:
            stdout, stderr = process.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise LoadFailed(f"wrk did not finish in {limit} s") from None
        return from_lua(parse_result(stdout, stderr))


def parse_result(stdout: str, stderr: str) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            parsed: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return parsed
    raise LoadFailed(f"wrk printed no result:\n{stdout[-2000:]}\n{stderr[-2000:]}")


@dataclass(frozen=True)
class PgbenchRun:
    """Statements straight on PostgreSQL, prepared, from `clients` connections.

    `scripts` are (pgbench script, weight); by default the lookup by id.
    """

    pgbench: str
    database_url: str
    clients: int
    duration: int
    warmup: int
    max_id: int
    scripts: tuple[tuple[str, int], ...] = ()

    def script_files(self, work_dir: Path) -> list[str]:
        scripts = self.scripts or ((f"\\set id random(1, {self.max_id})\n{PGBENCH_QUERY}\n", 1),)
        files = []
        for number, (text, weight) in enumerate(scripts):
            script = work_dir / f"script{number}.sql"
            script.write_text(text)
            files += ["-f", f"{script}@{weight}"]
        return files

    def run(self, pinning: Pinning, work_dir: Path) -> Load:
        prefix = work_dir / "pgbench_log"
        options = f"-n -M prepared -c {self.clients} -j {min(2, self.clients)}"
        options += f" -T {self.warmup + self.duration}"
        files = [*self.script_files(work_dir), "--log", f"--log-prefix={prefix}"]
        command = [
            *pinning.load_prefix(),
            self.pgbench,
            *options.split(),
            *files,
            plain(self.database_url),
        ]
        limit = self.warmup + self.duration + EXTRA_WAIT_SECONDS
        done = subprocess.run(command, capture_output=True, text=True, timeout=limit, check=False)
        if done.returncode != 0:
            raise LoadFailed(f"pgbench failed ({done.returncode}):\n{done.stderr[-2000:]}")
        failed = re.search(r"number of failed transactions: (\d+)", done.stdout)
        load = measured(transactions(work_dir.glob("pgbench_log*")), self.warmup)
        load.non2xx = int(failed.group(1)) if failed else 0
        return load


def transactions(logs: Iterable[Path]) -> list[tuple[float, float]]:
    """(completion time in s, latency in ms) of every logged transaction."""
    found = []
    for log in logs:
        for line in log.read_text().splitlines():
            fields = line.split()
            latency_us, epoch, micros = int(fields[2]), int(fields[4]), int(fields[5])
            found.append((epoch + micros / 1e6, latency_us / 1e3))
    return found


def measured(done: list[tuple[float, float]], warmup: int) -> Load:
    if not done:
        return Load(rps=0.0, answers=0)
    start = min(finished - latency / 1e3 for finished, latency in done) + warmup
    window = sorted(latency for finished, latency in done if finished >= start)
    end = max(finished for finished, _ in done)
    if not window or end <= start:
        return Load(rps=0.0, answers=0)
    return Load(
        rps=len(window) / (end - start),
        answers=len(window),
        p50_ms=quantile(window, 0.50),
        p90_ms=quantile(window, 0.90),
        p99_ms=quantile(window, 0.99),
        max_ms=window[-1],
        slow_answers=sum(1 for latency in window if latency > 2000),
    )


def quantile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
