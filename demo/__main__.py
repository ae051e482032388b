"""`python -m demo`: the demo's own schema and data, on GATEWAY_DATABASE_URL."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from demo.database import foreign_tables, is_pristine, upgrade
from demo.settings import DemoSettings
from gateway import load_settings
from gateway.database.engines import sync_url
from shared_models.seed import DemoSize, seed

cli = typer.Typer(help="The demo shop's schema and data.", no_args_is_help=True)


def configured_url() -> str:
    url = load_settings(DemoSettings).database_url
    if url is None:
        typer.secho("set GATEWAY_DATABASE_URL to the demo's database", fg="red", err=True)
        raise typer.Exit(2)
    return url


@cli.command("upgrade")
def upgrade_command() -> None:
    """Apply the demo's migrations (its own tables; `gateway db upgrade` does the gateway's)."""
    upgrade(configured_url())
    typer.echo("demo schema at head")


@cli.command("seed")
def seed_command(
    users: Annotated[int, typer.Option(min=0)] = 100,
    items: Annotated[int, typer.Option(min=0)] = 50,
    orders: Annotated[int, typer.Option(min=0)] = 200,
    documents: Annotated[int, typer.Option(min=0)] = 200,
    replace: Annotated[bool, typer.Option(help="empty the demo tables first")] = False,
) -> None:
    """Load deterministic demo data (e.g. --users 10000 for benchmarks)."""
    size = DemoSize(users=users, items=items, orders=orders, documents=documents)
    engine = create_engine(sync_url(configured_url()), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            others = foreign_tables(connection)
            pristine = is_pristine(connection)
        if others:
            typer.secho(
                f"the database holds other tables ({', '.join(sorted(others))}): not seeding",
                fg="red",
                err=True,
            )
            raise typer.Exit(1)
        if not replace and not pristine:
            typer.secho("the database already has data: use --replace", fg="yellow", err=True)
            raise typer.Exit(1)
        counts = seed(engine, size, replace=replace)
    finally:
        engine.dispose()
    typer.echo("seeded " + ", ".join(f"{n} {table}" for table, n in counts.items()))


cli()
