"""`gateway db`: the gateway's own tables, beside the app's schema and never in it."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy import create_engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from gateway.cli.apps import AppOption, database_url, fail, settings_for
from gateway.database.engines import sync_url
from gateway.ops.migrations import VERSION_TABLE, SchemaError, check_schema, upgrade

app = typer.Typer(help="The gateway's own tables in the app's database.", no_args_is_help=True)


@app.command("upgrade")
def upgrade_command(
    app_option: AppOption = None,
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
) -> None:
    """Create or update the gateway's tables (its own history, in table gateway_schema_version)."""
    gateway_app, settings = settings_for(app_option)
    with database_url(settings, gateway_app) as url:
        upgrade(url, revision)
    typer.echo(f"gateway schema at {revision} (version table {VERSION_TABLE})")


@app.command("check")
def check_command(app_option: AppOption = None) -> None:
    """Say whether this gateway can serve the database's gateway schema (exit 1 if not)."""
    gateway_app, settings = settings_for(app_option)
    with database_url(settings, gateway_app) as url:
        engine = create_engine(sync_url(url), poolclass=NullPool)
        try:
            with engine.connect() as connection:
                status = check_schema(connection)
        except SchemaError as error:
            fail(str(error), code=1)
        except SQLAlchemyError as error:
            fail(f"the database does not answer: {type(error).__name__}", code=1)
        finally:
            engine.dispose()
    newer = " (newer than this code, compatible)" if status.newer_than_code else ""
    typer.echo(f"gateway schema at {status.revision}{newer}")
