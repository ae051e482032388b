"""The sales report: a heavier aggregate over every order line, the classic way."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import desc, func

from gateway import SyncDB
from shared_models.models import Item, OrderLine
from shared_models.params import Limit
from shared_models.schemas import SalesRow

router = APIRouter(prefix="/reports", tags=["reports"])


@router.get("/sales", response_model=list[SalesRow])
def sales_report(db: SyncDB, limit: Limit = 20) -> list[Any]:
    revenue = func.sum(OrderLine.quantity * OrderLine.unit_price).label("revenue")
    return (
        db.query(
            Item.id.label("item_id"),
            Item.sku,
            Item.name,
            func.count(OrderLine.order_id.distinct()).label("orders"),
            func.sum(OrderLine.quantity).label("units_sold"),
            revenue,
        )
        .join(OrderLine, OrderLine.item_id == Item.id)
        .group_by(Item.id)
        .order_by(desc(revenue), Item.id)
        .limit(limit)
        .all()
    )
