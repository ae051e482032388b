"""Assertions and app runners shared by the endpoint tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from tests.conftest import ApiClient

IMPL_HEADER = "x-gateway-impl"


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Check the uniform error JSON; return its `details`."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    details: dict[str, Any] = error["details"]
    return details


def error_message(response: httpx.Response) -> str:
    return str(response.json()["error"]["message"])


def invalid_locations(response: httpx.Response) -> list[str]:
    """The `details.fields[].location` of a 422 answer."""
    details = assert_error(response, 422, "invalid_request")
    return [field["location"] for field in details["fields"]]


def scalar_int(api: ApiClient, query: str, **params: object) -> int:
    """An integer read through the legacy side's connection."""
    return int(str(api.scalar(query, **params)))


def assert_served_by(response: httpx.Response, impl: str) -> None:
    assert response.headers[IMPL_HEADER] == impl


def admin_headers(app: FastAPI) -> dict[str, str]:
    """An Authorization header with the app's first read-write admin token, if it has one."""
    gateway_app = getattr(app.state, "gateway_app", None)  # a plain FastAPI app has none
    tokens = gateway_app.settings.admin_tokens if gateway_app is not None else {}
    token = next(iter(tokens.values()), None)
    return {} if token is None else {"authorization": f"Bearer {token.get_secret_value()}"}


@asynccontextmanager
async def serving(app: FastAPI, *, admin: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """Run `app`'s lifespan (real engines and pools) and give a client on it.

    With `admin`, the client sends the app's first read-write admin token on
    every request (tests of the admin API's refusals turn that off).
    """
    headers = admin_headers(app) if admin else {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=headers
        ) as client:
            yield client
