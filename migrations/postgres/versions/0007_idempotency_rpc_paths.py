"""Idempotency keys name their RPC by its full path.

Keys record the RPC they were claimed for, and a replay must name the same RPC. Before
this revision two RPCs recorded short names (``WalletService.TopUp``,
``WalletService.ConfirmPayment``) and the scheduler's autopay recorded ``autopay``;
they now record the path the call's audit scope carries
(``/gencharge.v1.WalletService/TopUp``, ``scheduler/autopay``), like every other RPC.
Keys still alive (24 hours) are renamed, so a client retrying a top-up across the
upgrade gets its original response instead of ``IDEMPOTENCY_KEY_REUSED``.

Revision ID: 0007_idempotency_rpc_paths
Revises: 0006_bill_reminder_unique
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007_idempotency_rpc_paths"
down_revision: str | None = "0006_bill_reminder_unique"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (name before, name after)
RENAMES = [
    ("WalletService.TopUp", "/gencharge.v1.WalletService/TopUp"),
    ("WalletService.ConfirmPayment", "/gencharge.v1.WalletService/ConfirmPayment"),
    ("autopay", "scheduler/autopay"),
]


def upgrade() -> None:
    for before, after in RENAMES:
        op.execute(f"UPDATE idempotency_keys SET rpc = '{after}' WHERE rpc = '{before}'")


def downgrade() -> None:
    for before, after in RENAMES:
        op.execute(f"UPDATE idempotency_keys SET rpc = '{before}' WHERE rpc = '{after}'")
