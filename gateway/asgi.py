"""Small ASGI pieces shared by the middleware and the dispatcher."""

from __future__ import annotations

from starlette.types import Message, Send


class StatusRecorder:
    """A `send` that passes messages on and remembers the status code (500 until one is sent)."""

    __slots__ = ("_send", "status")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self._send(message)
