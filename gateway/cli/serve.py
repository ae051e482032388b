"""`gateway serve`: run an app through uvicorn with the gateway's loop, workers and settings."""

from __future__ import annotations

import math
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from sqlalchemy import create_engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from gateway.cli.apps import AppOption, database_url, export_database_url, fail, load_app
from gateway.database.engines import sync_url
from gateway.ops.logs import configure_server_logging
from gateway.ops.migrations import SchemaError, check_schema
from gateway.settings import ENV_PREFIX, Settings


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


def refuse_unusable_schema(url: str) -> None:
    """Stop here, in one line, if the gateway's tables are missing or too old."""
    engine = create_engine(sync_url(url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            check_schema(connection)
    except SchemaError as error:
        fail(str(error))
    except SQLAlchemyError:
        pass  # the database does not answer yet: the gateway starts anyway, /readyz says so
    finally:
        engine.dispose()


def serve(
    app_option: AppOption = None,
    host: Annotated[
        str | None, typer.Option(help="address to listen on [default: GATEWAY_HOST, 127.0.0.1]")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="port to listen on [default: GATEWAY_PORT, 8000]")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="worker processes [default: GATEWAY_WORKERS, 1]"),
    ] = None,
) -> None:
    """Serve the app under uvicorn (uvloop draining its listen queue, httptools with limits)."""
    import uvicorn

    loaded = load_app(app_option)
    spec, gateway_app = loaded.spec, loaded.gateway
    settings = gateway_app.settings
    workers = workers or settings.workers
    configure_server_logging(settings.log_level, settings.log_format, settings.instance_name)
    exit_on_sigterm()
    with database_url(settings, gateway_app) as url, shared_metrics(settings, workers):
        refuse_unusable_schema(url)
        export_database_url(url, gateway_app)
        uvicorn.run(
            spec,
            host=host or settings.host,
            port=settings.port if port is None else port,
            workers=workers,
            loop="gateway.ops.serving:new_event_loop",
            http="gateway.ops.http_protocol:GatewayHttpProtocol",
            log_level=settings.log_level.lower(),
            log_config=None,  # each worker configures its logging as it builds the app
            timeout_graceful_shutdown=math.ceil(settings.shutdown_drain_seconds),
            # uvicorn's 5 s replaces a worker still importing the app on a busy machine,
            # again and again: the replacement is as slow
            timeout_worker_healthcheck=settings.worker_healthcheck_seconds,
        )
