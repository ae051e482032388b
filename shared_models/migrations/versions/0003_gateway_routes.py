"""formerly the gateway's routing tables; they now belong to the gateway's own history

The gateway's tables are no longer part of the demo's schema: `gateway db
upgrade` creates them under the gateway's own version table (and keeps those
this revision once created in older databases). The revision stays so that
databases already at it keep a known history.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
