"""How a command finds the app it works on, its settings and its database."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, NoReturn

import typer
from fastapi import FastAPI

from gateway.errors import ConfigurationError
from gateway.factory import gateway_of
from gateway.lifespan import GatewayApp, MissingDatabaseUrl
from gateway.ops.embedded import embedded_postgres
from gateway.ops.logs import configure_logging
from gateway.ops.migrations import upgrade
from gateway.settings import ENV_PREFIX, Settings, load_settings

AppOption = Annotated[
    str | None,
    typer.Option(
        "--app",
        help="the app, as module:attribute (default: GATEWAY_APP, or [tool.gateway] app "
        "in pyproject.toml)",
        show_default=False,
    ),
]


def fail(message: str, code: int = 2) -> NoReturn:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def settings_or_exit() -> Settings:
    try:
        settings: Settings = load_settings()
    except ConfigurationError as error:
        fail(str(error))
    configure_logging(settings.log_level, settings.log_format, settings.instance_name)
    return settings


def app_spec(option: str | None) -> str:
    """The app's `module:attribute`, from the option or the settings; exit if none is named."""
    spec = option or settings_or_exit().app
    if not spec:
        fail(
            "name the app: --app module:attribute, or set GATEWAY_APP, or "
            '[tool.gateway] app = "module:attribute" in pyproject.toml'
        )
    if ":" not in spec:
        fail(f"--app {spec!r}: give it as module:attribute, e.g. myapp.main:app")
    return spec


@dataclass(frozen=True)
class LoadedApp:
    spec: str  # module:attribute
    app: FastAPI
    gateway: GatewayApp


def load_app(option: str | None) -> LoadedApp:
    """Import the named app (from the working directory, as uvicorn does), without starting it."""
    spec = app_spec(option)
    module_name, _, attribute = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        app = getattr(importlib.import_module(module_name), attribute)
        return LoadedApp(spec, app, gateway_of(app))
    except ConfigurationError as error:
        fail(f"{spec}: {error}")
    except (ImportError, AttributeError) as error:
        fail(f"cannot load {spec}: {error}")


def settings_for(option: str | None) -> tuple[GatewayApp | None, Settings]:
    """The app named by `option` (if any is named) and the settings to use for it."""
    if option is None and not settings_or_exit().app:
        return None, settings_or_exit()
    loaded = load_app(option)
    return loaded.gateway, loaded.gateway.settings


@contextmanager
def database_url(settings: Settings, gateway_app: GatewayApp | None = None) -> Iterator[str]:
    """The configured URL, or an embedded server's when the settings ask for one, meanwhile."""
    if settings.database_url is not None:
        yield settings.database_url
        return
    if not settings.embedded_database:
        fail(str(MissingDatabaseUrl()))
    try:
        with embedded_postgres(settings.data_dir) as url:
            if gateway_app is not None:
                gateway_app.prepare_embedded(url)
            else:
                upgrade(url)
            yield url
    except ConfigurationError as error:
        fail(str(error))


def export_database_url(url: str, gateway_app: GatewayApp) -> None:
    """Let this process's app and every worker it starts serve the database at `url`."""
    os.environ[f"{ENV_PREFIX}DATABASE_URL"] = url
    gateway_app.use_database_url(url)
