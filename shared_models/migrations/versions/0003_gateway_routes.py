"""the gateway's routing table: one mode per route, and every change as an event

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MODES = "'legacy', 'async', 'canary', 'shadow'"
IMPLS = "'legacy', 'async'"


def upgrade() -> None:
    op.create_table(
        "gateway_routes",
        sa.Column("route", sa.Text(), primary_key=True),
        sa.Column("mode", sa.Text(), nullable=False),
        sa.Column("percent", sa.SmallInteger(), nullable=False, server_default="0"),
        sa.Column("primary_impl", sa.Text(), nullable=False, server_default="legacy"),
        sa.Column("changed_by", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        sa.Column(
            "changed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(f"mode IN ({MODES})", name=op.f("ck_gateway_routes_mode")),
        sa.CheckConstraint("percent BETWEEN 0 AND 100", name=op.f("ck_gateway_routes_percent")),
        sa.CheckConstraint(f"primary_impl IN ({IMPLS})", name=op.f("ck_gateway_routes_primary")),
    )
    op.create_table(
        "gateway_route_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("route", sa.Text(), nullable=False),
        sa.Column("old_mode", sa.Text(), nullable=True),
        sa.Column("old_percent", sa.SmallInteger(), nullable=True),
        sa.Column("new_mode", sa.Text(), nullable=False),
        sa.Column("percent", sa.SmallInteger(), nullable=False),
        sa.Column("primary_impl", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index(
        op.f("ix_gateway_route_events_route_id"), "gateway_route_events", ["route", "id"]
    )


def downgrade() -> None:
    op.drop_table("gateway_route_events")
    op.drop_table("gateway_routes")
