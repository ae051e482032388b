"""`gateway routes`: every route of the app and its mode; move one, on every instance."""

from __future__ import annotations

import asyncio
import getpass
import os
from collections.abc import Coroutine
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import httpx
import typer
from pydantic import ValidationError

from gateway.cli.apps import AppOption, database_url, fail, load_app
from gateway.database.engines import create_async_engine_for
from gateway.errors import GatewayError
from gateway.lifespan import GatewayApp
from gateway.ops.admin import ModeChange
from gateway.rollout.store import kill_switch as rollout_kill_switch
from gateway.routing.fleet import fleet_status, lagging_on
from gateway.routing.keys import normalized
from gateway.routing.table import RouteTable

app = typer.Typer(help="Route modes: list them, or move a route.", no_args_is_help=True)

UrlOption = Annotated[
    str | None,
    typer.Option(help="a running gateway's base URL; without it, work on the database directly"),
]


def admin_client(url: str) -> httpx.Client:
    token = os.environ.get("GATEWAY_ADMIN_TOKEN", "")
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=10)


def call_admin(url: str, method: str, path: str, **request: Any) -> httpx.Response:
    """One request to a running gateway's admin API; exit in one line if it cannot be reached."""
    try:
        with admin_client(url) as client:
            return client.request(method, path, **request)
    except httpx.HTTPError as error:
        fail(f"cannot reach the gateway at {url}: {error}", code=1)


def fail_with(response: httpx.Response) -> NoReturn:
    try:
        body = response.json()
        message = body["error"]["message"] if "error" in body else body["detail"]
    except (ValueError, KeyError, TypeError):
        message = response.text
    fail(f"{response.status_code}: {message}", code=1)


