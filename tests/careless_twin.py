"""An async twin that forgets to load what it reads, for the lazy-load guard's tests.

`GET /orders/{order_id}` answers `OrderRead`, whose `lines` the query never
loads; the buyer's route walks `order.user`, which nothing loaded either.
Both work in a legacy twin with lazy relationships, and fail under an
AsyncSession.
"""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.orm import selectinload

from gateway import AsyncDB, error_responses
from gateway.database.queries import get_or_404
from shared_models.models import Order, User
from shared_models.params import OrderId
from shared_models.schemas import OrderRead, UserRead

NOT_FOUND = error_responses(404)
router = APIRouter(tags=["orders"])


@router.get("/orders/{order_id}", response_model=OrderRead, responses=NOT_FOUND)
async def get_order(order_id: OrderId, db: AsyncDB) -> Order:
    return await get_or_404(db, Order, order_id)


@router.get("/orders/{order_id}/buyer", response_model=UserRead, responses=NOT_FOUND)
async def order_buyer(order_id: OrderId, db: AsyncDB) -> User:
    order = await get_or_404(db, Order, order_id, options=[selectinload(Order.lines)])
    return order.user
