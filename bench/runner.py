"""Interleaved rounds: per round and connection count, each configuration once (A B C A B C)."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.database import BenchDatabase, forget_written_users
from bench.load import Load, LoadFailed, PgbenchRun, WrkRun
from bench.machine import Pinning
from bench.results import FAILED, OK, RunResult, judged
from bench.sampling import sampling
from bench.scenarios import BACKGROUND_CONNECTIONS, USERS_PATH, Configuration
from bench.servers import Server, ServerFailed, current_mode, running
from bench.workloads import Workload, pgbench_scripts, run_nonce

SETTLE_SECONDS = 1.0
STARTUP_ESTIMATE_SECONDS = 4.0
PGBENCH_CLIENTS = 64


@dataclass(frozen=True)
class Plan:
    configurations: list[Configuration]
    connections: list[int]
    rounds: int
    duration: int
    warmup: int
    users: int

    def runs(self) -> Iterator[tuple[int, int, Configuration]]:
        """(round, connections, configuration) in run order; pgbench once per round."""
        for round_number in range(1, self.rounds + 1):
            for level in self.connections:
                for config in self.configurations:
                    if not config.pgbench or level == min(self.connections):
                        yield round_number, level, config

    def estimated_seconds(self) -> float:
        per_run = self.warmup + self.duration + SETTLE_SECONDS + STARTUP_ESTIMATE_SECONDS
        return per_run * sum(1 for _ in self.runs())


@dataclass(frozen=True)
class Bench:
    """Everything a run needs besides its configuration."""

    plan: Plan
    database: BenchDatabase
    pinning: Pinning
    wrk: str
    logs: Path


Report = Callable[[RunResult], None]


def print_progress(result: RunResult) -> None:
    load = result.load
    p99 = "-" if load is None or load.p99_ms is None else f"{load.p99_ms:,.1f} ms"
    figures = "" if load is None else f"{load.rps:,.0f} req/s, p99 {p99}, "
    print(
        f"[round {result.round}] {result.configuration} @ {result.connections}: "
        f"{figures}{result.errors} errors, {result.status} {result.detail[:300]}",
        file=sys.stderr,
        flush=True,
    )


def run_plan(
    plan: Plan, database: BenchDatabase, pinning: Pinning, wrk: str, report: Report = print_progress
) -> list[RunResult]:
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="gateway-bench-logs-") as logs:
        bench = Bench(plan, database, pinning, wrk, Path(logs))
        for round_number, level, config in plan.runs():
            result = run_one(bench, config, level, round_number)
            report(result)
            results.append(result)
    return results


def run_one(bench: Bench, config: Configuration, connections: int, round_number: int) -> RunResult:
    """One measurement on a freshly started server (or pgbench)."""
    try:
        if config.pgbench:
            return run_pgbench(bench, config, connections, round_number)
        with running(config, bench.database.url, bench.pinning, bench.logs) as server:
            return measure(bench, config, server, connections, round_number)
    except ServerFailed as error:
        return RunResult(config.name, connections, round_number, FAILED, str(error))
    finally:
        if config.workload is not None:  # every run starts from the seeded table
            forget_written_users(bench.database.url)


def measure(
    bench: Bench, config: Configuration, server: Server, connections: int, round_number: int
) -> RunResult:
    plan = bench.plan
    time.sleep(SETTLE_SECONDS)
    main = WrkRun(
        bench.wrk,
        server.port,
        USERS_PATH,
        connections,
        plan.duration,
        plan.warmup,
        plan.users,
        workload(config, connections, round_number),
    )
    background = None
    if config.background_path is not None:
        background = WrkRun(
            bench.wrk,
            server.port,
            config.background_path,
            BACKGROUND_CONNECTIONS,
            plan.duration,
            plan.warmup,
            plan.users,
        )
    with sampling(bench.database.url, bench.database.name, server.process.pid) as peaks:
        try:
            load, behind = drive(main, background, bench.pinning)
        except LoadFailed as error:
            return RunResult(config.name, connections, round_number, FAILED, str(error))
    detail = ""
    if config.mode and current_mode(server, config.mode_body, config.routes) is False:
        detail = "the route left its mode during the run (automatic canary rollback?)"
    result = RunResult(
        config.name,
        connections,
        round_number,
        OK,
        detail,
        load=load,
        background=behind,
        db_busy=peaks.db_busy,
        db_open=peaks.db_open,
        peak_rss_mb=peaks.rss_bytes / 2**20,
    )
    return judged(result)


def workload(config: Configuration, connections: int, round_number: int) -> Workload | None:
    if config.workload is None:
        return None
    return Workload(config.workload, run_nonce(config.name, connections, round_number, time.time()))


def drive(main: WrkRun, background: WrkRun | None, pinning: Pinning) -> tuple[Load, Load | None]:
    """Run `main`'s load, with `background`'s at the same time when there is one."""
    behind = background.start(pinning) if background else None
    try:
        load = main.finish(main.start(pinning))
        return load, background.finish(behind) if background and behind else None
    finally:
        if behind is not None and behind.poll() is None:
            behind.kill()
            behind.wait()


def run_pgbench(
    bench: Bench, config: Configuration, connections: int, round_number: int
) -> RunResult:
    """`config`'s statements on PostgreSQL itself, from at most 64 database connections."""
    database, plan = bench.database, bench.plan
    clients = min(connections, PGBENCH_CLIENTS)
    if database.pgbench is None:
        return RunResult(config.name, clients, round_number, FAILED, "pgbench is not installed")
    time.sleep(SETTLE_SECONDS)
    scripts = () if config.workload is None else pgbench_scripts(config.workload, plan.users)
    run = PgbenchRun(
        database.pgbench,
        database.url,
        clients,
        plan.duration,
        plan.warmup,
        plan.users,
        tuple(scripts),
    )
    work_dir = Path(tempfile.mkdtemp(prefix="pgbench-", dir=bench.logs))
    with sampling(database.url, database.name, None) as peaks:
        try:
            load = run.run(bench.pinning, work_dir)
        except LoadFailed as error:
            return RunResult(config.name, clients, round_number, FAILED, str(error))
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
    result = RunResult(
        config.name,
        clients,
        round_number,
        OK,
        load=load,
        db_busy=peaks.db_busy,
        db_open=peaks.db_open,
    )
    return judged(result)
