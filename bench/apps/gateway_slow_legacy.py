"""The gateway plus a bench-only legacy route, GET /slow: a `def` endpoint waiting 100 ms in SQL."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from demo.app import LEGACY_ROUTERS, create_demo_app
from gateway import SyncDB

router = APIRouter()


@router.get("/slow")
def slow(db: SyncDB) -> dict[str, float]:
    db.execute(text("SELECT pg_sleep(0.1)"))
    return {"slept_seconds": 0.1}


app = create_demo_app(legacy_routers=[*LEGACY_ROUTERS, router])
