"""Ceiling: FastAPI answering the same JSON with no database at all."""

from __future__ import annotations

from fastapi import FastAPI

from shared_models.seed import user_row

CREATED_AT = "2024-01-01T00:00:00+00:00"
app = FastAPI()


@app.get("/users/{user_id}")
async def get_user(user_id: int) -> dict[str, object]:
    return {**user_row(user_id), "created_at": CREATED_AT}
