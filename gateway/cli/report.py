"""`gateway report`: which route to move to async next, from a running gateway or Prometheus."""

from __future__ import annotations

import json
from typing import Annotated

import httpx
import typer

from gateway.cli.apps import AppOption, load_app
from gateway.metrics import advisor


def report(
    app_option: AppOption = None,
    url: Annotated[str, typer.Option(help="a running gateway")] = "http://127.0.0.1:8000",
    prometheus: Annotated[
        str | None,
        typer.Option(
            help="a Prometheus server to query instead of the gateway: every instance it "
            "scrapes, summed by route"
        ),
    ] = None,
    window: Annotated[
        float | None,
        typer.Option(
            min=0.1, help="seconds of traffic to look at [10 from a gateway, 60 from Prometheus]"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Rank the routes by what moving them to async would free, and show migration progress.

    With --app, every route of the app is listed, the idle ones too.
    """
    from rich.console import Console
    from rich.table import Table

    known = None
    if app_option is not None:
        gateway_app = load_app(app_option).gateway
        known = gateway_app.table.implementations_by_key()
    window = window or (60.0 if prometheus else 10.0)
    try:
        series = (
            advisor.from_prometheus(prometheus, window)
            if prometheus
            else advisor.from_gateway(url, window)
        )
    except httpx.HTTPError as error:
        typer.secho(f"cannot read metrics: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    result = advisor.build_report(series, window, known_routes=known)
    if not any(route.requests_per_second for route in result.routes):
        typer.secho(
            f"no requests in the last {window:g} s (from Prometheus, the window must span "
            "at least two scrapes)",
            fg=typer.colors.YELLOW,
            err=True,
        )
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    table = Table(title=f"Routes over {window:g} s, next to move first")
    for header in advisor.HEADERS:
        table.add_column(header, no_wrap=header == "route")  # a key is never cut in two
    for row in advisor.rows(result):
        table.add_row(*row)
    console = Console(width=max(160, Console().width))
    console.print(table)
    share = result.async_request_share
    console.print(
        f"Migration: {result.routes_with_async}/{result.routes_total} routes have an async "
        f"implementation; async served {'-' if share is None else f'{share:.0%}'} of requests."
    )
