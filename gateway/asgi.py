"""Small ASGI pieces shared by the middleware, the dispatcher and the admin API."""

from __future__ import annotations

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class StatusRecorder:
    """A `send` that passes messages on and remembers the status code (500 until one is sent)."""

    __slots__ = ("_send", "started", "status")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 500
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.started = True
        await self._send(message)


def answering_cancellation(app: ASGIApp, answer: ASGIApp) -> ASGIApp:
    """`app`, answered with `answer` if it is cancelled before it started its response.

    A server that gives up on a request (shutdown past its drain time) cancels
    it; left alone the client would get a bare 500. The cancellation goes on
    once the answer is sent.
    """

    async def answering(scope: Scope, receive: Receive, send: Send) -> None:
        recorder = StatusRecorder(send)
        try:
            await app(scope, receive, recorder)
        except anyio.get_cancelled_exc_class():
            if not recorder.started:
                with anyio.CancelScope(shield=True):
                    await answer(scope, receive, send)
            raise

    return answering
