"""The `gateway` command line: serve an app, install its tables, move routes, report, migrate.

Every command that works on an app names it the same way: `--app module:attribute`,
else `GATEWAY_APP`, else `app` under `[tool.gateway]` in the working directory's
pyproject.toml. The module is imported from the working directory, as uvicorn
does; importing it builds the app but starts nothing, so reading an app's
routes never starts its database.
"""

from __future__ import annotations

import typer

from gateway.cli import db, migrate, parity, report, rollout, routes, serve

app = typer.Typer(
    help="Serve a FastAPI app through the gateway and move its routes from sync to async.",
    no_args_is_help=True,
)
app.command()(serve.serve)
app.command()(report.report)
app.command()(parity.parity)
app.add_typer(db.app, name="db")
app.add_typer(routes.app, name="routes")
app.add_typer(rollout.app, name="rollout")
app.add_typer(migrate.app, name="migrate")


def main() -> None:
    app()
