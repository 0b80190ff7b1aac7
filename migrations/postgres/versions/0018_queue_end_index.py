"""The end of the plan queue on a phone number is one index lookup.

Every recharge reads, under the number's lock, when the last plan covering the number
ends (``server/recharge/queries.py`` ``QUEUE_END_SQL``: ``max(valid_to)`` of the
number's active or queued plans). With only ``(phone_number, status)`` and
``(valid_to)`` to choose from, PostgreSQL walked ``idx_currentactiveplans_valid_to``
backwards from the latest plan of *anyone*, filtering on the number: for a number
without a plan (every customer's first recharge) that read every covering plan in the
table, and a recharge got slower as the business grew (`make bench`, large database:
3.5 ms for this one read with ~50,000 covering plans; pgbench 16x slower than on the
small database).

``idx_currentactiveplans_queue_end`` on ``(phone_number, valid_to)``, partial on the
covering statuses the query names, makes ``max(valid_to)`` one descent of the index.

Revision ID: 0018_queue_end_index
Revises: 0017_service_token_cutoff
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0018_queue_end_index"
down_revision: str | None = "0017_service_token_cutoff"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = [
    "CREATE INDEX IF NOT EXISTS idx_currentactiveplans_queue_end"
    " ON currentactiveplans (phone_number, valid_to)"
    " WHERE status IN ('active', 'queued')",
]

DOWNGRADE = [
    "DROP INDEX IF EXISTS idx_currentactiveplans_queue_end",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
