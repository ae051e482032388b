"""The HTTP protocol `gateway serve` speaks: uvicorn's httptools protocol, with limits per client.

- A request head larger than the limits is answered at once, and the
  connection closed: 414 when the request line alone passes
  `max_request_line_bytes`, 431 when the head passes that plus
  `max_header_bytes`. Bytes are counted as they arrive, so the parser never
  works on more than the limits and one more read (at most 256 KiB): the
  cost of a huge header is the cost of its first few reads.
- A connection that has not sent a whole request head within
  `request_head_timeout` of opening (or of its previous response) is closed,
  with 408 if it had started one; so is one whose body stops arriving for
  `request_body_idle_timeout` (the app then sees the client disconnect).
- At most `max_connections` per process (and fewer than the open-file limit
  allows): a new connection beyond it sheds the oldest connection that has no
  request in progress, or is answered 503 when every one has.

Errors come in the app's error format (`GATEWAY_ERROR_FORMAT`). The limits are
the settings of the app the process serves, applied by its lifespan before
the first connection (`configure`).

This module relies on uvicorn's `HttpToolsProtocol` beyond its documented
interface (its parser callbacks and fields): `pyproject.toml` pins uvicorn
below its next minor release, and tests/test_http_limits.py fails if a
release changes what is used here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.errors import ErrorFormat, code_of
from gateway.settings import Settings

logger = logging.getLogger(__name__)

REASONS = {414: "request_line_too_long", 431: "headers_too_large"}
RESERVED_FILES = 128  # kept free below the open-file limit: pools, listener, logs, probes


def not_counted(reason: str) -> None:
    pass


@dataclass(frozen=True)
class RequestLimits:
    max_request_line_bytes: int = 8 * 1024
    max_header_bytes: int = 64 * 1024
    head_timeout: float = 10.0
    body_idle_timeout: float = 30.0
    max_connections: int = 4096
    error_format: ErrorFormat = "detail"
    closed: Callable[[str], None] = not_counted  # told why, each time a connection is cut

    @property
    def max_head_bytes(self) -> int:
        return self.max_request_line_bytes + self.max_header_bytes


limits = RequestLimits()


def configure(settings: Settings, closed: Callable[[str], None] = not_counted) -> RequestLimits:
    """Apply the app's settings to every connection this process accepts from now on.

    `closed` hears the reason each time the server cuts a connection short.
    """
    global limits
    files = open_files_allowed()
    reserve = RESERVED_FILES + 2 * (settings.sync_pool_capacity + settings.async_pool_capacity)
    limits = RequestLimits(
        max_request_line_bytes=settings.max_request_line_bytes,
        max_header_bytes=settings.max_header_bytes,
        head_timeout=settings.request_head_timeout,
        body_idle_timeout=settings.request_body_idle_timeout,
        max_connections=max(1, min(settings.max_connections, files - reserve)),
        error_format=settings.error_format,
        closed=closed,
    )
    if limits.max_connections < settings.max_connections:
        logger.warning(
            "at most %d connections (the open-file limit is %d): raise `ulimit -n` to allow %d",
            limits.max_connections,
            files,
            settings.max_connections,
        )
    return limits


def open_files_allowed() -> int:
    """The open-file limit, raised first to its hard limit when that is higher."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft if soft != resource.RLIM_INFINITY else 1_000_000


