"""The demo's own schema and data: its Alembic history, and seed rows only where they belong.

The demo's tables have their own migrations (`shared_models/migrations`, in
the database's `alembic_version`), apart from the gateway's tables. Demo rows
are written only into a database that holds nothing but the demo's (and the
gateway's) tables, all of them empty: never beside anyone else's data.
"""

from __future__ import annotations

import logging

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy.pool import NullPool

from gateway import gateway_metadata
from gateway.database.engines import sync_url
from gateway.ops.migrations import VERSION_TABLE
from gateway.ops.migrations import upgrade as upgrade_gateway
from shared_models.base import Base
from shared_models.seed import DemoSize, seed

logger = logging.getLogger(__name__)

MIGRATIONS = "shared_models:migrations"
ALLOWED_TABLES = frozenset({*Base.metadata.tables, *gateway_metadata.tables, VERSION_TABLE})


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply the demo's migrations up to `revision`."""
    engine = create_engine(sync_url(database_url), poolclass=NullPool)
    try:
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def foreign_tables(connection: Connection) -> set[str]:
    """Tables that are neither the demo's nor the gateway's (nor Alembic's)."""
    return set(inspect(connection).get_table_names()) - ALLOWED_TABLES - {"alembic_version"}


def is_pristine(connection: Connection) -> bool:
    """True when the database holds only the demo's tables, and no user yet."""
    if foreign_tables(connection) or not inspect(connection).has_table("users"):
        return False
    return bool(connection.execute(text("SELECT NOT EXISTS (SELECT 1 FROM users)")).scalar_one())


def seed_if_pristine(database_url: str, size: DemoSize | None = None) -> bool:
    """Load the demo data set into a pristine database; True if it did."""
    engine = create_engine(sync_url(database_url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            if not is_pristine(connection):
                logger.info(
                    "not seeding demo data: the database already holds data or other tables"
                )
                return False
        counts = seed(engine, size or DemoSize())
        logger.info("seeded demo data: %s", counts)
        return True
    finally:
        engine.dispose()


def install(database_url: str) -> None:
    """The demo's schema, then the gateway's tables: what a deploy of the demo runs."""
    upgrade(database_url)
    upgrade_gateway(database_url)


def prepare(database_url: str, *, seed: bool) -> None:
    """The demo's schema on a database the gateway started for it, and its data if asked."""
    upgrade(database_url)
    if seed:
        seed_if_pristine(database_url)
