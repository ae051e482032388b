"""The article's sync route: `def` endpoint, sync Session from a `yield` dependency."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Depends, FastAPI, HTTPException
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from bench.apps.common import psycopg_url
from shared_models.models import User
from shared_models.schemas import UserRead

engine = create_engine(psycopg_url(), pool_size=20, max_overflow=10)
SessionLocal = sessionmaker(bind=engine)
app = FastAPI()


def get_db() -> Iterator[Session]:
    db = SessionLocal()
    try:
        yield db
    finally:
        db.close()


@app.get("/users/{user_id}", response_model=UserRead)
def get_user(user_id: int, db: Session = Depends(get_db)) -> User:
    user = db.query(User).filter(User.id == user_id).first()
    if user is None:
        raise HTTPException(status_code=404, detail="User not found")
    return user
