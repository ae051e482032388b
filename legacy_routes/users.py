"""Users, the classic way: `db.query(User)` on a sync Session."""

from __future__ import annotations

from fastapi import APIRouter, Response

from gateway import SyncDB, error_responses, not_found
from shared_models.models import User
from shared_models.params import Active, Limit, Offset, SearchText, UserId
from shared_models.schemas import Page, UserCreate, UserRead, UserUpdate

NOT_FOUND = error_responses(404)
router = APIRouter(prefix="/users", tags=["users"])


@router.get("", response_model=Page[UserRead])
def list_users(
    db: SyncDB, limit: Limit = 20, offset: Offset = 0, q: SearchText = None, active: Active = None
) -> Page[UserRead]:
    query = db.query(User)
    if q is not None:
        query = query.filter(User.text_matches(q))
    if active is not None:
        query = query.filter(User.is_active == active)
    users = query.order_by(User.id).limit(limit).offset(offset).all()
    total = query.count()
    return Page(items=users, total=total, limit=limit, offset=offset)


@router.get("/{user_id}", response_model=UserRead, responses=NOT_FOUND)
def get_user(user_id: UserId, db: SyncDB) -> User:
    user = db.query(User).filter(User.id == user_id).first()
    if user is None:
        raise not_found("user", user_id)
    return user


@router.post("", response_model=UserRead, status_code=201)
def create_user(body: UserCreate, db: SyncDB) -> User:
    user = User(**body.model_dump())
    db.add(user)
    db.commit()
    return user


@router.patch("/{user_id}", response_model=UserRead, responses=NOT_FOUND)
def update_user(user_id: UserId, body: UserUpdate, db: SyncDB) -> User:
    updated = db.query(User).filter(User.id == user_id).update(body.changes())
    if not updated:
        raise not_found("user", user_id)
    db.commit()
    return db.query(User).filter(User.id == user_id).one()


@router.delete("/{user_id}", status_code=204, responses=NOT_FOUND)
def delete_user(user_id: UserId, db: SyncDB) -> Response:
    deleted = db.query(User).filter(User.id == user_id).delete()
    if not deleted:
        raise not_found("user", user_id)
    db.commit()
    return Response(status_code=204)
