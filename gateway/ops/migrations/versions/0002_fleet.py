"""the fleet: a version on each route's row, every worker's held version, shared shadow mismatches

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

Like 0001, it leaves alone what an app's older migrations already created.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    tables = set(inspector.get_table_names())
    if "version" not in {column["name"] for column in inspector.get_columns("gateway_routes")}:
        op.add_column(
            "gateway_routes",
            sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"),
        )
    if "gateway_workers" not in tables:
        create_workers()
    if "gateway_shadow_mismatches" not in tables:
        create_mismatches()


def create_workers() -> None:
    op.create_table(
        "gateway_workers",
        sa.Column("worker", sa.Text(), nullable=False),
        sa.Column("instance", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("listening", sa.Boolean(), nullable=False),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "seen_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("worker", name="gateway_workers_pkey"),
    )


def create_mismatches() -> None:
    op.create_table(
        "gateway_shadow_mismatches",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("route", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("primary_impl", sa.Text(), nullable=False),
        sa.Column("primary_status", sa.SmallInteger(), nullable=False),
        sa.Column("shadow_status", sa.SmallInteger(), nullable=False),
        sa.Column("diff", sa.Text(), nullable=False),
        sa.Column("worker", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="gateway_shadow_mismatches_pkey"),
    )
    op.create_index(
        "ix_gateway_shadow_mismatches_route_id", "gateway_shadow_mismatches", ["route", "id"]
    )


def downgrade() -> None:
    op.drop_table("gateway_shadow_mismatches")
    op.drop_table("gateway_workers")
    op.drop_column("gateway_routes", "version")
