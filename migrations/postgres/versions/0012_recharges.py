"""What a recharge showed beyond its ledger row, kept for GetRecharge and ListRecharges.

The Recharge response carries the plan period the recharge created, the offer's
discount and cashback and the cashback's wallet credit. The ledger row alone holds
none of them (the amount is the price after the discount; the cashback is a row of
its own), so reading a recharge back used to show zeros. ``recharges`` keeps them, one
row per recharge debit, written with it:

- ``active_plan_id``: the ``currentactiveplans`` row the recharge queued or activated
  (NULL while an external payment is pending, or if it failed);
- ``discount``, ``cashback``: what the offer gave (the cashback as promised while the
  payment is pending; as credited once it settled);
- ``cashback_txn_id``: the wallet credit of the cashback, once made;
- ``bonus``: the offer's extra allowances added to the plan (PlanBenefits-shaped JSON,
  like ``offers.bonus``), NULL if none.

Recharges made before this revision are filled in from what the ledger shows: the plan
period created with it (same user, plan and number, the first one created at or after
the debit), the discount as the plan's price minus the amount paid (when an offer was
applied; exact unless the price changed since), the first cashback credit of the same
user, plan and offer made at or after the debit, the offer's bonus as it is now.

Revision ID: 0012_recharges
Revises: 0011_payment_attempts
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012_recharges"
down_revision: str | None = "0011_payment_attempts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = [
    """CREATE TABLE recharges (
         txn_id           INT NOT NULL,
         active_plan_id   INT,
         discount         NUMERIC(10, 2) NOT NULL DEFAULT 0,
         cashback         NUMERIC(10, 2) NOT NULL DEFAULT 0,
         cashback_txn_id  INT,
         bonus            JSONB,
         CONSTRAINT recharges_pkey PRIMARY KEY (txn_id),
         CONSTRAINT fk_recharges_txn FOREIGN KEY (txn_id) REFERENCES transactions (txn_id),
         CONSTRAINT fk_recharges_active_plan
             FOREIGN KEY (active_plan_id) REFERENCES currentactiveplans (id),
         CONSTRAINT fk_recharges_cashback_txn
             FOREIGN KEY (cashback_txn_id) REFERENCES transactions (txn_id),
         CONSTRAINT ck_recharges_amounts_nonnegative CHECK (discount >= 0 AND cashback >= 0)
       )""",
    """INSERT INTO recharges (txn_id, active_plan_id, discount, cashback, cashback_txn_id,
                              bonus)
       SELECT t.txn_id,
              cap.id,
              CASE WHEN t.offer_id IS NOT NULL THEN greatest(p.price - t.amount, 0) ELSE 0 END,
              coalesce(cb.amount, 0),
              cb.txn_id,
              o.bonus
         FROM transactions t
         JOIN plans p ON p.plan_id = t.plan_id
         LEFT JOIN offers o ON o.offer_id = t.offer_id
         LEFT JOIN LATERAL (
              SELECT c.id FROM currentactiveplans c
               WHERE t.status = 'success'
                 AND c.user_id = t.user_id AND c.plan_id = t.plan_id
                 AND c.phone_number = t.to_phone_number AND c.created_at >= t.created_at
               ORDER BY c.created_at, c.id LIMIT 1) cap ON true
         LEFT JOIN LATERAL (
              SELECT c.txn_id, c.amount FROM transactions c
               WHERE t.offer_id IS NOT NULL AND t.status = 'success'
                 AND c.user_id = t.user_id AND c.source = 'cashback'
                 AND c.offer_id = t.offer_id AND c.plan_id = t.plan_id
                 AND c.created_at >= t.created_at
               ORDER BY c.created_at, c.txn_id LIMIT 1) cb ON true
        WHERE t.source IN ('recharge', 'autopay') AND t.txn_type = 'debit'""",
]

DOWNGRADE = [
    "DROP TABLE IF EXISTS recharges",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
