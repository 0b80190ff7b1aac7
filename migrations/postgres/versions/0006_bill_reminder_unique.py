"""One bill reminder per bill, enforced by the database.

The bill-reminder job already runs under an advisory lock and skips bills that have a
reminder, so two replicas never create the same one; this unique index makes the rule
hold whatever path writes the table (a manual insert, a future job, a bug). A bill is
(user, due date, phone number); NULLS NOT DISTINCT (PostgreSQL 15+) makes two
reminders without a phone number for the same user and due date collide as well.

Revision ID: 0006_bill_reminder_unique
Revises: 0005_money_path
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006_bill_reminder_unique"
down_revision: str | None = "0005_money_path"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = [
    # Duplicates written before this revision (by hand, or before 0005 gave reminders a
    # phone number) would stop the index: keep one reminder per bill, the paid one if
    # any, else the oldest. Nothing references billreminders rows.
    """DELETE FROM billreminders
        WHERE reminder_id IN (
            SELECT reminder_id FROM (
                SELECT reminder_id,
                       row_number() OVER (
                           PARTITION BY user_id, due_date, phone_number
                           ORDER BY (status = 'paid') DESC, reminder_id) AS rank
                FROM billreminders) ranked
            WHERE rank > 1)""",
    """CREATE UNIQUE INDEX uq_billreminders_bill
         ON billreminders (user_id, due_date, phone_number) NULLS NOT DISTINCT""",
]

DOWNGRADE = [
    "DROP INDEX IF EXISTS uq_billreminders_bill",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
