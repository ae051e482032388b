"""Schema and demo data: Alembic migrations applied programmatically, and the first-start seed."""

from __future__ import annotations

import logging

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, inspect

from gateway.database.engines import sync_url

logger = logging.getLogger(__name__)

MIGRATIONS = "shared_models:migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply the migrations up to `revision` on the database at `database_url`."""
    engine = create_engine(sync_url(database_url))
    try:
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def is_empty(engine: Engine) -> bool:
    with engine.connect() as connection:
        if not inspect(connection).has_table("users"):
            return True
        query = "SELECT NOT EXISTS (SELECT 1 FROM users)"
        return bool(connection.exec_driver_sql(query).scalar_one())


def seed_if_empty(database_url: str) -> bool:
    """Load the default demo data set into an empty database; True if it did."""
    from shared_models.seed import DemoSize, seed

    engine = create_engine(sync_url(database_url))
    try:
        if not is_empty(engine):
            return False
        counts = seed(engine, DemoSize())
        logger.info("seeded demo data: %s", counts)
        return True
    finally:
        engine.dispose()
