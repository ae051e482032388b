"""The `gateway` command: serve the app, migrate the schema, seed demo data."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import httpx
import typer

from gateway.ops import schema
from gateway.ops.embedded import embedded_postgres
from gateway.ops.logs import configure_logging
from gateway.routing.modes import RouteMode
from gateway.routing.table import RouteTable
from gateway.settings import ENV_PREFIX, InvalidSettings, Settings, load_settings

app = typer.Typer(
    help="Serve legacy sync and migrated async routes from one FastAPI app.", no_args_is_help=True
)
db_app = typer.Typer(help="Schema and demo data.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def settings_or_exit() -> Settings:
    try:
        settings = load_settings()
    except InvalidSettings as error:
        typer.secho(str(error), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level)
    return settings


@contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """The configured URL, or an embedded server's, migrated, for the duration of the block."""
    if settings.database_url is not None:
        yield settings.database_url
        return
    with embedded_postgres(settings.data_dir) as url:
        schema.upgrade(url)
        yield url


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so an embedded server is stopped on the way out.

    uvicorn re-raises the signal that stopped it once it has shut down; without
    a handler the process would die there, before any cleanup runs.
    """

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


@contextmanager
def shared_metrics(settings: Settings, workers: int) -> Iterator[None]:
    """With several workers, one emptied directory where each writes its metrics for /metrics."""
    if workers == 1 and settings.metrics_dir is None:
        yield
        return
    directory = settings.metrics_dir or Path(tempfile.mkdtemp(prefix="gateway-metrics-"))
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[f"{ENV_PREFIX}METRICS_DIR"] = str(directory)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)  # read by prometheus-client itself
    try:
        yield
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="worker processes")] = 1,
) -> None:
    """Run the gateway under uvicorn (uvloop draining its listen queue, httptools)."""
    import uvicorn

    settings = settings_or_exit()
    exit_on_sigterm()
    with database_url(settings) as url, shared_metrics(settings, workers):
        if settings.database_url is None and settings.seed_demo_data:
            schema.seed_if_empty(url)
        # Workers are separate processes: they find the database through the environment.
        os.environ[f"{ENV_PREFIX}DATABASE_URL"] = url
        uvicorn.run(
            "gateway.app:app",
            host=host,
            port=port,
            workers=workers,
            loop="gateway.ops.serving:new_event_loop",
            http="httptools",
            log_level=settings.log_level.lower(),
        )


@db_app.command()
def upgrade(revision: Annotated[str, typer.Argument(help="target revision")] = "head") -> None:
    """Apply the migrations (to the embedded server when no URL is set)."""
    settings = settings_or_exit()
    with database_url(settings) as url:
        schema.upgrade(url, revision)
    typer.echo(f"schema at {revision}")


@db_app.command()
def seed(
    users: Annotated[int, typer.Option(min=0)] = 100,
    items: Annotated[int, typer.Option(min=0)] = 50,
    orders: Annotated[int, typer.Option(min=0)] = 200,
    documents: Annotated[int, typer.Option(min=0)] = 200,
    replace: Annotated[bool, typer.Option(help="empty the demo tables first")] = False,
) -> None:
    """Load deterministic demo data (e.g. --users 10000 for benchmarks)."""
    from sqlalchemy import create_engine

    from gateway.database.engines import sync_url
    from shared_models.seed import DemoSize
    from shared_models.seed import seed as load

    settings = settings_or_exit()
    size = DemoSize(users=users, items=items, orders=orders, documents=documents)
    with database_url(settings) as url:
        engine = create_engine(sync_url(url))
        try:
            if not replace and not schema.is_empty(engine):
                typer.secho("the database already has data: use --replace", fg="yellow", err=True)
                raise typer.Exit(1)
            counts = load(engine, size, replace=replace)
        finally:
            engine.dispose()
    typer.echo("seeded " + ", ".join(f"{n} {table}" for table, n in counts.items()))


routes_app = typer.Typer(help="Route modes: list them, or move a route.", no_args_is_help=True)
app.add_typer(routes_app, name="routes")

UrlOption = Annotated[
    str | None,
    typer.Option(help="a running gateway's base URL; without it, talk to the database directly"),
]


def admin_client(url: str) -> httpx.Client:
    token = os.environ.get("GATEWAY_ADMIN_TOKEN", "")
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=10)


def fail_with(response: httpx.Response) -> NoReturn:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text
    typer.secho(f"{response.status_code}: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@contextmanager
def offline_table(settings: Settings, url: str) -> Iterator[RouteTable]:
    """The configured app's route table on its database, to work without a running gateway."""
    from gateway.database.engines import create_async_engine_for
    from gateway.factory import create_app

    app = create_app(settings.model_copy(update={"database_url": url}))
    table: RouteTable = app.state.route_table
    table.engine = create_async_engine_for(settings, url)
    yield table


