"""`gateway parity`: send requests to both implementations of every twin; show each difference."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.apps import AppOption, database_url, fail, load_app
from gateway.testing import ParityRequest, check_parity


def read_requests(path: Path) -> list[ParityRequest]:
    """A JSON list of {"method", "path", "params"?, "json"?, "headers"?}."""
    try:
        entries = json.loads(path.read_text())
        return [ParityRequest.from_dict(entry) for entry in entries]
    except (OSError, ValueError, KeyError, TypeError) as error:
        fail(f"{path}: not a JSON list of requests ({type(error).__name__}: {error})")


def parity(
    app_option: AppOption = None,
    requests: Annotated[
        Path | None,
        typer.Option(help="JSON list of requests; default: made from the OpenAPI examples"),
    ] = None,
    ignore: Annotated[
        list[str] | None, typer.Option(help="a response field left out of the comparison")
    ] = None,
    allow_uncovered: Annotated[
        bool, typer.Option(help="pass even when no request reaches some twins")
    ] = False,
) -> None:
    """Check that both implementations of every twin answer alike, writes included.

    Exits 1 when an answer differs, or when a twin got no request (unless
    --allow-uncovered). Each run works on a copy of the database (or in
    rolled-back transactions): use a database nothing else writes to meanwhile.
    """
    loaded = load_app(app_option)
    chosen = read_requests(requests) if requests is not None else None
    with database_url(loaded.gateway.settings, loaded.gateway) as url:
        report = asyncio.run(
            check_parity(loaded.app, chosen, database_url=url, ignore_fields=ignore or ())
        )
    typer.echo(report.describe())
    if not report.ok or (report.uncovered and not allow_uncovered):
        raise typer.Exit(1)
