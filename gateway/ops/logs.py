"""Log lines of the gateway, its server and the app: text for a terminal, or JSON for a collector.

Both formats are one structlog `ProcessorFormatter` on stdlib logging, so the
`logging.getLogger(__name__)` calls everywhere stay as they are. A line
written while a request is served carries that request's id: the
`X-Request-ID` the request came with when it is a valid one, otherwise one
made for it, answered in the response's `X-Request-ID` header either way
(asgi-correlation-id's middleware, around the whole app). The id lives in a
context variable read when the line is formatted, so the lines of a legacy
endpoint's thread and of a shadow run the request started carry it too: both
run in a copy of the request's context. Lines outside requests have none.

- `configure_logging`: the gateway's own logger, in every process that builds an app.
- `configure_server_logging`: in `gateway serve`'s process and in each of its
  workers, every logger: the root (the app's lines, the libraries'), uvicorn's
  (its errors, its access log) and the gateway's, through the same formatter.
- `correlate_requests`: the request ids of an app.
"""

from __future__ import annotations

import logging
import logging.config
import os
import re
import secrets
import sys
from typing import Any, Literal, TextIO

import structlog
from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
from fastapi import FastAPI
from starlette.types import ASGIApp
from structlog.typing import EventDict, Processor, WrappedLogger

LogFormat = Literal["text", "json"]

GATEWAY_LOGGER = "gateway"
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
REQUEST_ID_HEADER = "X-Request-ID"
# What a client (or a proxy in front) may choose as a request id: short, and nothing a log
# line or a header would have to escape. Anything else is replaced by a new id.
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")
# Set by `gateway serve` for itself and its workers: their logging is the gateway's to configure.
SERVER_LOGGING = "GATEWAY_SERVER_LOGGING"


class GatewayHandler(logging.StreamHandler[TextIO]):
    """The handler the gateway installs, told apart from the others when it configures again."""


def new_request_id() -> str:
    """32 random hex digits, as the middleware's own uuid4().hex but without building a UUID."""
    return secrets.token_hex(16)


def valid_request_id(value: str) -> bool:
    return VALID_REQUEST_ID.fullmatch(value) is not None


def known_at_once(request_id: str) -> str:
    """Make the request's id current as soon as it is chosen.

    The middleware warns about a replaced client id before it sets the id;
    this way that warning carries the id too.
    """
    correlation_id.set(request_id)
    return request_id


def correlate_requests(app: FastAPI) -> None:
    """Give each HTTP request of `app` an id before anything else of the app runs.

    The middleware wraps the whole stack FastAPI builds, even its outermost
    error middleware: a 500 answered there, a 404 of the router, a 503 of a
    full threadpool and the admin API's answers all carry `X-Request-ID`, and
    the server's own lines about the request (access log, traceback) read it.
    """
    build = app.build_middleware_stack

    def build_with_request_ids() -> ASGIApp:
        return CorrelationIdMiddleware(
            build(),
            header_name=REQUEST_ID_HEADER,
            generator=new_request_id,
            validator=valid_request_id,
            transformer=known_at_once,
        )

    app.build_middleware_stack = build_with_request_ids  # type: ignore[method-assign]


def request_context(instance: str | None) -> Processor:
    """Adds the request id (null outside a request); with `instance`, the instance and the pid."""

    def add(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        request_id = correlation_id.get()
        if instance is None:
            if request_id is not None:
                event_dict["request_id"] = request_id
            return event_dict
        event_dict["request_id"] = request_id
        event_dict["instance"] = instance
        event_dict["pid"] = event_dict["_record"].process
        return event_dict

    return add


def access_fields(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """uvicorn's access line as fields too: client, method, path, http_version, status."""
    arguments = event_dict.pop("positional_args", None)
    record = event_dict["_record"]
    if (
        record.name == "uvicorn.access"
        and isinstance(arguments, tuple)
        and len(arguments) == len(ACCESS_FIELDS)
    ):
        event_dict.update(zip(ACCESS_FIELDS, arguments, strict=True))
    return event_dict


def formatter(log_format: LogFormat = "text", instance: str = "") -> logging.Formatter:
    """One line per record: JSON (with `instance` and the pid), or text for a terminal."""
    enrich: list[Processor] = [
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
    ]
    if log_format == "json":
        return structlog.stdlib.ProcessorFormatter(
            processors=[
                *enrich,
                request_context(instance),
                access_fields,
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.EventRenamer("message"),
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
            pass_foreign_args=True,
        )
    return structlog.stdlib.ProcessorFormatter(
        processors=[
            *enrich,
            request_context(None),
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.dev.ConsoleRenderer(
                colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
            ),
        ]
    )


def configure_logging(level: str, log_format: LogFormat = "text", instance: str = "") -> None:
    """The `gateway` logger at `level`, on stderr in `log_format`; it does not propagate.

    Configuring again replaces the gateway's handler's format and leaves any
    other handler in place. In a process `gateway serve` runs (it marks them
    with `SERVER_LOGGING`), every logger instead, as `configure_server_logging` does.
    """
    if os.environ.get(SERVER_LOGGING):
        configure_server_logging(level, log_format, instance)
        return
    logger = logging.getLogger(GATEWAY_LOGGER)
    logger.setLevel(level)
    logger.propagate = False
    handler = next((h for h in logger.handlers if isinstance(h, GatewayHandler)), None)
    if handler is None:
        handler = GatewayHandler(sys.stderr)
        logger.addHandler(handler)
    handler.setFormatter(formatter(log_format, instance))


def configure_server_logging(level: str, log_format: LogFormat, instance: str) -> None:
    """Every line of this process, and of the workers it starts, through the gateway's formatter.

    `gateway serve` calls it before it starts uvicorn, and marks the process
    so that each worker does the same when it builds the app: there, that is
    before uvicorn's first line, and after the worker answers its supervisor's
    health checks. (A log config handed to uvicorn would import the whole
    gateway before that, and a worker that starts slowly under load would be
    killed as unresponsive.) Python's warnings become log lines too.
    """
    os.environ[SERVER_LOGGING] = "1"
    logging.config.dictConfig(log_config(level, log_format, instance))
    logging.captureWarnings(True)


def log_config(level: str, log_format: LogFormat, instance: str) -> dict[str, Any]:
    """A `dictConfig` for a server process: every logger, uvicorn's too, through one formatter.

    The gateway's own logger keeps its handler and does not propagate (as
    `configure_logging` sets it); uvicorn's loggers propagate to the root,
    whose handler writes every other line. uvicorn sets its loggers' levels
    itself, from its own `log_level`.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "gateway": {
                "()": f"{__name__}.formatter",
                "log_format": log_format,
                "instance": instance,
            }
        },
        "handlers": {
            "gateway": {
                "class": f"{__name__}.GatewayHandler",
                "formatter": "gateway",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            GATEWAY_LOGGER: {"handlers": ["gateway"], "level": level, "propagate": False},
            **{name: {"handlers": [], "propagate": True} for name in UVICORN_LOGGERS},
        },
        "root": {"handlers": ["gateway"], "level": level},
    }