def print_routes(rows: list[dict[str, Any]]) -> None:
    typer.echo(f"{'route':<40} {'impls':<13} {'mode':<7} {'percent':>7}  primary  changed by")
    for row in rows:
        impls = "+".join(row["implementations"])
        typer.echo(
            f"{row['route']:<40} {impls:<13} {row['mode']:<7} {row['percent']:>7}  "
            f"{row['primary']:<8} {row.get('changed_by') or '-'}"
        )


@routes_app.command("list")
def list_routes(url: UrlOption = None) -> None:
    """Every route, its implementations and its mode."""
    if url is not None:
        with admin_client(url) as client:
            response = client.get("/admin/routes")
        if response.status_code != 200:
            fail_with(response)
        print_routes(response.json())
        return
    settings = settings_or_exit()
    with database_url(settings) as db_url, offline_table(settings, db_url) as table:
        assert table.engine is not None
        asyncio.run(_reload_and_dispose(table))
        print_routes(table.describe())


async def _reload_and_dispose(table: RouteTable) -> None:
    assert table.engine is not None
    try:
        await table.reload()
    finally:
        await table.engine.dispose()


async def _change_and_dispose(table: RouteTable, key: str, wanted: RouteMode, reason: str) -> None:
    assert table.engine is not None
    try:
        await table.change(key, wanted, actor=f"cli:{getpass.getuser()}", reason=reason)
    finally:
        await table.engine.dispose()


@routes_app.command("set")
def set_route(
    key: Annotated[str, typer.Argument(help='route key, e.g. "GET /users/{user_id}"')],
    mode: Annotated[str, typer.Argument(help="legacy, async, canary or shadow")],
    percent: Annotated[int, typer.Option(min=0, max=100, help="canary share to async")] = 0,
    primary: Annotated[str, typer.Option(help="shadow: legacy or async answers")] = "legacy",
    reason: Annotated[str, typer.Option(help="why, recorded with the change")] = "",
    url: UrlOption = None,
) -> None:
    """Move one route to another mode, on every instance."""
    body = {"mode": mode, "percent": percent, "primary": primary, "reason": reason}
    if url is not None:
        with admin_client(url) as client:
            response = client.put(f"/admin/routes/{quote(key, safe='')}", json=body)
        if response.status_code != 200:
            fail_with(response)
        typer.echo(f"{key}: {mode}")
        return
    from gateway.errors import GatewayError
    from gateway.ops.admin import ModeChange

    try:
        change = ModeChange.model_validate(body)
    except ValueError as error:
        typer.secho(str(error), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    settings = settings_or_exit()
    with database_url(settings) as db_url, offline_table(settings, db_url) as table:
        if key not in table.routes:
            typer.secho(f"no route {key!r}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1)
        wanted = RouteMode(
            mode=change.mode,
            percent=change.percent if change.mode == "canary" else 0,
            primary=change.primary if change.mode == "shadow" else "legacy",
        )
        try:
            asyncio.run(_change_and_dispose(table, key, wanted, reason))
        except GatewayError as error:
            typer.secho(f"{error.status_code}: {error.message}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
    typer.echo(f"{key}: {mode}")


@app.command()
def report(
    url: Annotated[str, typer.Option(help="a running gateway")] = "http://127.0.0.1:8000",
    prometheus: Annotated[
        str | None, typer.Option(help="a Prometheus server to query instead of the gateway")
    ] = None,
    window: Annotated[
        float | None,
        typer.Option(
            min=0.1, help="seconds of traffic to look at [10 from a gateway, 60 from Prometheus]"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Rank the routes by what moving them to async would free, and show migration progress."""
    from rich.console import Console
    from rich.table import Table

    from gateway.metrics import advisor

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
    result = advisor.build_report(series, window)
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
    table = Table(*advisor.HEADERS, title=f"Routes over {window:g} s, next to move first")
    for row in advisor.rows(result):
        table.add_row(*row)
    console = Console(width=max(160, Console().width))
    console.print(table)
    share = result.async_request_share
    console.print(
        f"Migration: {result.routes_with_async}/{result.routes_total} routes have an async "
        f"implementation; async served {'-' if share is None else f'{share:.0%}'} of requests."
    )


def main() -> None:
    app()
