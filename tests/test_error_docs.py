"""The OpenAPI schema documents the errors each operation answers, in the shape it answers them."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter, FastAPI

from demo.app import create_demo_app
from gateway import AsyncDB, error_responses
from gateway.database.queries import read_or_404
from gateway.routing.contract import ContractMismatch
from shared_models.models import User
from shared_models.params import UserId
from shared_models.schemas import UserRead
from tests.conftest import test_settings as gateway_settings
from tests.helpers import serving

pytestmark = pytest.mark.anyio


def openapi(database_url: str, **settings: object) -> dict[str, Any]:
    app: FastAPI = create_demo_app(gateway_settings(database_url, **settings))
    return app.openapi()


def schema_of(response: dict[str, Any]) -> str:
    reference = response["content"]["application/json"]["schema"]["$ref"]
    return str(reference).rpartition("/")[2]


def operation(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    found: dict[str, Any] = document["paths"][path][method.lower()]
    return found


def test_every_operation_documents_the_envelope_it_answers_with(database_url: str) -> None:
    document = openapi(database_url)  # the demo: envelope, database errors mapped
    for path, operations in document["paths"].items():
        for method, described in operations.items():
            responses = described["responses"]
            assert schema_of(responses["503"]) == "ErrorEnvelope", (method, path)
            if "422" in responses:
                assert schema_of(responses["422"]) == "ErrorEnvelope", (method, path)
    create_user = operation(document, "POST", "/users")["responses"]
    assert set(create_user) == {"201", "400", "409", "413", "422", "503", "504"}
    get_user = operation(document, "GET", "/users/{user_id}")["responses"]
    assert set(get_user) == {"200", "404", "422", "503", "504"}
    assert schema_of(get_user["404"]) == "ErrorEnvelope"
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_fastapis_own_shape_is_documented_when_the_app_keeps_it(database_url: str) -> None:
    document = openapi(database_url, error_format="detail", map_database_errors=False)
    create_user = operation(document, "POST", "/users")["responses"]
    assert set(create_user) == {"201", "400", "413", "422", "503"}
    assert schema_of(create_user["422"]) == "HTTPValidationError"
    assert schema_of(create_user["503"]) == "ErrorDetail"
    get_user = operation(document, "GET", "/users/{user_id}")["responses"]
    assert schema_of(get_user["404"]) == "ErrorDetail"


def test_request_schemas_say_what_the_api_takes(database_url: str) -> None:
    schemas = openapi(database_url)["components"]["schemas"]
    update = schemas["UserUpdate"]
    assert update["minProperties"] == 1 and update["additionalProperties"] is False
    assert "null" not in str(update["properties"])
    assert schemas["UserCreate"]["properties"]["is_active"]["type"] == "boolean"
    for name in ("UserCreate", "ItemCreate", "OrderCreate", "OrderLineCreate"):
        assert schemas[name]["additionalProperties"] is False, name
    price = schemas["ItemCreate"]["properties"]["price"]["anyOf"]
    assert {branch["type"] for branch in price} == {"string", "integer"}
    assert schemas["UserCreate"]["properties"]["name"]["pattern"] == r"^[^\x00]*$"


def undocumented_twin() -> APIRouter:
    """GET /users/{user_id} raising 404 like its legacy twin, without documenting it."""
    router = APIRouter(prefix="/users")

    @router.get("/{user_id}", response_model=UserRead)
    async def get_user(user_id: UserId, db: AsyncDB) -> UserRead:
        return await read_or_404(db, User, user_id, UserRead)

    return router


def documented_twin() -> APIRouter:
    router = APIRouter(prefix="/users")

    @router.get("/{user_id}", response_model=UserRead, responses=error_responses(404))
    async def get_user(user_id: UserId, db: AsyncDB) -> UserRead:
        return await read_or_404(db, User, user_id, UserRead)

    return router


def test_twins_must_document_the_same_errors(database_url: str) -> None:
    settings = gateway_settings(database_url)
    with pytest.raises(ContractMismatch, match=r"documented statuses: legacy 404, .* vs async 422"):
        create_demo_app(settings, async_routers=[undocumented_twin()])
    create_demo_app(settings, async_routers=[documented_twin()])


async def test_the_admin_api_documents_its_errors_and_its_window(database_url: str) -> None:
    settings = gateway_settings(
        database_url, admin_tokens={"ops": "token-for-ops-0123"}, admin_report_max_window=7
    )
    app = create_demo_app(settings)
    async with serving(app, admin=True) as client:
        document = (await client.get("/admin/openapi.json")).json()
    change = operation(document, "PUT", "/admin/routes/{route_key}")["responses"]
    assert {"401", "403", "404", "422", "503"} <= set(change)
    assert all(schema_of(change[status]) == "ErrorEnvelope" for status in change if status != "200")
    report = operation(document, "GET", "/admin/report")
    (window,) = [parameter for parameter in report["parameters"] if parameter["name"] == "window"]
    assert window["schema"]["maximum"] == 7
    assert window["schema"]["default"] == 5
    mode_change = document["components"]["schemas"]["ModeChange"]
    assert mode_change["additionalProperties"] is False
    assert mode_change["allOf"][0]["then"]["required"] == ["percent"]