def answer(status: int, message: str, error_format: ErrorFormat) -> bytes:
    """A whole response closing the connection, in the app's error format."""
    body: dict[str, Any]
    if error_format == "detail":
        body = {"detail": message}
    else:
        body = {"error": {"code": code_of(status), "message": message, "details": {}}}
    content = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(content)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + content


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the limits of `gateway.ops.http_protocol.limits`."""

    # Per process: connections with no request in progress, the longest waiting first.
    waiting: ClassVar[OrderedDict[GatewayHttpProtocol, None]] = OrderedDict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.head_bytes = 0
        self.url_bytes = 0
        self.header_bytes = 0
        self.in_head = True
        self.refused: tuple[int, str] | None = None
        self.head_timer: asyncio.TimerHandle | None = None
        self.body_timer: asyncio.TimerHandle | None = None

    # connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.wait_for_a_request()
        if len(self.connections) > self.limits.max_connections and not self.shed_one():
            self.refuse(
                503, "the server has as many connections as it takes: retry shortly", "at_capacity"
            )

    def connection_lost(self, exc: Exception | None) -> None:
        self.waiting.pop(self, None)
        self.cancel_timers()
        super().connection_lost(exc)

    def shed_one(self) -> bool:
        """Close the connection that has waited longest without a request; False if none has."""
        for victim in self.waiting:
            if victim is not self:
                self.waiting.pop(victim)
                victim.transport.close()
                self.limits.closed("shed_idle")
                return True
        return False

    def wait_for_a_request(self) -> None:
        self.in_head = True
        self.head_bytes = self.url_bytes = self.header_bytes = 0
        self.waiting[self] = None
        self.waiting.move_to_end(self)
        self.restart(self.head_timer, self.head_timed_out, self.limits.head_timeout, "head")

    # bytes in

    def data_received(self, data: bytes) -> None:
        if self.refused is not None:
            return
        if self.in_head:
            self.head_bytes += len(data)
        elif self.body_timer is not None:
            self.restart(
                self.body_timer, self.body_timed_out, self.limits.body_idle_timeout, "body"
            )
        super().data_received(data)
        if self.refused is None and self.in_head:
            self.refused = self.head_too_large()
        if self.refused is not None and not self.transport.is_closing():
            self.refuse(*self.refused, reason=REASONS[self.refused[0]])

    def head_too_large(self) -> tuple[int, str] | None:
        if self.url_bytes > self.limits.max_request_line_bytes:
            return (
                414,
                f"the request line is longer than {self.limits.max_request_line_bytes} bytes",
            )
        too_large = (
            self.header_bytes > self.limits.max_header_bytes
            or self.head_bytes > self.limits.max_head_bytes
        )
        if too_large:
            return 431, f"the request headers are larger than {self.limits.max_header_bytes} bytes"
        return None

    # parser callbacks

    def on_url(self, url: bytes) -> None:
        self.url_bytes += len(url)
        if self.url_bytes <= self.limits.max_request_line_bytes:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value) + 4  # "name: value\r\n"
        if self.header_bytes <= self.limits.max_header_bytes:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.refused = self.head_too_large()
        if self.refused is not None:
            return
        self.in_head = False
        self.waiting.pop(self, None)
        self.cancel(self.head_timer)
        self.head_timer = None
        super().on_headers_complete()
        if not self.parser.should_upgrade() and self.expects_body():
            self.restart(None, self.body_timed_out, self.limits.body_idle_timeout, "body")

    def on_body(self, body: bytes) -> None:
        if self.refused is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self.cancel(self.body_timer)
        self.body_timer = None
        if self.refused is None:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self.wait_for_a_request()

    def expects_body(self) -> bool:
        headers = dict(self.headers)
        length = headers.get(b"content-length", b"0").strip()
        return length not in (b"", b"0") or b"transfer-encoding" in headers

    # timers

    def restart(
        self, timer: asyncio.TimerHandle | None, handler: Any, seconds: float, which: str
    ) -> None:
        self.cancel(timer)
        handle = self.loop.call_later(seconds, handler)
        if which == "head":
            self.head_timer = handle
        else:
            self.body_timer = handle

    @staticmethod
    def cancel(timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()

    def cancel_timers(self) -> None:
        self.cancel(self.head_timer)
        self.cancel(self.body_timer)
        self.head_timer = self.body_timer = None

    def head_timed_out(self) -> None:
        if self.transport.is_closing() or not self.in_head or self.cycle_in_progress():
            return
        if self.head_bytes:
            self.refuse(408, "the request head did not arrive in time", "head_timeout")
        else:
            self.transport.close()
            self.limits.closed("silent")

    def body_timed_out(self) -> None:
        if self.transport.is_closing():
            return
        if (
            self.flow is not None and self.flow.read_paused
        ):  # the app is slow to read, not the client
            self.restart(None, self.body_timed_out, self.limits.body_idle_timeout, "body")
            return
        self.transport.close()
        self.limits.closed("body_timeout")

    def cycle_in_progress(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def refuse(self, status: int, message: str, reason: str) -> None:
        self.waiting.pop(self, None)
        self.cancel_timers()
        self.transport.write(answer(status, message, self.limits.error_format))
        self.transport.close()
        self.limits.closed(reason)
