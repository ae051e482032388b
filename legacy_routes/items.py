"""The item catalog, the classic way: `db.query(Item)` on a sync Session."""

from __future__ import annotations

from fastapi import APIRouter

from gateway import SyncDB, error_responses, not_found
from shared_models.models import Item
from shared_models.params import InStock, ItemId, Limit, Offset, SearchText
from shared_models.schemas import ItemCreate, ItemRead, Page

NOT_FOUND = error_responses(404)
router = APIRouter(prefix="/items", tags=["items"])


@router.get("", response_model=Page[ItemRead])
def list_items(
    db: SyncDB,
    limit: Limit = 20,
    offset: Offset = 0,
    q: SearchText = None,
    in_stock: InStock = None,
) -> Page[ItemRead]:
    query = db.query(Item)
    if q is not None:
        query = query.filter(Item.text_matches(q))
    if in_stock is not None:
        query = query.filter(Item.stock > 0 if in_stock else Item.stock == 0)
    items = query.order_by(Item.id).limit(limit).offset(offset).all()
    total = query.count()
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.get("/{item_id}", response_model=ItemRead, responses=NOT_FOUND)
def get_item(item_id: ItemId, db: SyncDB) -> Item:
    item = db.query(Item).filter(Item.id == item_id).first()
    if item is None:
        raise not_found("item", item_id)
    return item


@router.post("", response_model=ItemRead, status_code=201)
def create_item(body: ItemCreate, db: SyncDB) -> Item:
    item = Item(**body.model_dump())
    db.add(item)
    db.commit()
    return item
