"""The outputs: docs/benchmarks.md (tables, targets, environment) and .json (raw results)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.results import RunResult, Summary
from bench.scenarios import BACKGROUND_CONNECTIONS, CONFIGURATIONS, SCENARIOS
from bench.targets import Summaries, Verdict

NOTES_MARKER = "<!-- notes below this line are kept when python -m bench rewrites the page -->"
HEADER = (
    "| configuration | conns | req/s | spread | p50 ms | p99 ms | p99 spread | errors "
    "| unanswered | > 2 s | DB busy/open | RSS MB | notes |"
)
OPERATIONS_HEADER = (
    "| configuration | conns | operation | req/s | timed answers | non-2xx | empty pages "
    "| p50 ms | p99 ms |"
)
READING = """\
How to read the tables: **req/s** counts answers in the measured window only (after the
warm-up, which runs on the same connections). **p50/p99** are real per-request latencies: the
wrk script stamps each request when it is sent and matches the answer by the id it carries (in
the router scenario: the id, the list page's offset or the POSTed email), so neither wrk's
coordinated-omission correction nor starved connections hide in them. **errors** are socket
errors, answers slower than the 10 s timeout and non-2xx answers. **unanswered** counts
connections that got no answer at all in the measured window. **> 2 s** is the share of
answers that took longer than 2 s. **DB busy/open** are the peak numbers of non-idle and of all
connections to the benchmark database (sampled every 0.25 s), **RSS** the peak resident memory
of the server's whole process tree. Figures are medians of the rounds; spreads are min-max over
the rounds."""


def number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def spread(low: float | None, high: float | None, digits: int = 0) -> str:
    return "-" if low is None or high is None else f"{low:,.{digits}f}-{high:,.{digits}f}"


def notes(summary: Summary) -> str:
    found = []
    if summary.served_nothing:
        found.append(
            f"**{summary.statuses.count('deadlock/served nothing')}/{summary.rounds} "
            "rounds: deadlock/served nothing**"
        )
    if summary.failed:
        found.append(
            "**failed**: " + "; ".join(detail.splitlines()[0] for detail in summary.details)
        )
    if summary.impl_share and summary.configuration != "pgbench":
        found.append(", ".join(f"{impl} {share:.0%}" for impl, share in summary.impl_share.items()))
    if summary.background_rps is not None:
        load = f"{summary.background_rps:,.0f} req/s"
        found.append(f"legacy GET /slow at {BACKGROUND_CONNECTIONS} conns: {load}")
    if summary.configuration == "pgbench":
        found.append("database connections, not HTTP")
    return "; ".join(found)


def row(summary: Summary) -> str:
    cells = [
        f"`{summary.configuration}`",
        str(summary.connections),
        number(summary.rps),
        spread(summary.rps_min, summary.rps_max),
        number(summary.p50_ms, 1),
        number(summary.p99_ms, 1),
        spread(summary.p99_min, summary.p99_max, 1),
        number(summary.errors),
        number(summary.unanswered),
        "-" if summary.slow_share is None else f"{summary.slow_share:.1%}",
        f"{number(summary.db_busy)}/{number(summary.db_open)}",
        number(summary.peak_rss_mb),
        notes(summary),
    ]
    return "| " + " | ".join(cells) + " |"


def operation_rows(summary: Summary) -> list[str]:
    rows = []
    for name, operation in summary.operations.items():
        cells = [
            f"`{summary.configuration}`",
            str(summary.connections),
            name,
            number(operation.rps),
            number(operation.answers),
            number(operation.non2xx),
            number(operation.empty_pages),
            number(operation.p50_ms, 1),
            number(operation.p99_ms, 1),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def operations_table(found: list[Summary]) -> list[str]:
    """Per-operation medians of the configurations that mix operations; none if none does."""
    mixed = [summary for summary in found if len(summary.operations) > 1]
    if not mixed:
        return []
    lines = ["Per operation, in the mixed workloads:", "", OPERATIONS_HEADER, "|" + "---|" * 9]
    for summary in mixed:
        lines += operation_rows(summary)
    return [*lines, ""]


def scenario_section(name: str, summaries: Summaries) -> list[str]:
    scenario = SCENARIOS[name]
    lines = [f"## {scenario.title}", "", scenario.question, ""]
    for config in scenario.configurations:
        lines.append(f"- `{config}`: {CONFIGURATIONS[config].label}")
    lines += ["", HEADER, "|" + "---|" * 13]
    order = {config: index for index, config in enumerate(scenario.configurations)}
    found = [summary for (config, _), summary in summaries.items() if config in order]
    found.sort(key=lambda summary: (summary.connections, order[summary.configuration]))
    return [*lines, *(row(summary) for summary in found), "", *operations_table(found)]


def targets_section(verdicts: list[Verdict]) -> list[str]:
    lines = ["## Targets", "", "| target | conns | measured | verdict |", "|---|---|---|---|"]
    for verdict in verdicts:
        label = verdict.label if verdict.passed is None else f"**{verdict.label}**"
        lines.append(f"| {verdict.target} | {verdict.connections} | {verdict.measured} | {label} |")
    return [*lines, ""]


def environment_section(meta: dict[str, Any]) -> list[str]:
    machine = meta["machine"]
    lines = [
        "## Environment",
        "",
        f"- date: {meta['date']}",
        f"- command: `{meta['command']}`",
        f"- machine: {machine['cores']} cores ({machine['usable_cores']} usable), "
        f"{machine['processor']}, {machine['platform']}",
        f"- pinning: {meta['pinning']}",
        f"- Python {machine['python']} ({machine['implementation']})",
        f"- PostgreSQL {meta['postgresql']['version']} ({meta['postgresql']['where']}, "
        f"max_connections {meta['postgresql']['max_connections']}), "
        f"{meta['users']:,} users seeded",
        f"- load: {meta['wrk']}, {meta['rounds']} interleaved rounds, {meta['warmup']} s warm-up "
        f"+ {meta['duration']} s measured, 10 s timeout, open-file limit {meta['open_files']}",
        "",
        "<details><summary>Installed packages</summary>",
        "",
        "| package | version |",
        "|---|---|",
    ]
    lines += [f"| {name} | {version} |" for name, version in meta["packages"].items()]
    return [*lines, "", "</details>", ""]


def kept_notes(path: Path) -> str:
    if path.exists():
        text = path.read_text()
        if NOTES_MARKER in text:
            return text[text.index(NOTES_MARKER) :]
    return NOTES_MARKER + "\n"


def write_markdown(
    path: Path, meta: dict[str, Any], summaries: Summaries, verdicts: list[Verdict]
) -> None:
    lines = [
        "# Benchmarks",
        "",
        f"One command measured every figure on this page: `{meta['command']}` ({meta['date']}).",
        "",
        READING,
        "",
        *targets_section(verdicts),
        "![The article's three-way table beside the figures measured here](benchmarks.png)",
        "",
    ]
    for name in meta["scenarios"]:
        lines += scenario_section(name, summaries)
    lines += environment_section(meta)
    path.write_text("\n".join(lines) + "\n" + kept_notes(path))


def write_json(
    path: Path,
    meta: dict[str, Any],
    runs: list[RunResult],
    summaries: Summaries,
    verdicts: list[Verdict],
) -> None:
    document = {
        "meta": meta,
        "runs": [run.as_dict() for run in runs],
        "summaries": [asdict(summary) for summary in summaries.values()],
        "targets": [{**asdict(verdict), "verdict": verdict.label} for verdict in verdicts],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
