"""Classic sync code that works: the ORM Session opened and closed inside the `def` handler."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from bench.apps.common import psycopg_url
from shared_models.models import User
from shared_models.schemas import UserRead

engine = create_engine(psycopg_url(), pool_size=20, max_overflow=20)
SessionLocal = sessionmaker(bind=engine, expire_on_commit=False)
app = FastAPI()


@app.get("/users/{user_id}", response_model=UserRead)
def get_user(user_id: int) -> User:
    with SessionLocal() as db:
        user = db.query(User).filter(User.id == user_id).first()
    if user is None:
        raise HTTPException(status_code=404, detail="User not found")
    return user
