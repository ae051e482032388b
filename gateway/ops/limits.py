"""Request body limit: a body larger than `max_bytes` gets 413 before the app reads it all."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import ErrorFormat, error_response


class BodyTooLarge(HTTPException):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"the request body is larger than {max_bytes} bytes")


class BodyLimitMiddleware:
    """Pure ASGI: refuses a declared Content-Length over the limit at once, counts the rest."""

    def __init__(self, app: ASGIApp, max_bytes: int, error_format: ErrorFormat) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.error_format: ErrorFormat = error_format

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._declared(scope) > self.max_bytes:
            response = error_response(
                413,
                "request_entity_too_large",
                BodyTooLarge(self.max_bytes).detail,
                error_format=self.error_format,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    @staticmethod
    def _declared(scope: Scope) -> int:
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return 0
        return 0

    def _counting(self, receive: Receive) -> Receive:
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        return counted
