"""Admission to the two scarce resources, so overload turns into quick 503s instead of pile-ups.

- `ThreadGate`: legacy `def` endpoints run on `size` threads. At most
  `max_queue` requests wait for one, each for at most `max_wait` seconds;
  beyond either, the request is shed at once with 503 and `Retry-After`.
- `ConnectionGate`: async endpoints that use the database are admitted in
  arrival order (FIFO, no barging) up to the async pool's capacity, so a
  connection is always free for an admitted request and no request starves
  while later ones pass it; a request waits at most `max_wait` (the pool
  timeout) before a 503.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio

from gateway.errors import Unavailable

T = TypeVar("T")
RETRY_AFTER_SECONDS = 1
# Sessions whose endpoint never ran are closed on threads of their own: that cleanup must
# not queue behind the requests waiting for the connections it is about to give back.
CLEANUP_THREADS = 4


def busy(message: str, resource: str) -> Unavailable:
    return Unavailable(message, {"resource": resource, "retry_after": RETRY_AFTER_SECONDS})


class ThreadGate:
    def __init__(self, size: int, *, max_queue: int, max_wait: float) -> None:
        self.limiter = anyio.CapacityLimiter(size)
        # The admitted never wait here: this only hands the call to anyio's worker threads.
        self._handover = anyio.CapacityLimiter(size)
        self.cleanup = anyio.CapacityLimiter(CLEANUP_THREADS)
        self.max_queue = max_queue
        self.max_wait = max_wait

    @property
    def queued(self) -> int:
        return self.limiter.statistics().tasks_waiting

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        try:
            self.limiter.acquire_nowait()  # the common case: no queue, no timer
        except anyio.WouldBlock:
            await self._wait_for_thread()
        try:
            return await anyio.to_thread.run_sync(function, *args, limiter=self._handover)
        finally:
            self.limiter.release()

    async def _wait_for_thread(self) -> None:
        if self.queued >= self.max_queue:
            raise busy(f"all threads are busy and {self.queued} requests wait for one", "threads")
        with anyio.move_on_after(self.max_wait) as waited:
            await self.limiter.acquire()
        if waited.cancelled_caught:
            raise busy(f"no thread was free within {self.max_wait:g} s", "threads")


class ConnectionGate:
    def __init__(self, capacity: int, *, max_wait: float) -> None:
        self.semaphore = anyio.Semaphore(capacity)
        self.max_wait = max_wait

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        try:
            self.semaphore.acquire_nowait()  # free slot and nobody waiting: no timer needed
        except anyio.WouldBlock:
            await self._wait_in_line()
        try:
            yield
        finally:
            self.semaphore.release()

    async def _wait_in_line(self) -> None:
        with anyio.move_on_after(self.max_wait) as waited:
            await self.semaphore.acquire()
        if waited.cancelled_caught:
            raise busy(f"no database connection was free within {self.max_wait:g} s", "connections")
