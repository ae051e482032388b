"""projects

Revision ID: a1
Revises:
Create Date: 2026-01-10
"""

import sqlalchemy as sa
from alembic import op

revision = "a1"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(10), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.UniqueConstraint("key", name="projects_key_key"),
    )


def downgrade() -> None:
    op.drop_table("projects")
