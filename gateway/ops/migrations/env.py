"""Alembic environment of the gateway's own tables: their version table, nothing of the app's."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from gateway.ops.migrations import VERSION_TABLE
from gateway.routing.schema import metadata


def only_gateway_tables(name: str | None, type_: str, parent_names: object) -> bool:
    return type_ != "table" or name in metadata.tables


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        include_name=only_gateway_tables,
    )
    with context.begin_transaction():
        context.run_migrations()


run_on(context.config.attributes["connection"])
