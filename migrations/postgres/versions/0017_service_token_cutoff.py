"""Service-account access tokens issued before a cut-off stop working.

- ``service_accounts.tokens_valid_after``: when set, a service access token whose
  issued-at (``iat``, whole seconds) is before this moment's whole second is refused
  (UNAUTHENTICATED ``SESSION_ENDED``, as an ended session's tokens are). A restore sets
  it on every account (``server.auth.domain.retire_service_tokens``): service tokens
  carry no session for ``end_every_session`` to end. NULL (every existing row): no
  cut-off.

Downgrade drops the column: tokens issued before a cut-off would work again until they
expire (``GENCHARGE_ACCESS_TOKEN_TTL_SECONDS``).

Revision ID: 0017_service_token_cutoff
Revises: 0016_backup_service
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0017_service_token_cutoff"
down_revision: str | None = "0016_backup_service"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = [
    "ALTER TABLE service_accounts ADD COLUMN tokens_valid_after TIMESTAMPTZ",
]

DOWNGRADE = [
    "ALTER TABLE service_accounts DROP COLUMN tokens_valid_after",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
