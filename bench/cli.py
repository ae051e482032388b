"""`python -m bench`: options, the run from database to report, and what it writes."""

from __future__ import annotations

import argparse
import shlex
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import make_url

from bench.chart import write_chart
from bench.database import BenchDatabase, bench_database
from bench.machine import (
    MissingTool,
    machine_facts,
    package_versions,
    plan_pinning,
    raise_open_files,
    require_wrk,
)
from bench.report import write_json, write_markdown
from bench.results import RunResult, summarise_all
from bench.runner import Plan, run_plan
from bench.scenarios import CONFIGURATIONS, SCENARIOS, select_configurations
from bench.targets import judge

MIN_USERS = 10_000
NEEDED_CONNECTIONS = 200  # two gateway workers with full pools, plus the sampler


def names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def counts(text: str) -> list[int]:
    return [int(value) for value in names(text)]


def parser() -> argparse.ArgumentParser:
    described = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the users routes: the article's apps, the gateway, its ceilings.",
    )
    add = described.add_argument
    add("--database-url", help="a PostgreSQL server to use (default: a private embedded one)")
    add(
        "--database-name", default="gateway_bench", help="benchmark database, recreated and dropped"
    )
    add("--rounds", type=int, default=3, help="interleaved rounds (median and spread over them)")
    add("--duration", type=int, default=10, help="measured seconds per run")
    add("--warmup", type=int, default=3, help="warm-up seconds, on the same connections")
    add("--connections", type=counts, default=[64, 1000], help="comma-separated, e.g. 64,1000")
    add("--scenarios", type=names, default=list(SCENARIOS), help=", ".join(SCENARIOS))
    add(
        "--configurations",
        type=names,
        default=None,
        help="only these: " + ", ".join(CONFIGURATIONS),
    )
    add("--users", type=int, default=MIN_USERS, help="users seeded; ids are drawn from 1..users")
    add("--output", type=Path, default=Path("docs"), help="where benchmarks.{md,json,png} go")
    return described


@dataclass(frozen=True)
class Options:
    database_url: str | None
    database_name: str
    rounds: int
    duration: int
    warmup: int
    connections: list[int]
    scenarios: list[str]
    configurations: list[str] | None
    users: int
    output: Path


def parse(argv: Sequence[str]) -> Options:
    arguments = parser().parse_args(argv)
    options = Options(**vars(arguments))
    unknown = [name for name in options.scenarios if name not in SCENARIOS]
    unknown += [name for name in options.configurations or () if name not in CONFIGURATIONS]
    if unknown:
        parser().error(f"unknown scenario or configuration: {', '.join(unknown)}")
    if options.rounds < 1 or options.duration < 1 or options.warmup < 0 or not options.connections:
        parser().error("need --rounds >= 1, --duration >= 1, --warmup >= 0 and connections")
    return options


def shown_command(argv: Sequence[str]) -> str:
    """The command line as run, with any password in --database-url hidden."""
    shown = list(argv)
    for index, argument in enumerate(shown):
        if argument.startswith("--database-url="):
            shown[index] = "--database-url=" + hide_password(argument.split("=", 1)[1])
        elif index > 0 and shown[index - 1] == "--database-url":
            shown[index] = hide_password(argument)
    return shlex.join(["python", "-m", "bench", *shown])


def hide_password(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def wrk_version(wrk: str) -> str:
    shown = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    return (shown.stdout or shown.stderr).splitlines()[0].split("Copyright")[0].strip()


def metadata(
    options: Options,
    database: BenchDatabase,
    wrk: str,
    open_files: int,
    pinning_note: str,
    argv: Sequence[str],
) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shown_command(argv),
        "machine": machine_facts(),
        "pinning": pinning_note,
        "postgresql": {
            "version": database.server_version,
            "where": "embedded, private" if database.embedded else "given by --database-url",
            "max_connections": database.max_connections,
        },
        "wrk": wrk_version(wrk),
        "open_files": open_files,
        "rounds": options.rounds,
        "duration": options.duration,
        "warmup": options.warmup,
        "connections": options.connections,
        "scenarios": options.scenarios,
        "users": options.users,
        "packages": package_versions(),
    }


def run(options: Options, argv: Sequence[str]) -> list[RunResult]:
    """Measure, then write benchmarks.md, .json and .png into `options.output`."""
    wrk = require_wrk()
    open_files = raise_open_files()
    pinning = plan_pinning()
    configurations = select_configurations(options.scenarios, options.configurations)
    plan = Plan(
        configurations,
        options.connections,
        options.rounds,
        options.duration,
        options.warmup,
        options.users,
    )
    print(
        f"{len(configurations)} configurations x {options.connections} connections x "
        f"{options.rounds} rounds: about {plan.estimated_seconds() / 60:.0f} min; "
        f"{pinning.note}",
        file=sys.stderr,
    )
    with bench_database(options.database_url, options.database_name, options.users) as database:
        if database.max_connections < NEEDED_CONNECTIONS:
            print(
                f"warning: the server allows {database.max_connections} connections; "
                f"some configurations open up to {NEEDED_CONNECTIONS} (raise max_connections, "
                "or leave out --database-url to use a private embedded server)",
                file=sys.stderr,
            )
        runs = run_plan(plan, database, pinning, wrk)
        meta = metadata(options, database, wrk, open_files, pinning.note, argv)
    summaries = summarise_all(runs)
    verdicts = judge(summaries, options.connections)
    options.output.mkdir(parents=True, exist_ok=True)
    write_json(options.output / "benchmarks.json", meta, runs, summaries, verdicts)
    write_markdown(options.output / "benchmarks.md", meta, summaries, verdicts)
    write_chart(options.output / "benchmarks.png", summaries, options.connections)
    return runs


def main(argv: Sequence[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    options = parse(arguments)
    if options.users < MIN_USERS:
        print(
            f"note: {options.users} users (the published figures use {MIN_USERS:,} or more)",
            file=sys.stderr,
        )
    # Stopped with SIGTERM, the run still stops its servers and its PostgreSQL.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))
    try:
        run(options, arguments)
    except MissingTool as error:
        sys.exit(str(error))
    print(f"wrote {options.output}/benchmarks.md, .json and .png", file=sys.stderr)
