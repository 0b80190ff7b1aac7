"""Refunds linked to what they refund; wallet adjustments and their four-eyes approval.

- ``transactions.refund_of_txn_id``: a refund (source ``refund``) names the transaction it
  refunds (a recharge or a top-up); the reversal of a refund the gateway refused names
  the refund. The original row is never edited: what is left to refund is its amount
  less its refunds (success or pending) plus their reversals (server/ledger; docs/
  payments.md "Refunds").
- ``wallet_adjustments``: one row per AdjustWallet, keyed by its ledger row, with the
  reason, who asked, and for one above the approval threshold who approved or rejected
  it. ``status``: ``applied`` (at or below the threshold: the ledger row succeeded at
  once), ``pending`` (the ledger row is ``pending``: nothing moved), ``approved`` (the
  row succeeded when a second admin approved it) or ``rejected`` (the row failed). The
  approver is never the requester (checked here too).

Revision ID: 0013_refunds_adjustments
Revises: 0012_recharges
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013_refunds_adjustments"
down_revision: str | None = "0012_recharges"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = [
    """ALTER TABLE transactions ADD COLUMN refund_of_txn_id INT
         CONSTRAINT fk_transactions_refund_of REFERENCES transactions (txn_id)""",
    """CREATE INDEX idx_transactions_refund_of ON transactions (refund_of_txn_id)
         WHERE refund_of_txn_id IS NOT NULL""",
    """CREATE TABLE wallet_adjustments (
         txn_id         INT NOT NULL,
         user_id        INT NOT NULL,
         requested_by   INT NOT NULL,
         reason         TEXT NOT NULL,
         status         TEXT NOT NULL,
         decided_by     INT,
         decided_at     TIMESTAMPTZ,
         decision_note  TEXT,
         created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
         CONSTRAINT wallet_adjustments_pkey PRIMARY KEY (txn_id),
         CONSTRAINT fk_wallet_adjustments_txn FOREIGN KEY (txn_id)
             REFERENCES transactions (txn_id),
         CONSTRAINT fk_wallet_adjustments_user FOREIGN KEY (user_id)
             REFERENCES users (user_id),
         CONSTRAINT fk_wallet_adjustments_requested_by FOREIGN KEY (requested_by)
             REFERENCES admins (admin_id),
         CONSTRAINT fk_wallet_adjustments_decided_by FOREIGN KEY (decided_by)
             REFERENCES admins (admin_id),
         CONSTRAINT ck_wallet_adjustments_status
             CHECK (status IN ('applied', 'pending', 'approved', 'rejected')),
         CONSTRAINT ck_wallet_adjustments_four_eyes
             CHECK (status <> 'approved' OR decided_by <> requested_by)
       )""",
    "CREATE INDEX idx_wallet_adjustments_status ON wallet_adjustments (status, created_at)",
    "CREATE INDEX idx_wallet_adjustments_user ON wallet_adjustments (user_id, created_at)",
]

DOWNGRADE = [
    "DROP TABLE wallet_adjustments",
    "DROP INDEX idx_transactions_refund_of",
    "ALTER TABLE transactions DROP COLUMN refund_of_txn_id",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
