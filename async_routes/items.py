"""The item catalog, migrated: lean statements on an AsyncSession, answered as the schemas."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from gateway import AsyncDB, error_responses
from gateway.database.queries import insert_returning, read_or_404, read_page
from shared_models.models import Item
from shared_models.params import InStock, ItemId, Limit, Offset, SearchText
from shared_models.schemas import ItemCreate, ItemRead, Page

NOT_FOUND = error_responses(404)
router = APIRouter(prefix="/items", tags=["items"])


@router.get("", response_model=Page[ItemRead])
async def list_items(
    db: AsyncDB,
    limit: Limit = 20,
    offset: Offset = 0,
    q: SearchText = None,
    in_stock: InStock = None,
) -> Page[ItemRead]:
    query = select(Item)
    if q is not None:
        query = query.where(Item.text_matches(q))
    if in_stock is not None:
        query = query.where(Item.stock > 0 if in_stock else Item.stock == 0)
    items, total = await read_page(
        db, query.order_by(Item.id), ItemRead, limit=limit, offset=offset
    )
    return Page[ItemRead](items=items, total=total, limit=limit, offset=offset)


@router.get("/{item_id}", response_model=ItemRead, responses=NOT_FOUND)
async def get_item(item_id: ItemId, db: AsyncDB) -> ItemRead:
    return await read_or_404(db, Item, item_id, ItemRead)


@router.post("", response_model=ItemRead, status_code=201)
async def create_item(body: ItemCreate, db: AsyncDB) -> ItemRead:
    return await insert_returning(db, Item, body.model_dump(), ItemRead)
