"""documents with a pgvector embedding, where the server has pgvector

Without the extension the table is not created: the gateway then answers the
document routes with 503 and reports the missing extension on /readyz.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector

from shared_models.models import EMBEDDING_DIMENSIONS

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger("gateway.ops.schema")


def pgvector_available() -> bool:
    query = sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
    return op.get_bind().scalar(query) is not None


def upgrade() -> None:
    if not pgvector_available():
        logger.warning("pgvector is not available on this server: skipping the documents table")
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "documents",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("embedding", Vector(EMBEDDING_DIMENSIONS), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    op.create_index(
        "ix_documents_embedding_hnsw",
        "documents",
        ["embedding"],
        postgresql_using="hnsw",
        postgresql_ops={"embedding": "vector_l2_ops"},
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS documents")