def readable(error: ValidationError) -> str:
    """A refused mode change in one line: what is wrong with which option."""
    problems = []
    for detail in error.errors():
        where = ".".join(str(part) for part in detail["loc"])
        message = str(detail["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


def print_routes(rows: list[dict[str, Any]], fleet: dict[str, Any] | None) -> None:
    width = max([40, *(len(row["route"]) + 1 for row in rows)])
    typer.echo(
        f"{'route':<{width}} {'impls':<13} {'mode':<7} {'percent':>7}  primary  changed by"
        "       lagging workers"
    )
    for row in rows:
        impls = "+".join(row["implementations"])
        lagging = "-" if fleet is None else ", ".join(lagging_on(fleet, row["version"])) or "none"
        typer.echo(
            f"{row['route']:<{width}} {impls:<13} {row['mode']:<7} {row['percent']:>7}  "
            f"{row['primary']:<8} {row.get('changed_by') or '-':<16} {lagging}"
        )
    typer.echo(describe_fleet_line(fleet))


def describe_fleet_line(fleet: dict[str, Any] | None) -> str:
    """One line: which table version the fleet should hold, and who does not."""
    if fleet is None:
        return "workers: unknown (the database did not answer)"
    live = [worker for worker in fleet["workers"] if not worker["stale"]]
    line = f"route table version {fleet['version']}: {len(live)} live workers"
    if fleet["lagging"]:
        held = {worker["worker"]: worker["version"] for worker in live}
        laggards = ", ".join(f"{name} (holds {held[name]})" for name in fleet["lagging"])
        line += f", {len(fleet['lagging'])} lagging: {laggards}"
    else:
        line += ", all current"
    if fleet["stale"]:
        line += f"; not heard from lately: {', '.join(fleet['stale'])}"
    return line


def on_database(gateway_app: GatewayApp, work: Any) -> Any:
    """Run `work(table)` with the app's route table attached to its database, then let go."""
    settings = gateway_app.settings
    table = gateway_app.table
    with database_url(settings, gateway_app) as url:
        table.engine = create_async_engine_for(settings, url)

        async def run() -> Any:
            try:
                return await work(table)
            finally:
                if table.engine is not None:
                    await table.engine.dispose()
                table.engine = None

        return asyncio.run(run())


@app.command("list")
def list_routes(app_option: AppOption = None, url: UrlOption = None) -> None:
    """Every route of the app, its implementations and its mode."""
    if url is not None:
        response = call_admin(url, "GET", "/admin/routes")
        if response.status_code != 200:
            fail_with(response)
        fleet = call_admin(url, "GET", "/admin/fleet")
        print_routes(response.json(), fleet.json() if fleet.status_code == 200 else None)
        return
    gateway_app = load_app(app_option).gateway
    reload_seconds = gateway_app.settings.route_reload_seconds

    async def describe(table: RouteTable) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        await table.reload()
        return table.describe(), await fleet_status(table.database, reload_seconds)

    print_routes(*on_database(gateway_app, describe))


@app.command("set")
def set_route(
    key: Annotated[str, typer.Argument(help='route key, e.g. "GET /users/{user_id}"')],
    mode: Annotated[str, typer.Argument(help="legacy, async, canary or shadow")],
    app_option: AppOption = None,
    percent: Annotated[
        int | None, typer.Option(min=0, max=100, help="canary: the share for async, in %")
    ] = None,
    primary: Annotated[
        str | None, typer.Option(help="shadow: which answers, legacy (default) or async")
    ] = None,
    sample: Annotated[
        int | None, typer.Option(min=1, max=100, help="shadow: the share run twice, in %")
    ] = None,
    calibrate: Annotated[
        bool,
        typer.Option(
            "--calibrate", help="shadow: run the primary twice, to learn the route's noise"
        ),
    ] = False,
    reason: Annotated[str, typer.Option(help="why, recorded with the change")] = "",
    url: UrlOption = None,
) -> None:
    """Move one route to another mode, on every instance."""
    key = normalized(key)
    options = {
        "percent": percent,
        "primary": primary,
        "sample": sample,
        "calibrate": calibrate or None,
    }
    body: dict[str, Any] = {"mode": mode, "reason": reason}
    body.update({name: value for name, value in options.items() if value is not None})
    try:
        wanted = ModeChange.model_validate(body).route_mode()
    except ValidationError as error:
        fail(readable(error))
    if url is not None:
        response = call_admin(url, "PUT", f"/admin/routes/{quote(key, safe='')}", json=body)
        if response.status_code != 200:
            fail_with(response)
        typer.echo(f"{key}: {mode}")
        return
    gateway_app = load_app(app_option).gateway
    if key not in gateway_app.table.routes:
        known = "\n".join(f"  {known}" for known in sorted(gateway_app.table.routes))
        fail(f"the app has no route {key!r}; its routes:\n{known}", code=1)
    actor = f"cli:{getpass.getuser()}"

    def change(table: RouteTable) -> Coroutine[Any, Any, dict[str, Any]]:
        return table.change(key, wanted, actor=actor, reason=reason)

    try:
        on_database(gateway_app, change)
    except GatewayError as error:
        fail(f"{error.status_code}: {error.message}", code=1)
    typer.echo(f"{key}: {mode}")


@app.command("kill")
def kill_switch(
    reason: Annotated[str, typer.Option(help="why, recorded with every change")],
    prefix: Annotated[
        str | None, typer.Option(help="only routes under this path, e.g. a router's /users")
    ] = None,
    app_option: AppOption = None,
    url: UrlOption = None,
) -> None:
    """Move every route (under --prefix) to legacy, on every instance, in one change."""
    if prefix is not None and not prefix.startswith("/"):
        fail(f"--prefix must be a path starting with /, got {prefix!r}")
    if url is not None:
        body = {"reason": reason, "path_prefix": prefix}
        response = call_admin(url, "POST", "/admin/kill-switch", json=body)
        if response.status_code != 200:
            fail_with(response)
        print_kill(response.json())
        return
    gateway_app = load_app(app_option).gateway
    actor = f"cli:{getpass.getuser()}"

    def kill(table: RouteTable) -> Coroutine[Any, Any, dict[str, Any]]:
        return rollout_kill_switch(table, prefix, actor=actor, reason=reason)

    print_kill(on_database(gateway_app, kill))


def print_kill(result: dict[str, Any]) -> None:
    typer.echo(f"moved to legacy: {', '.join(result['moved']) or 'none'}")
    if result["already_legacy"]:
        typer.echo(f"already legacy: {len(result['already_legacy'])} routes")
    if result["without_legacy"]:
        typer.echo(
            f"no legacy implementation, left as they are: {', '.join(result['without_legacy'])}"
        )
    if result.get("aborted_plans"):
        typer.echo(f"rollout plans aborted: {', '.join(map(str, result['aborted_plans']))}")
