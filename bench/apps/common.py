"""What the bench apps share: the database URL (BENCH_DATABASE_URL) in each driver's spelling."""

from __future__ import annotations

import os

from sqlalchemy import URL

from gateway.database.engines import async_url, sync_url

DATABASE_URL_VARIABLE = "BENCH_DATABASE_URL"
USER_COLUMNS = "id, email, name, is_active, created_at"


def database_url() -> str:
    """The plain postgresql:// URL of the benchmark database."""
    return os.environ[DATABASE_URL_VARIABLE]


def psycopg_url() -> URL:
    return sync_url(database_url())


def asyncpg_url() -> URL:
    return async_url(database_url())
