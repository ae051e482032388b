"""The event loop `gateway serve` runs on: uvloop, with an accept loop that drains the listen queue.

uvloop is the fastest loop uvicorn can use, but on a saturated core it accepts
about one new connection per pass of the loop: with 1,000 clients connecting
at once, hundreds sit in the kernel's listen queue for seconds while requests
on the connections already accepted are served. `DrainingLoop` takes over
plain TCP listeners (`create_server` without TLS): whenever the listening
socket is readable it accepts up to `ACCEPT_BATCH` connections in one go and
hands each to uvloop as an accepted socket. TLS listeners, and machines
without uvloop, get the stock behaviour.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

ACCEPT_BATCH = 256  # per readable event: enough to drain a burst, bounded so requests still run
PAUSE_WHEN_OUT_OF_FILES = 1.0  # seconds before accepting again after EMFILE/ENFILE
RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


class DrainingServer:
    """A listening socket drained at each readable event; what uvicorn uses of `asyncio.Server`."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, factory: ProtocolFactory
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._factory = factory
        self._handshakes: set[asyncio.Task[Any]] = set()
        self._serving = False
        self.accepted = 0

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return () if self._sock.fileno() == -1 else (self._sock,)

    def is_serving(self) -> bool:
        return self._serving

    def start_serving(self) -> None:
        if not self._serving:
            self._serving = True
            self._loop.add_reader(self._sock.fileno(), self.accept_batch)

    def accept_batch(self) -> None:
        """Accept every queued connection, up to `ACCEPT_BATCH`."""
        for _ in range(ACCEPT_BATCH):
            try:
                connection, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the client gave up before we got to it
            except OSError as error:
                if error.errno not in RESOURCE_ERRORS:
                    raise
                self._pause(error)
                return
            self._hand_over(connection)

    def _hand_over(self, connection: socket.socket) -> None:
        connection.setblocking(False)
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        handshake = self._loop.create_task(
            self._loop.connect_accepted_socket(self._factory, connection)
        )
        self._handshakes.add(handshake)
        handshake.add_done_callback(self._handshake_done)
        self.accepted += 1

    def _handshake_done(self, handshake: asyncio.Task[Any]) -> None:
        self._handshakes.discard(handshake)
        if not handshake.cancelled() and handshake.exception() is not None:
            logger.warning("could not set up an accepted connection: %s", handshake.exception())

    def _pause(self, error: OSError) -> None:
        logger.warning("not accepting for %.0f s: %s", PAUSE_WHEN_OUT_OF_FILES, error)
        self._loop.remove_reader(self._sock.fileno())
        self._serving = False
        self._loop.call_later(PAUSE_WHEN_OUT_OF_FILES, self._resume)

    def _resume(self) -> None:
        if self._sock.fileno() != -1:
            self.start_serving()

    def close(self) -> None:
        if self._sock.fileno() != -1:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
        self._serving = False

    async def wait_closed(self) -> None:
        if self._handshakes:
            await asyncio.gather(*self._handshakes, return_exceptions=True)


def listening_socket(host: str | None, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if host and ":" in host else socket.AF_INET
    sock = socket.create_server((host or "", port), family=family, backlog=backlog)
    sock.setblocking(False)
    return sock


try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop does not exist on Windows
    uvloop = None  # type: ignore[assignment]


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvicorn's loop hook: `--loop gateway.ops.serving:new_event_loop`."""
    if uvloop is None:  # pragma: no cover
        return asyncio.new_event_loop()
    return DrainingLoop()


if uvloop is not None:

    class DrainingLoop(uvloop.Loop):
        async def create_server(  # type: ignore[override]
            self,
            protocol_factory: ProtocolFactory,
            host: str | None = None,
            port: int | None = None,
            *,
            sock: socket.socket | None = None,
            backlog: int = 100,
            ssl: Any = None,
            **options: Any,
        ) -> Any:
            if ssl is not None or options or (sock is None and port is None):
                stock: Any = super().create_server
                return await stock(
                    protocol_factory, host, port, sock=sock, backlog=backlog, ssl=ssl, **options
                )
            if sock is None:
                sock = listening_socket(host, port or 0, backlog)
            else:
                sock.setblocking(False)
                sock.listen(backlog)
            server = DrainingServer(self, sock, protocol_factory)
            server.start_serving()
            return server
