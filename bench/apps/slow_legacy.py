"""Slow database, classic sync: a 100 ms lookup; 40 threads, 40 connections."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from sqlalchemy import create_engine, text
from sqlalchemy.orm import sessionmaker

from bench.apps.common import USER_COLUMNS, psycopg_url
from shared_models.schemas import UserRead

SLOW_LOOKUP = text(f"SELECT {USER_COLUMNS} FROM users, pg_sleep(0.1) AS pause WHERE id = :id")
engine = create_engine(psycopg_url(), pool_size=40, max_overflow=0)
SessionLocal = sessionmaker(bind=engine)
app = FastAPI()


@app.get("/users/{user_id}", response_model=UserRead)
def get_user(user_id: int) -> object:
    with SessionLocal() as db:
        row = db.execute(SLOW_LOOKUP, {"id": user_id}).mappings().first()
    if row is None:
        raise HTTPException(status_code=404, detail="User not found")
    return dict(row)
