"""Alembic environment: runs on the connection handed over by gateway.ops.schema, or on -x url=..."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from shared_models.base import Base

target_metadata = Base.metadata


def run_on(connection: object) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run_on(connection)
else:
    url = context.get_x_argument(as_dictionary=True)["url"]
    with create_engine(url).begin() as owned:
        run_on(owned)
