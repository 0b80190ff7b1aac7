"""The money path: idempotency keys, cashback/adjustment ledger sources, AutoPay and
BillReminders extended for scheduling.

- idempotency_keys: one row per (caller, request_id) for every money-moving RPC,
  inserted in the same transaction as the money movement. A concurrent duplicate blocks
  on the primary key until the first commits, then finds the row: executed once.
  Kept at least 24 hours (expires_at), then purged by the scheduler.
- txn_source_enum gains 'cashback' (offer cashback credited after a recharge) and
  'adjustment' (admin wallet adjustments).
- autopay gains the phone number to recharge and scheduling state; billreminders gain
  the amount due and the phone number.

Revision ID: 0005_money_path
Revises: 0004_identity_access
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005_money_path"
down_revision: str | None = "0004_identity_access"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = [
    "ALTER TYPE txn_source_enum ADD VALUE IF NOT EXISTS 'cashback'",
    "ALTER TYPE txn_source_enum ADD VALUE IF NOT EXISTS 'adjustment'",
    """CREATE TABLE idempotency_keys (
         caller        TEXT NOT NULL,
         request_id    TEXT NOT NULL,
         rpc           TEXT NOT NULL,
         request_hash  TEXT NOT NULL,
         result        JSONB,
         created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
         expires_at    TIMESTAMPTZ NOT NULL,
         CONSTRAINT idempotency_keys_pkey PRIMARY KEY (caller, request_id)
       )""",
    "CREATE INDEX idx_idempotency_keys_expires_at ON idempotency_keys (expires_at)",
    """ALTER TABLE autopay
         ADD COLUMN phone_number VARCHAR,
         ADD COLUMN updated_at TIMESTAMPTZ,
         ADD COLUMN last_run_at TIMESTAMPTZ,
         ADD COLUMN last_error TEXT""",
    "CREATE INDEX idx_autopay_due ON autopay (next_due_date) WHERE status = 'enabled'",
    """ALTER TABLE billreminders
         ADD COLUMN amount NUMERIC(10, 2),
         ADD COLUMN phone_number VARCHAR,
         ADD COLUMN paid_txn_id INT
             CONSTRAINT fk_billreminders_paid_txn REFERENCES transactions (txn_id),
         ADD CONSTRAINT ck_billreminders_amount_nonnegative
             CHECK (amount IS NULL OR amount >= 0)""",
    "CREATE INDEX idx_transactions_user_created ON transactions (user_id, created_at DESC)",
]

DOWNGRADE = [
    "DROP INDEX IF EXISTS idx_transactions_user_created",
    """ALTER TABLE billreminders
         DROP CONSTRAINT IF EXISTS ck_billreminders_amount_nonnegative,
         DROP COLUMN IF EXISTS paid_txn_id,
         DROP COLUMN IF EXISTS phone_number,
         DROP COLUMN IF EXISTS amount""",
    "DROP INDEX IF EXISTS idx_autopay_due",
    """ALTER TABLE autopay
         DROP COLUMN IF EXISTS last_error,
         DROP COLUMN IF EXISTS last_run_at,
         DROP COLUMN IF EXISTS updated_at,
         DROP COLUMN IF EXISTS phone_number""",
    "DROP TABLE IF EXISTS idempotency_keys",
    # PostgreSQL cannot drop enum values: rebuild the type without the two new ones.
    "DELETE FROM transactions WHERE source IN ('cashback', 'adjustment')",
    "DROP VIEW IF EXISTS transaction_summary_v",
    "ALTER TYPE txn_source_enum RENAME TO txn_source_enum_0005",
    """CREATE TYPE txn_source_enum AS ENUM
         ('recharge', 'wallet_topup', 'refund', 'referral_reward', 'autopay')""",
    """ALTER TABLE transactions ALTER COLUMN source TYPE txn_source_enum
         USING source::text::txn_source_enum""",
    "DROP TYPE txn_source_enum_0005",
    """CREATE VIEW transaction_summary_v AS
        SELECT
            t.txn_id,
            t.user_id,
            u.name AS user_name,
            t.category,
            t.txn_type,
            t.amount,
            t.service_type,
            p.plan_name,
            t.status AS transaction_status,
            t.payment_method,
            t.created_at
        FROM transactions t
        JOIN users u ON t.user_id = u.user_id
        LEFT JOIN plans p ON t.plan_id = p.plan_id
        WHERE t.status IS NOT NULL""",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
