"""A webhook receiver on 127.0.0.1 for tests: it records every POST and answers as scripted."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    body: dict[str, Any]
    headers: dict[str, str]
    status: int  # what the receiver answered
    at: float  # time.monotonic() when it arrived


@dataclass
class Receiver:
    """Answers the scripted statuses in turn, then 200; waits `delay` seconds before each."""

    statuses: deque[int] = field(default_factory=deque)
    delay: float = 0.0
    url: str = ""
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, body: dict[str, Any], headers: dict[str, str]) -> int:
        with self.lock:
            status = self.statuses.popleft() if self.statuses else 200
            self.received.append(Received(body, headers, status, time.monotonic()))
        return status

    def accepted(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if 200 <= r.status < 300]

    def event_ids(self, *, accepted_only: bool = True) -> list[tuple[str, int]]:
        with self.lock:
            chosen = [r for r in self.received if not accepted_only or r.status < 300]
        return [(r.body["source"], r.body["event"]["id"]) for r in chosen]


def handler_for(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            time.sleep(receiver.delay)
            status = receiver.answer(body, {k.lower(): v for k, v in self.headers.items()})
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test reads `received` instead

    return Handler


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeout) closes the socket under a slow answer


@contextmanager
def receiving(statuses: Iterable[int] = (), delay: float = 0.0) -> Iterator[Receiver]:
    """A receiver listening on a random port of 127.0.0.1 until the block ends."""
    receiver = Receiver(deque(statuses), delay)
    server = QuietServer(("127.0.0.1", 0), handler_for(receiver))
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
