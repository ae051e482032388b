"""rollout plans, their events and lease, per-worker samples, shadow sampling and calibration

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def timestamp(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    """Like 0001 and 0002, it leaves alone what an older schema (`metadata.create_all`) holds."""
    inspector = sa.inspect(op.get_bind())
    tables = set(inspector.get_table_names())
    routes = {column["name"] for column in inspector.get_columns("gateway_routes")}
    if "sample_percent" not in routes:
        op.add_column(
            "gateway_routes",
            sa.Column("sample_percent", sa.SmallInteger(), nullable=False, server_default="100"),
        )
        op.create_check_constraint(
            "ck_gateway_routes_sample_percent", "gateway_routes", "sample_percent BETWEEN 1 AND 100"
        )
    if "calibrating" not in routes:
        op.add_column(
            "gateway_routes",
            sa.Column("calibrating", sa.Boolean(), nullable=False, server_default="false"),
        )
    mismatches = {c["name"] for c in inspector.get_columns("gateway_shadow_mismatches")}
    for column in ("primary_seconds", "shadow_seconds"):
        if column not in mismatches:
            op.add_column("gateway_shadow_mismatches", sa.Column(column, sa.Float()))
    for table, create in CREATED.items():
        if table not in tables:
            create()


def create_noise() -> None:
    op.create_table(
        "gateway_shadow_noise",
        sa.Column("route", sa.Text(), nullable=False),
        sa.Column("field", sa.Text(), nullable=False),
        sa.Column("seen", sa.Integer(), nullable=False, server_default="1"),
        timestamp("learned_at"),
        sa.PrimaryKeyConstraint("route", "field", name="gateway_shadow_noise_pkey"),
    )


def create_rollouts() -> None:
    op.create_table(
        "gateway_rollouts",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("route", sa.Text(), nullable=False),
        sa.Column("steps", postgresql.JSONB(), nullable=False),
        sa.Column("analysis", postgresql.JSONB(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False, server_default="0"),
        timestamp("step_started_at"),
        timestamp("step_due_at"),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        timestamp("created_at"),
        timestamp("updated_at"),
        sa.CheckConstraint(
            "state IN ('running', 'paused', 'completed', 'aborted', 'failed')",
            name="ck_gateway_rollouts_state",
        ),
        sa.PrimaryKeyConstraint("id", name="gateway_rollouts_pkey"),
    )
    op.create_index(
        "ix_gateway_rollouts_route",
        "gateway_rollouts",
        ["route"],
        unique=True,
        postgresql_where=sa.text("state IN ('running', 'paused')"),
    )


def create_rollout_events() -> None:
    op.create_table(
        "gateway_rollout_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("rollout_id", sa.BigInteger(), nullable=False),
        sa.Column("route", sa.Text(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("verdict", sa.Text()),
        sa.Column(
            "detail", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")
        ),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        timestamp("at"),
        sa.PrimaryKeyConstraint("id", name="gateway_rollout_events_pkey"),
    )
    op.create_index(
        "ix_gateway_rollout_events_rollout_id_id", "gateway_rollout_events", ["rollout_id", "id"]
    )


def create_lease() -> None:
    op.create_table(
        "gateway_rollout_lease",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="gateway_rollout_lease_pkey"),
    )


def create_samples() -> None:
    op.create_table(
        "gateway_route_samples",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("route", sa.Text(), nullable=False),
        sa.Column("worker", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("latency", postgresql.ARRAY(sa.Integer()), nullable=False),
        timestamp("at"),
        sa.PrimaryKeyConstraint("id", name="gateway_route_samples_pkey"),
    )
    op.create_index("ix_gateway_route_samples_route_at", "gateway_route_samples", ["route", "at"])


def create_webhook_cursors() -> None:
    op.create_table(
        "gateway_webhook_cursors",
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text()),
        timestamp("updated_at"),
        sa.PrimaryKeyConstraint("target", "source", name="gateway_webhook_cursors_pkey"),
    )


CREATED = {
    "gateway_shadow_noise": create_noise,
    "gateway_rollouts": create_rollouts,
    "gateway_rollout_events": create_rollout_events,
    "gateway_rollout_lease": create_lease,
    "gateway_route_samples": create_samples,
    "gateway_webhook_cursors": create_webhook_cursors,
}


def downgrade() -> None:
    for table in (
        "gateway_webhook_cursors",
        "gateway_route_samples",
        "gateway_rollout_lease",
        "gateway_rollout_events",
        "gateway_rollouts",
        "gateway_shadow_noise",
    ):
        op.drop_table(table)
    op.drop_column("gateway_shadow_mismatches", "shadow_seconds")
    op.drop_column("gateway_shadow_mismatches", "primary_seconds")
    op.drop_constraint("ck_gateway_routes_sample_percent", "gateway_routes")
    op.drop_column("gateway_routes", "calibrating")
    op.drop_column("gateway_routes", "sample_percent")
