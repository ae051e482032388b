"""the gateway's route modes: one mode per route, and every change as an event

Databases where the demo's own migrations created these tables before the
gateway had a history of its own keep them as they are.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MODES = "'legacy', 'async', 'canary', 'shadow'"
IMPLS = "'legacy', 'async'"


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "gateway_routes" not in existing:
        create_routes()
    if "gateway_route_events" not in existing:
        create_events()


def create_routes() -> None:
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
        sa.PrimaryKeyConstraint("route", name="gateway_routes_pkey"),
        sa.CheckConstraint(f"mode IN ({MODES})", name="ck_gateway_routes_mode"),
        sa.CheckConstraint("percent BETWEEN 0 AND 100", name="ck_gateway_routes_percent"),
        sa.CheckConstraint(f"primary_impl IN ({IMPLS})", name="ck_gateway_routes_primary"),
    )


def create_events() -> None:
    op.create_table(
        "gateway_route_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("route", sa.Text(), nullable=False),
        sa.Column("old_mode", sa.Text(), nullable=True),
        sa.Column("old_percent", sa.SmallInteger(), nullable=True),
        sa.Column("new_mode", sa.Text(), nullable=False),
        sa.Column("percent", sa.SmallInteger(), nullable=False),
        sa.Column("primary_impl", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="gateway_route_events_pkey"),
    )
    op.create_index("ix_gateway_route_events_route_id", "gateway_route_events", ["route", "id"])


def downgrade() -> None:
    op.drop_table("gateway_route_events")
    op.drop_table("gateway_routes")
