"""Every audit event carries an id that never repeats, generated when it is written.

The relay used to ship an outbox row as ``AuditLog.audit_id = str(outbox_id)`` and to
take a duplicate ``audit_id`` as "already shipped". ``outbox_id`` comes from a sequence,
and a sequence can go back (a restore of an earlier dump, a failover to a replica that
lags, a hand-made ``setval``): new events then got the ids of events MongoDB already
held, were taken as duplicates, deleted from the outbox and lost.

- ``event_id uuid NOT NULL DEFAULT gen_random_uuid()`` (PostgreSQL 13+): the database
  draws it when the row is inserted, by whatever statement inserts it; the relay ships
  it as ``audit_id``. A re-send of the same row is still a duplicate; a new event never is.
- ``event_id`` becomes the primary key. ``outbox_id`` stays (identity, indexed) as the
  order batches are taken in; it need no longer be unique, so a sequence that went back
  while events wait in the outbox cannot make a write fail on the primary key either.
- Rows in the outbox at the upgrade get a fresh id each (a volatile default fills every
  existing row). A row whose shipment was cut short just before the upgrade (stored in
  MongoDB, not yet deleted here) is then stored a second time under its new id: never
  lost, at worst twice.

Revision ID: 0010_audit_event_ids
Revises: 0009_contact_verification
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010_audit_event_ids"
down_revision: str | None = "0009_contact_verification"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = [
    "ALTER TABLE audit_outbox ADD COLUMN event_id uuid NOT NULL DEFAULT gen_random_uuid()",
    "ALTER TABLE audit_outbox DROP CONSTRAINT audit_outbox_pkey",
    "ALTER TABLE audit_outbox ADD CONSTRAINT audit_outbox_pkey PRIMARY KEY (event_id)",
    "CREATE INDEX idx_audit_outbox_outbox_id ON audit_outbox (outbox_id)",
]

DOWNGRADE = [
    "DROP INDEX IF EXISTS idx_audit_outbox_outbox_id",
    "ALTER TABLE audit_outbox DROP CONSTRAINT audit_outbox_pkey",
    # Fails if a sequence that went back left two waiting rows with one outbox_id: ship
    # the outbox first (the relay empties it), then downgrade.
    "ALTER TABLE audit_outbox ADD CONSTRAINT audit_outbox_pkey PRIMARY KEY (outbox_id)",
    "ALTER TABLE audit_outbox DROP COLUMN event_id",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
