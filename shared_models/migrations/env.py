"""Alembic environment of the demo's tables: runs on the connection handed over, or on -x url=...

`include_name=exclude_gateway_tables` keeps autogenerate and `alembic check`
off the gateway's tables, which live in the same database under their own
history: the two lines every adopter's env.py gets.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from gateway import exclude_gateway_tables
from shared_models.base import Base

target_metadata = Base.metadata


def run_on(connection: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_name=exclude_gateway_tables,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run_on(connection)
else:
    url = context.get_x_argument(as_dictionary=True)["url"]
    with create_engine(url).begin() as owned:
        run_on(owned)
