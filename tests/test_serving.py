"""The draining event loop of `gateway serve`: a burst of connections is accepted in one pass."""

from __future__ import annotations

import asyncio
import os
import resource
import socket
from collections.abc import Iterator
from typing import ClassVar

import pytest

from gateway.ops.serving import ACCEPT_BATCH, DrainingServer, new_event_loop

BURST = ACCEPT_BATCH + 44


class Counting(asyncio.Protocol):
    made: ClassVar[list[asyncio.BaseTransport]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.append(transport)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = new_event_loop()
    Counting.made = []
    yield loop
    for transport in Counting.made:
        transport.close()
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()


def start_server(loop: asyncio.AbstractEventLoop) -> DrainingServer:
    server = loop.run_until_complete(loop.create_server(Counting, "127.0.0.1", 0, backlog=2048))
    assert isinstance(server, DrainingServer)
    return server


def connect_clients(server: DrainingServer, count: int) -> list[socket.socket]:
    """Connections the kernel has completed and queued, none accepted yet."""
    address = server.sockets[0].getsockname()
    return [socket.create_connection(address) for _ in range(count)]


def run_briefly(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0.2))


def test_one_readable_event_accepts_a_whole_batch(loop: asyncio.AbstractEventLoop) -> None:
    server = start_server(loop)
    clients = connect_clients(server, BURST)
    try:
        server.accept_batch()
        assert server.accepted == ACCEPT_BATCH
        server.accept_batch()
        assert server.accepted == BURST
        run_briefly(loop)
        assert len(Counting.made) == BURST
    finally:
        server.close()
        loop.run_until_complete(server.wait_closed())
        for client in clients:
            client.close()
    assert server.sockets == ()


def test_the_loop_serves_accepted_connections(loop: asyncio.AbstractEventLoop) -> None:
    server = start_server(loop)
    clients = connect_clients(server, 50)
    try:
        run_briefly(loop)  # the reader callback, not a direct call, accepts them
        assert len(Counting.made) == 50
        assert server.is_serving()
    finally:
        server.close()
        for client in clients:
            client.close()


def test_out_of_files_pauses_accepting_then_resumes(loop: asyncio.AbstractEventLoop) -> None:
    server = start_server(loop)
    clients = connect_clients(server, 20)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    open_now = len(os.listdir("/proc/self/fd"))
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_now + 5, hard))
        server.accept_batch()
        assert 0 < server.accepted < 20
        assert not server.is_serving()  # paused, not spinning on EMFILE
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        loop.run_until_complete(asyncio.sleep(1.5))
        assert server.accepted == 20
        assert server.is_serving()
    finally:
        server.close()
        for client in clients:
            client.close()
