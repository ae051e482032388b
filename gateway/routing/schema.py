"""The gateway's tables in PostgreSQL, as its own migrations create them (`gateway.ops.migrations`).

    gateway_routes             each route's stored mode; `version`: the id of the event that set it
    gateway_route_events       every mode change: who, when, why, old and new mode
    gateway_workers            the route-table version each worker of each instance holds
    gateway_shadow_mismatches  the newest shadow mismatches per route, with both sides' latencies
    gateway_shadow_noise       per route, the answer fields that differ between two legacy runs
    gateway_rollouts           rollout plans: their steps, state and current step
    gateway_rollout_events     every plan action and verdict, with its evidence
    gateway_rollout_lease      which worker of the fleet drives the plans, until when
    gateway_route_samples      per-worker request and comparison counts of routes under a plan
    gateway_webhook_cursors    per webhook, the last event of each kind delivered to it

The tables belong to the gateway, not to the app: they sit beside whatever
schema the app has.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

MODES = "'legacy', 'async', 'canary', 'shadow'"
IMPLS = "'legacy', 'async'"
PLAN_STATES = "'running', 'paused', 'completed', 'aborted', 'failed'"
ACTIVE_PLAN = text("state IN ('running', 'paused')")

metadata = MetaData(
    naming_convention={
        "pk": "%(table_name)s_pkey",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    }
)


def created_at(name: str = "at") -> Column[object]:
    return Column(name, DateTime(timezone=True), nullable=False, server_default=func.now())


routes_table = Table(
    "gateway_routes",
    metadata,
    Column("route", Text, primary_key=True),
    Column("mode", Text, nullable=False),
    Column("percent", SmallInteger, nullable=False, server_default="0"),
    Column("primary_impl", Text, nullable=False, server_default="legacy"),
    Column("changed_by", Text, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    created_at("changed_at"),
    Column("version", BigInteger, nullable=False, server_default="0"),
    # shadow only: the share of requests run twice, and legacy-against-legacy calibration
    Column("sample_percent", SmallInteger, nullable=False, server_default="100"),
    Column("calibrating", Boolean, nullable=False, server_default="false"),
    CheckConstraint(f"mode IN ({MODES})", name="mode"),
    CheckConstraint("percent BETWEEN 0 AND 100", name="percent"),
    CheckConstraint(f"primary_impl IN ({IMPLS})", name="primary"),
    CheckConstraint("sample_percent BETWEEN 1 AND 100", name="sample_percent"),
)
events_table = Table(
    "gateway_route_events",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("route", Text, nullable=False),
    Column("old_mode", Text),
    Column("old_percent", SmallInteger),
    Column("new_mode", Text, nullable=False),
    Column("percent", SmallInteger, nullable=False),
    Column("primary_impl", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("reason", Text, nullable=False),
    created_at(),
    Index(None, "route", "id"),
)
workers_table = Table(
    "gateway_workers",
    metadata,
    Column("worker", Text, primary_key=True),  # instance/pid
    Column("instance", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("version", BigInteger, nullable=False),  # of the route table the worker holds
    Column("listening", Boolean, nullable=False),
    created_at("started_at"),
    created_at("seen_at"),
)
mismatches_table = Table(
    "gateway_shadow_mismatches",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("route", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("query", Text, nullable=False),
    Column("primary_impl", Text, nullable=False),
    Column("primary_status", SmallInteger, nullable=False),
    Column("shadow_status", SmallInteger, nullable=False),
    Column("diff", Text, nullable=False),
    Column("worker", Text, nullable=False),
    created_at(),
    Column("primary_seconds", Float),
    Column("shadow_seconds", Float),
    Index(None, "route", "id"),
)
noise_table = Table(
    "gateway_shadow_noise",
    metadata,
    Column("route", Text, primary_key=True),
    Column("field", Text, primary_key=True),  # a path into the body, e.g. items[].updated_at
    Column("seen", Integer, nullable=False, server_default="1"),
    created_at("learned_at"),
)
rollouts_table = Table(
    "gateway_rollouts",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("route", Text, nullable=False),
    Column("steps", JSONB, nullable=False),
    Column("analysis", JSONB, nullable=False),
    Column("state", Text, nullable=False),
    Column("step", Integer, nullable=False, server_default="0"),
    created_at("step_started_at"),
    # when the step may pass: its duration after it started, later for each inconclusive verdict
    created_at("step_due_at"),
    Column("created_by", Text, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    created_at("created_at"),
    created_at("updated_at"),
    CheckConstraint(f"state IN ({PLAN_STATES})", name="state"),
    # at most one plan per route is running or paused
    Index(None, "route", unique=True, postgresql_where=ACTIVE_PLAN),
)
rollout_events_table = Table(
    "gateway_rollout_events",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("rollout_id", BigInteger, nullable=False),
    Column("route", Text, nullable=False),
    Column("step", Integer, nullable=False),
    Column("kind", Text, nullable=False),
    Column("verdict", Text),
    Column("detail", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("actor", Text, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    created_at(),
    Index(None, "rollout_id", "id"),
)
lease_table = Table(
    "gateway_rollout_lease",
    metadata,
    Column("name", Text, primary_key=True),
    Column("holder", Text, nullable=False),
    Column("epoch", BigInteger, nullable=False),  # grows at every change of holder: a fence
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
samples_table = Table(
    "gateway_route_samples",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("route", Text, nullable=False),
    Column("worker", Text, nullable=False),
    Column("kind", Text, nullable=False),  # legacy | async | match | mismatch | error
    Column("requests", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("latency", ARRAY(Integer), nullable=False),  # counts per bucket (gateway.rollout)
    created_at(),
    Index(None, "route", "at"),
)
webhook_cursors_table = Table(
    "gateway_webhook_cursors",
    metadata,
    Column("target", Text, primary_key=True),
    Column("source", Text, primary_key=True),  # the events table
    Column("last_id", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    created_at("updated_at"),
)
