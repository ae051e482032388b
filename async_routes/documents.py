"""Documents and nearest-neighbour search over their pgvector embeddings (async only).

Where the database has no pgvector, every route here answers 503 naming the
missing extension; the rest of the API is unaffected.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy import select

from gateway import AsyncDB, error_responses, require_extension
from gateway.database.queries import create, get_or_404
from shared_models.models import Document
from shared_models.params import DocumentId, Limit
from shared_models.schemas import DocumentCreate, DocumentMatch, DocumentRead, DocumentSearch

NOT_FOUND = error_responses(404)
router = APIRouter(
    prefix="/documents",
    tags=["documents"],
    dependencies=[Depends(require_extension("vector", "document search"))],
)


async def nearest(
    db: AsyncDB, embedding: Any, limit: int, *, exclude: int | None = None
) -> list[Any]:
    distance = Document.embedding.l2_distance(embedding).label("distance")
    query = select(Document.id, Document.title, distance).order_by(distance, Document.id)
    if exclude is not None:
        query = query.where(Document.id != exclude)
    return list((await db.execute(query.limit(limit))).all())


@router.post("", response_model=DocumentRead, status_code=201)
async def create_document(body: DocumentCreate, db: AsyncDB) -> Document:
    return await create(db, Document(**body.model_dump()))


# `:int`, so that GET /documents/search is a 405, not a document id that fails to parse
@router.get("/{document_id:int}", response_model=DocumentRead, responses=NOT_FOUND)
async def get_document(document_id: DocumentId, db: AsyncDB) -> Document:
    return await get_or_404(db, Document, document_id)


@router.post("/search", response_model=list[DocumentMatch])
async def search_documents(body: DocumentSearch, db: AsyncDB) -> list[Any]:
    return await nearest(db, body.embedding, body.limit)


@router.get("/{document_id:int}/similar", response_model=list[DocumentMatch], responses=NOT_FOUND)
async def similar_documents(document_id: DocumentId, db: AsyncDB, limit: Limit = 5) -> list[Any]:
    document = await get_or_404(db, Document, document_id)
    return await nearest(db, document.embedding, limit, exclude=document.id)
