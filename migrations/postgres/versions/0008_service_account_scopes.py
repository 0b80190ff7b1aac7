"""Service accounts hold scopes.

``service_accounts.scopes`` lists what an account may do as a service
(``payments.confirm``, ``recharges.write``, ``recharges.read``: server/auth/scopes.py);
its access tokens carry them and the access layer checks them per RPC.

Accounts that exist before this revision get no scopes: until an operator grants them
(``gencharge set-service-account-scopes <client_id> --scope ...``) they can call only
public RPCs and GetMe. Granting everything instead would keep every existing account
able to confirm any payment and debit any wallet, which is what this revision ends.

Revision ID: 0008_service_account_scopes
Revises: 0007_idempotency_rpc_paths
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008_service_account_scopes"
down_revision: str | None = "0007_idempotency_rpc_paths"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE service_accounts ADD COLUMN scopes TEXT[] NOT NULL DEFAULT '{}'")


def downgrade() -> None:
    op.execute("ALTER TABLE service_accounts DROP COLUMN IF EXISTS scopes")
