"""Users, migrated: lean statements on an AsyncSession, answered straight as the schemas."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import select

from gateway import AsyncDB, error_responses
from gateway.database.queries import (
    delete_or_404,
    insert_returning,
    read_or_404,
    read_page,
    update_or_404,
)
from shared_models.models import User
from shared_models.params import Active, Limit, Offset, SearchText, UserId
from shared_models.schemas import Page, UserCreate, UserRead, UserUpdate

NOT_FOUND = error_responses(404)
router = APIRouter(prefix="/users", tags=["users"])


@router.get("", response_model=Page[UserRead])
async def list_users(
    db: AsyncDB, limit: Limit = 20, offset: Offset = 0, q: SearchText = None, active: Active = None
) -> Page[UserRead]:
    query = select(User)
    if q is not None:
        query = query.where(User.text_matches(q))
    if active is not None:
        query = query.where(User.is_active == active)
    users, total = await read_page(
        db, query.order_by(User.id), UserRead, limit=limit, offset=offset
    )
    return Page[UserRead](items=users, total=total, limit=limit, offset=offset)


@router.get("/{user_id}", response_model=UserRead, responses=NOT_FOUND)
async def get_user(user_id: UserId, db: AsyncDB) -> UserRead:
    return await read_or_404(db, User, user_id, UserRead)


@router.post("", response_model=UserRead, status_code=201)
async def create_user(body: UserCreate, db: AsyncDB) -> UserRead:
    return await insert_returning(db, User, body.model_dump(), UserRead)


@router.patch("/{user_id}", response_model=UserRead, responses=NOT_FOUND)
async def update_user(user_id: UserId, body: UserUpdate, db: AsyncDB) -> UserRead:
    return await update_or_404(db, User, user_id, body.changes(), UserRead)


@router.delete("/{user_id}", status_code=204, responses=NOT_FOUND)
async def delete_user(user_id: UserId, db: AsyncDB) -> Response:
    await delete_or_404(db, User, user_id)
    return Response(status_code=204)
