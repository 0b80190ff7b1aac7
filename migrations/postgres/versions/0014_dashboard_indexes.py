"""Indexes for AdminService GetDashboardStats (docs/dashboard.md).

``idx_users_created_at``: customers registered in the range (``new_users``) is an
index range scan instead of a sequential scan of every customer. (The counts of all
customers by status read every customer whatever the indexes: PostgreSQL's sequential
scan is the cheapest way, so no index is added for them.)

The transaction figures use the existing ``idx_transactions_created_at`` and the
active-plan count ``idx_currentactiveplans_status``.

Revision ID: 0014_dashboard_indexes
Revises: 0013_refunds_adjustments
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014_dashboard_indexes"
down_revision: str | None = "0013_refunds_adjustments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = [
    "CREATE INDEX IF NOT EXISTS idx_users_created_at ON users (created_at)",
]

DOWNGRADE = [
    "DROP INDEX IF EXISTS idx_users_created_at",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
