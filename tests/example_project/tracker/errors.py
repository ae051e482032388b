"""The tracker's own error handling: its own shapes, which its clients rely on."""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


class TicketAlreadyClosed(Exception):
    def __init__(self, ticket_id: int) -> None:
        self.ticket_id = ticket_id


async def already_closed(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TicketAlreadyClosed)
    return JSONResponse(
        {"message": f"ticket {exc.ticket_id} is already closed", "kind": "conflict"},
        status_code=409,
    )


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = sorted(".".join(str(part) for part in error["loc"]) for error in exc.errors())
    return JSONResponse({"message": "invalid request", "fields": fields}, status_code=422)


def install(app: FastAPI) -> None:
    app.add_exception_handler(TicketAlreadyClosed, already_closed)
    app.add_exception_handler(RequestValidationError, invalid_request)
