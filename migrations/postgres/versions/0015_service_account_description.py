"""Service accounts keep the description they are created with
(``ServiceAccount.description``, AdminService CreateServiceAccount and
``gencharge create-service-account --description``).

Revision ID: 0015_service_account_description
Revises: 0014_dashboard_indexes
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0015_service_account_description"
down_revision: str | None = "0014_dashboard_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = [
    "ALTER TABLE service_accounts ADD COLUMN IF NOT EXISTS description TEXT",
]

DOWNGRADE = [
    "ALTER TABLE service_accounts DROP COLUMN IF EXISTS description",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
