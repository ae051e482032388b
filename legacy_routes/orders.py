"""Orders, the classic way. Placing one checks and decrements stock in one transaction.

Items are locked (`SELECT ... FOR UPDATE`, in id order so two orders never
deadlock) before their stock is checked, so concurrent orders cannot oversell.
Any failure leaves nothing written: the request's session rolls back.
"""

from __future__ import annotations

from decimal import Decimal

from fastapi import APIRouter
from sqlalchemy.orm import selectinload

from gateway import Conflict, SyncDB, error_responses, not_found
from shared_models.models import Item, Order, OrderLine, User
from shared_models.params import Limit, Offset, OrderId, UserId
from shared_models.schemas import OrderCreate, OrderRead, Page

NOT_FOUND = error_responses(404)
router = APIRouter(tags=["orders"])


def shortages(items: list[Item], wanted: dict[int, int]) -> list[dict[str, int]]:
    return [
        {"item_id": item.id, "requested": wanted[item.id], "available": item.stock}
        for item in items
        if item.stock < wanted[item.id]
    ]


@router.post("/orders", response_model=OrderRead, status_code=201, responses=NOT_FOUND)
def create_order(body: OrderCreate, db: SyncDB) -> Order:
    if db.query(User).filter(User.id == body.user_id).first() is None:
        raise not_found("user", body.user_id)
    wanted = body.quantities()
    items = db.query(Item).filter(Item.id.in_(wanted)).order_by(Item.id).with_for_update().all()
    missing = sorted(set(wanted) - {item.id for item in items})
    if missing:
        raise not_found("item", missing[0])
    short = shortages(items, wanted)
    if short:
        raise Conflict("not enough stock", {"shortages": short})
    order = Order(user_id=body.user_id, total=Decimal(0), lines=[])
    for item in items:
        item.stock -= wanted[item.id]
        order.lines.append(
            OrderLine(item_id=item.id, quantity=wanted[item.id], unit_price=item.price)
        )
        order.total += item.price * wanted[item.id]
    db.add(order)
    db.commit()
    return order


@router.get("/orders/{order_id}", response_model=OrderRead, responses=NOT_FOUND)
def get_order(order_id: OrderId, db: SyncDB) -> Order:
    order = db.query(Order).options(selectinload(Order.lines)).filter(Order.id == order_id).first()
    if order is None:
        raise not_found("order", order_id)
    return order


@router.get("/users/{user_id}/orders", response_model=Page[OrderRead], responses=NOT_FOUND)
def list_user_orders(
    user_id: UserId, db: SyncDB, limit: Limit = 20, offset: Offset = 0
) -> Page[OrderRead]:
    if db.query(User).filter(User.id == user_id).first() is None:
        raise not_found("user", user_id)
    query = db.query(Order).filter(Order.user_id == user_id)
    orders = (
        query.options(selectinload(Order.lines))
        .order_by(Order.id)
        .limit(limit)
        .offset(offset)
        .all()
    )
    return Page(items=orders, total=query.count(), limit=limit, offset=offset)
