"""The gateway's own tables: their migrations, the start-up check, the hook for the app's Alembic.

The gateway keeps its tables (route modes and their events) in the app's
database but apart from the app's schema: its own Alembic history in this
package, its own version table (`gateway_schema_version`), never the app's
`alembic_version`. `upgrade` applies it (`gateway db upgrade`); nothing else
in the database is touched.

At start-up `check_schema` refuses a database without the gateway's tables,
or with an older schema than the code needs, naming the table and the command
that fixes it. A newer schema (a rolling deploy migrated before every process
was replaced) is accepted when every table and column this code uses is
there.

An app that runs Alembic autogenerate or `alembic check` on the same database
passes `include_name=exclude_gateway_tables` to `context.configure`, so its
migrations never propose to drop the gateway's tables.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy.pool import NullPool

from gateway.database.engines import sync_url
from gateway.errors import ConfigurationError
from gateway.routing.schema import metadata

VERSION_TABLE = "gateway_schema_version"
SCRIPTS = "gateway.ops:migrations"
GATEWAY_TABLES = frozenset({*metadata.tables, VERSION_TABLE})
UPGRADE_COMMAND = "gateway db upgrade"


class SchemaError(ConfigurationError):
    """The database lacks the gateway's tables, or holds a schema this code cannot use."""


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPTS)
    return config


@functools.cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise SchemaError("the gateway's migrations have no head revision")
    return head


def known_revisions() -> set[str]:
    return {
        script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()
    }


def upgrade(database_url: str, revision: str = "head") -> None:
    """Create or update the gateway's tables in the database at `database_url`."""
    engine = create_engine(sync_url(database_url), poolclass=NullPool)
    try:
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def exclude_gateway_tables(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic's `include_name` hook for an app's own migrations: skip the gateway's tables."""
    return not (type_ == "table" and name in GATEWAY_TABLES)


@dataclass(frozen=True)
class SchemaStatus:
    revision: str
    newer_than_code: bool


def check_schema(
    connection: Connection,
    *,
    head: str | None = None,
    known: frozenset[str] | None = None,
    command_hint: str = UPGRADE_COMMAND,
) -> SchemaStatus:
    """The database's gateway schema, if this code can use it; `SchemaError` saying why not.

    `head` and `known` default to this code's migrations.
    """
    present = set(inspect(connection).get_table_names())
    if VERSION_TABLE not in present:
        missing = [name for name in metadata.tables if name not in present]
        what = f"table {missing[0]}" if missing else f"its version table {VERSION_TABLE}"
        raise SchemaError(
            f"the database has no gateway schema ({what} is missing): run `{command_hint}`"
        )
    revision = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    head = head or head_revision()
    if revision == head:
        return SchemaStatus(head, newer_than_code=False)
    if revision in (known if known is not None else known_revisions()):
        raise SchemaError(
            f"the gateway schema is at {revision}, this code needs {head}: run `{command_hint}`"
        )
    missing = missing_columns(connection)
    if missing:
        raise SchemaError(
            f"the gateway schema is at {revision}, newer than this code ({head}), and lacks "
            f"{', '.join(missing)}: deploy the gateway version that migrated it"
        )
    return SchemaStatus(str(revision), newer_than_code=True)


def missing_columns(connection: Connection) -> list[str]:
    """`table.column` for every column this code uses that the database does not have."""
    inspector = inspect(connection)
    present_tables = set(inspector.get_table_names())
    missing = []
    for table in metadata.sorted_tables:
        if table.name not in present_tables:
            missing.append(f"table {table.name}")
            continue
        columns = {column["name"] for column in inspector.get_columns(table.name)}
        missing.extend(f"{table.name}.{c.name}" for c in table.columns if c.name not in columns)
    return missing
