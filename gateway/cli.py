"""The `gateway` command: serve the app, migrate the schema, seed demo data."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Annotated

import typer

from gateway import schema
from gateway.embedded import embedded_postgres
from gateway.logs import configure_logging
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


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="worker processes")] = 1,
) -> None:
    """Run the gateway under uvicorn (uvloop, httptools)."""
    import uvicorn

    settings = settings_or_exit()
    exit_on_sigterm()
    with database_url(settings) as url:
        if settings.database_url is None and settings.seed_demo_data:
            schema.seed_if_empty(url)
        # Workers are separate processes: they find the database through the environment.
        os.environ[f"{ENV_PREFIX}DATABASE_URL"] = url
        uvicorn.run(
            "gateway.app:app",
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
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

    from gateway.database import sync_url
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


def main() -> None:
    app()
