"""The tracker's Alembic environment, with the two lines that keep it off the gateway's tables."""

from alembic import context
from sqlalchemy import create_engine
from tracker.config import database_url
from tracker.models import Base

from gateway import exclude_gateway_tables  # 1: the gateway's tables are not ours

with create_engine(database_url()).connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        include_name=exclude_gateway_tables,  # 2: so autogenerate never drops them
    )
    with context.begin_transaction():
        context.run_migrations()
