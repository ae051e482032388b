"""The async-only document routes: storage, nearest-neighbour search, and 503 without pgvector."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from demo.app import create_demo_app
from demo.database import upgrade as upgrade_demo
from demo.settings import DemoSettings
from gateway.database.engines import sync_url
from gateway.ops.migrations import upgrade as upgrade_gateway
from shared_models.models import EMBEDDING_DIMENSIONS
from shared_models.seed import DemoSize, embedding_for, seed, user_row
from tests.conftest import TEST_SIZE, ApiClient, create_database, drop_database
from tests.helpers import (
    assert_error,
    assert_served_by,
    error_message,
    invalid_locations,
    serving,
)

pytestmark = pytest.mark.anyio

SEEDED_IDS = list(range(1, TEST_SIZE.documents + 1))
FLOAT32_TOLERANCE = 1e-5


@pytest.fixture
async def docs_api(needs_pgvector: None, legacy_api: ApiClient) -> AsyncIterator[ApiClient]:
    yield legacy_api


def distance(a: Sequence[float], b: Sequence[float]) -> float:
    return math.dist(a, b)


def nearest_seeded(query: Sequence[float], limit: int, exclude: int | None = None) -> list[int]:
    candidates = [n for n in SEEDED_IDS if n != exclude]
    return sorted(candidates, key=lambda n: distance(query, embedding_for(n)))[:limit]


def probe_vector(seed_value: int) -> list[float]:
    return [math.sin(seed_value * (index + 1)) for index in range(EMBEDDING_DIMENSIONS)]


def assert_matches(
    matches: list[dict[str, Any]], query: Sequence[float], expected_ids: list[int]
) -> None:
    assert [match["id"] for match in matches] == expected_ids
    distances = [match["distance"] for match in matches]
    assert distances == sorted(distances)
    for match in matches:
        exact = distance(query, embedding_for(match["id"]))
        assert match["distance"] == pytest.approx(exact, abs=FLOAT32_TOLERANCE)


async def search(api: ApiClient, embedding: Sequence[float], **extra: object) -> Any:
    response = await api.post("/documents/search", json={"embedding": list(embedding), **extra})
    assert response.status_code == 200, response.text
    assert_served_by(response, "async")
    return response.json()


async def test_create_document_round_trips_embedding(docs_api: ApiClient) -> None:
    embedding = [0.5, -0.25, 0.125, 0.0, 1.0, -1.0, 0.333333, 2.5]
    payload = {"title": "Pools", "body": "How pools hand out connections.", "embedding": embedding}
    response = await docs_api.post("/documents", json=payload)
    assert response.status_code == 201, response.text
    assert_served_by(response, "async")
    created = response.json()
    assert created["id"] == TEST_SIZE.documents + 1
    assert (created["title"], created["body"]) == (payload["title"], payload["body"])
    assert created["embedding"] == pytest.approx(embedding, abs=FLOAT32_TOLERANCE)
    fetched = await docs_api.get(f"/documents/{created['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == created


async def test_get_seeded_document(docs_api: ApiClient) -> None:
    response = await docs_api.get("/documents/4")
    assert response.status_code == 200
    assert_served_by(response, "async")
    document = response.json()
    assert document["id"] == 4
    assert document["embedding"] == pytest.approx(embedding_for(4), abs=FLOAT32_TOLERANCE)


async def test_create_document_rejects_invalid_body(docs_api: ApiClient) -> None:
    good = embedding_for(1)
    cases: list[tuple[dict[str, object], str]] = [
        ({"title": "Short", "body": "", "embedding": good[:-1]}, "body.embedding"),
        ({"title": "Long", "body": "", "embedding": [*good, 0.0]}, "body.embedding"),
        ({"title": "Empty", "body": "", "embedding": []}, "body.embedding"),
        ({"title": "", "body": "", "embedding": good}, "body.title"),
        ({"body": "", "embedding": good}, "body.title"),
    ]
    for payload, location in cases:
        response = await docs_api.post("/documents", json=payload)
        assert invalid_locations(response)[0] == location, payload
    words = await docs_api.post(
        "/documents", json={"title": "Words", "body": "", "embedding": ["x"] * 8}
    )
    assert invalid_locations(words)[0].startswith("body.embedding.")
    count = await docs_api.async_scalar("SELECT count(*) FROM documents")
    assert count == TEST_SIZE.documents


async def test_get_unknown_document_is_404(docs_api: ApiClient) -> None:
    response = await docs_api.get("/documents/999")
    details = assert_error(response, 404, "not_found")
    assert error_message(response) == "document 999 not found"
    assert details == {"entity": "document", "id": 999}
    assert_served_by(response, "async")


async def test_get_document_rejects_bad_id(docs_api: ApiClient) -> None:
    for document_id in ("0", str(2**31)):
        response = await docs_api.get(f"/documents/{document_id}")
        assert invalid_locations(response) == ["path.document_id"], document_id
    # only digits are a document id: anything else is another path
    assert (await docs_api.get("/documents/first")).status_code == 404
    assert (await docs_api.get("/documents/search")).status_code == 405


@pytest.mark.parametrize("limit", [1, 3, 7])
async def test_search_returns_nearest_in_distance_order(docs_api: ApiClient, limit: int) -> None:
    query = probe_vector(limit)
    matches = await search(docs_api, query, limit=limit)
    assert_matches(matches, query, nearest_seeded(query, limit))


async def test_search_default_limit_is_five(docs_api: ApiClient) -> None:
    query = probe_vector(11)
    matches = await search(docs_api, query)
    assert_matches(matches, query, nearest_seeded(query, 5))


async def test_search_with_a_documents_own_embedding_finds_it_first(docs_api: ApiClient) -> None:
    document = (await docs_api.get("/documents/13")).json()
    matches = await search(docs_api, document["embedding"], limit=3)
    assert matches[0]["id"] == 13
    assert matches[0]["title"] == document["title"]
    assert matches[0]["distance"] == pytest.approx(0.0, abs=FLOAT32_TOLERANCE)
    assert matches[1]["distance"] > FLOAT32_TOLERANCE


async def test_search_finds_a_new_document(docs_api: ApiClient) -> None:
    embedding = probe_vector(99)
    payload = {"title": "Fresh", "body": "just stored", "embedding": embedding}
    created = (await docs_api.post("/documents", json=payload)).json()
    matches = await search(docs_api, embedding, limit=1)
    assert [match["id"] for match in matches] == [created["id"]]


async def test_search_rejects_invalid_body(docs_api: ApiClient) -> None:
    query = probe_vector(1)
    cases: list[tuple[dict[str, object], str]] = [
        ({"embedding": query, "limit": 0}, "body.limit"),
        ({"embedding": query, "limit": 51}, "body.limit"),
        ({"embedding": query[:3]}, "body.embedding"),
        ({}, "body.embedding"),
    ]
    for payload, location in cases:
        response = await docs_api.post("/documents/search", json=payload)
        assert invalid_locations(response) == [location], payload


@pytest.mark.parametrize("limit", [1, 4])
async def test_similar_excludes_the_document_itself(docs_api: ApiClient, limit: int) -> None:
    document_id = 8
    response = await docs_api.get(f"/documents/{document_id}/similar", params={"limit": limit})
    assert response.status_code == 200, response.text
    assert_served_by(response, "async")
    query = embedding_for(document_id)
    assert_matches(response.json(), query, nearest_seeded(query, limit, exclude=document_id))


async def test_similar_equals_search_without_the_document(docs_api: ApiClient) -> None:
    document = (await docs_api.get("/documents/2")).json()
    similar = (await docs_api.get("/documents/2/similar")).json()
    searched = await search(docs_api, document["embedding"], limit=6)
    assert [match["id"] for match in similar] == [m["id"] for m in searched if m["id"] != 2][:5]


async def test_similar_of_unknown_document_is_404(docs_api: ApiClient) -> None:
    response = await docs_api.get("/documents/999/similar")
    assert_error(response, 404, "not_found")
    assert error_message(response) == "document 999 not found"


async def test_similar_rejects_bad_limit(docs_api: ApiClient) -> None:
    response = await docs_api.get("/documents/1/similar", params={"limit": 0})
    assert invalid_locations(response) == ["query.limit"]


@pytest.fixture
def database_without_documents(server_url: str) -> Iterator[str]:
    """A database migrated to revision 0001 only (no vector extension), with two users."""
    name = f"gateway_0001_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name)
    try:
        upgrade_demo(url, "0001")
        upgrade_gateway(url)
        engine = create_engine(sync_url(url), poolclass=NullPool)
        seed(engine, DemoSize(users=2, items=0, orders=0, documents=0))
        engine.dispose()
        yield url
    finally:
        drop_database(server_url, name)


DOCUMENT_REQUESTS: list[tuple[str, str, dict[str, object] | None]] = [
    ("POST", "/documents", {"title": "T", "body": "B", "embedding": embedding_for(1)}),
    ("GET", "/documents/1", None),
    ("POST", "/documents/search", {"embedding": embedding_for(2), "limit": 3}),
    ("GET", "/documents/1/similar", None),
]


async def test_without_pgvector_documents_answer_503_and_the_rest_works(
    database_without_documents: str, impl: str
) -> None:
    settings = DemoSettings(
        database_url=database_without_documents, log_level="WARNING", default_mode=impl
    )
    app = create_demo_app(settings)
    async with serving(app) as client:
        for method, path, body in DOCUMENT_REQUESTS:
            response = await client.request(method, path, json=body)
            details = assert_error(response, 503, "unavailable")
            assert details == {"missing_extension": "vector"}, (method, path)
            assert "vector" in error_message(response)
            assert_served_by(response, "async")
        user = await client.get("/users/1")
        assert user.status_code == 200, user.text
        assert user.json()["email"] == user_row(1)["email"]
        assert_served_by(user, impl)
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        checks = ready.json()["checks"]
        assert checks["extension vector"].startswith("missing")
        assert (checks["sync_engine"], checks["async_engine"]) == ("ok", "ok")
