"""`gateway migrate`: the sync-only idioms of an app's legacy routes, and drafts of their twins."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import httpx
import typer

from gateway.cli.apps import AppOption, LoadedApp, fail, load_app, settings_or_exit
from gateway.metrics import advisor

if TYPE_CHECKING:
    from gateway.migrate.draft import Draft
    from gateway.migrate.inventory import TwinModules

# gateway.migrate (and libcst) is imported by these commands only: every other command,
# `gateway serve` included, starts without it.

app = typer.Typer(
    help="Scan legacy routes for sync-only idioms, and draft their async twins.",
    no_args_is_help=True,
)


@app.command()
def scan(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="only the legacy endpoints defined under these files or folders"),
    ] = None,
    app_option: AppOption = None,
    url: Annotated[
        str | None, typer.Option(help="a running gateway, for the advisor's ranking")
    ] = None,
    prometheus: Annotated[
        str | None, typer.Option(help="a Prometheus server, for the advisor's ranking")
    ] = None,
    window: Annotated[
        float, typer.Option(min=0.1, help="seconds of traffic the advisor looks at")
    ] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="print the scan as JSON")] = False,
) -> None:
    """Every legacy endpoint: its twin and mode, and each sync-only idiom with its async form.

    Static: the app is imported to read its routes, and no endpoint ever runs.
    Modes come from the database when it answers; routers are ranked by how
    much of them the draft translates, beside the advisor's rank when --url or
    --prometheus gives it metrics.
    """
    from gateway.migrate.inventory import route_modes
    from gateway.migrate.report import lines
    from gateway.migrate.scan import scan_app

    loaded = load_app(app_option)
    source = prometheus or url
    ranking = advisor_ranking(loaded, url, prometheus, window) if source else None
    result = scan_app(
        loaded.app,
        loaded.spec,
        root=Path.cwd(),
        paths=paths or (),
        modes=route_modes(loaded.app),
        ranking=ranking,
        metrics=source,
    )
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    for line in lines(result):
        typer.echo(line)


def advisor_ranking(
    loaded: LoadedApp, url: str | None, prometheus: str | None, window: float
) -> advisor.Report:
    """The advisor's report from Prometheus or a running gateway; exit if neither answers."""
    try:
        if prometheus:
            series = advisor.from_prometheus(prometheus, window)
        else:
            series = advisor.from_gateway(url or "", window)
    except httpx.HTTPError as error:
        fail(f"cannot read metrics from {prometheus or url}: {error}", code=1)
    known = loaded.gateway.table.implementations_by_key()
    return advisor.build_report(series, window, known_routes=known)


@app.command()
def draft(
    path: Annotated[Path, typer.Argument(help="the legacy module, e.g. app/api/routes/items.py")],
    out: Annotated[
        Path | None,
        typer.Option(
            help="where to write the twin (default: where the app keeps its twins, if it has any)"
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
    app_option: AppOption = None,
) -> None:
    """Write a draft async twin of a legacy module, and list what it leaves to you.

    The draft has the module's function names, paths, schemas and order, so it
    diffs cleanly against the legacy module. Each spot it could not translate
    safely keeps the legacy code under a `# MIGRATE:` comment saying why.
    """
    from gateway.migrate.draft import draft_module, module_at
    from gateway.migrate.modules import new_context

    if not path.is_file():
        fail(f"{path}: no such file")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    twins = _twins(app_option)
    try:
        module = module_at(path)
    except ImportError as error:
        fail(f"cannot import {path}: {error}")
    target = out or (twins.path(module.__name__) if twins else None)
    if target is None:
        fail(f"{path}: name the file to write with --out (the app has no twins to learn where)")
    if target.exists() and not force:
        fail(f"{target} exists: give --force to overwrite it", code=1)
    written = draft_module(module, new_context(Path.cwd(), twins.twin_of if twins else None))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(written.code)
    typer.echo(f"wrote {target}, the draft async twin of {path}")
    _list_marks(written, target)


def _list_marks(written: Draft, target: Path) -> None:
    if written.marks:
        typer.echo(f"{len(written.marks)} spot(s) to finish by hand:")
        for line, why in written.marks:
            typer.echo(f"  {target}:{line}: {why}")
    else:
        typer.echo("nothing left to finish by hand")
    typer.echo(
        "next: review it (its docstring is still the legacy module's), serve it as an async "
        "router, then check it with `gateway parity`"
    )


def _twins(app_option: str | None) -> TwinModules | None:
    """Where the app keeps its twins, when an app is named (--app, GATEWAY_APP, pyproject)."""
    from gateway.migrate.inventory import twin_modules

    if app_option is None and not settings_or_exit().app:
        return None
    loaded: LoadedApp = load_app(app_option)
    return twin_modules(loaded.app)
