"""How errors are documented in OpenAPI: the models of both error formats, per route.

Every operation documents the errors the gateway itself may answer it with,
in the shape the app's `GATEWAY_ERROR_FORMAT` gives them (`documented_responses`,
applied when the gateway adopts the app), and a route documents the errors
its own code raises with `responses=error_responses(404, ...)`.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from pydantic import BaseModel

from gateway.errors import ErrorFormat


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any]


class ErrorEnvelope(BaseModel):
    """An error in the gateway's envelope (`GATEWAY_ERROR_FORMAT=envelope`)."""

    error: ErrorBody


class ErrorDetail(BaseModel):
    """An error in FastAPI's shape (`GATEWAY_ERROR_FORMAT=detail`)."""

    detail: str


class GatewayErrorResponse(BaseModel):
    """In a route's `responses`: the gateway's error body, in whichever format the app sets.

    Replaced by `ErrorEnvelope` or `ErrorDetail` when the gateway adopts the app.
    """


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route that raises these errors itself (`NotFound`, say)."""
    return {
        status: {"model": GatewayErrorResponse, "description": HTTPStatus(status).phrase}
        for status in statuses
    }


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def documented_responses(
    responses: dict[int | str, dict[str, Any]],
    *,
    methods: set[str],
    takes_input: bool,
    takes_body: bool,
    error_format: ErrorFormat,
    map_database_errors: bool,
) -> dict[int | str, dict[str, Any]]:
    """A route's `responses`, with every error the gateway may answer it with, in its format.

    Always 503 (overload shed, cancelled at shutdown); 400 and 413 with a body; with the
    envelope, 422 for invalid input (FastAPI documents its own shape otherwise);
    with database errors mapped, 409 on writes and 504. Placeholders the route
    declared (`error_responses`) get the format's model; the route's own
    entries otherwise win.
    """
    model = ErrorEnvelope if error_format == "envelope" else ErrorDetail
    added = {503: "the gateway is overloaded, or the request could not complete: retry"}
    if takes_body:
        added[400] = "the body could not be read (not UTF-8 JSON, say)"
        added[413] = "the request body is too large"
    if takes_input and error_format == "envelope":
        added[422] = "the request is invalid: each bad field is named"
    if map_database_errors:
        added[504] = "a query took longer than the statement timeout"
        if not methods <= SAFE_METHODS:
            added[409] = "the request conflicts with existing data"
    documented: dict[int | str, dict[str, Any]] = {
        status: {"model": model, "description": description}
        for status, description in added.items()
    }
    for status, response in responses.items():
        documented[status] = (
            {**response, "model": model}
            if response.get("model") is GatewayErrorResponse
            else response
        )
    return documented
