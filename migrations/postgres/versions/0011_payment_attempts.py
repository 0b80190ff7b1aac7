"""Payment attempts: one row per external charge, so none is left between charge and record.

- payment_attempts: one row per charge made through the payment gateway, keyed by our
  gateway reference (``topup:<caller>:<request_id>``, ``<caller>/<request_id>`` for a
  recharge). Written in the transaction that claims the call's idempotency key, with
  everything needed to record the outcome without the original request (``intent``);
  ``state`` moves ``charging`` -> ``recorded`` (the ledger row exists) or ``released``
  (nothing was captured: the key was released). The recovery job asks the gateway about
  attempts left ``charging`` (server/recovery; docs/payments.md).

Revision ID: 0011_payment_attempts
Revises: 0010_audit_event_ids
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011_payment_attempts"
down_revision: str | None = "0010_audit_event_ids"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = [
    """CREATE TABLE payment_attempts (
         reference      TEXT NOT NULL,
         kind           TEXT NOT NULL,
         caller         TEXT NOT NULL,
         request_id     TEXT NOT NULL,
         rpc            TEXT NOT NULL,
         request_hash   TEXT NOT NULL,
         user_id        INT NOT NULL
             CONSTRAINT fk_payment_attempts_user REFERENCES users (user_id),
         intent         JSONB NOT NULL,
         state          TEXT NOT NULL DEFAULT 'charging',
         payment_id     TEXT,
         txn_id         INT,
         charges        INT NOT NULL DEFAULT 1,
         checks         INT NOT NULL DEFAULT 0,
         next_check_at  TIMESTAMPTZ,
         last_error     TEXT,
         created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
         updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
         CONSTRAINT payment_attempts_pkey PRIMARY KEY (reference),
         CONSTRAINT ck_payment_attempts_kind CHECK (kind IN ('top_up', 'recharge')),
         CONSTRAINT ck_payment_attempts_state
             CHECK (state IN ('charging', 'recorded', 'released'))
       )""",
    """CREATE INDEX idx_payment_attempts_charging ON payment_attempts (updated_at)
         WHERE state = 'charging'""",
    "CREATE INDEX idx_payment_attempts_updated_at ON payment_attempts (updated_at)",
    "CREATE INDEX idx_payment_attempts_user_id ON payment_attempts (user_id)",
]

DOWNGRADE = ["DROP TABLE IF EXISTS payment_attempts"]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
