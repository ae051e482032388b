"""Hand-tuned sync code: Core statement built once, autocommit read, JSON built by hand."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from sqlalchemy import bindparam, create_engine, select

from bench.apps.common import psycopg_url
from shared_models.models import User

engine = create_engine(psycopg_url(), pool_size=40, max_overflow=0, isolation_level="AUTOCOMMIT")
USERS = User.__table__.c
BY_ID = select(USERS.id, USERS.email, USERS.name, USERS.is_active, USERS.created_at).where(
    USERS.id == bindparam("user_id")
)
app = FastAPI()


@app.get("/users/{user_id}")
def get_user(user_id: int) -> JSONResponse:
    with engine.connect() as connection:
        row = connection.execute(BY_ID, {"user_id": user_id}).first()
    if row is None:
        raise HTTPException(status_code=404, detail="User not found")
    return JSONResponse(
        {
            "id": row.id,
            "email": row.email,
            "name": row.name,
            "is_active": row.is_active,
            "created_at": row.created_at.isoformat(),
        }
    )
