"""BackupService: backups that are still running, cron schedules, restore drills.

- ``backup_status_enum`` gains ``in_progress`` (an extension to the DDS enum, as
  ``BackupStatus.BACKUP_STATUS_IN_PROGRESS`` says): a Backup row is inserted when its job
  starts and finished ``success`` or ``failed``.
- ``schedule.cron_expression``: the recurrence, a 5-field cron expression in UTC
  (``0 2 * * *``: daily at 02:00). NULL only on rows written before this migration.
- ``schedule.job``: what a run does, ``backup`` (the default) or ``drill`` (a restore
  drill into scratch databases).
- ``schedule.last_run_at``: when the schedule last fired (set by the replica that
  claimed the run).
- ``uq_schedule_task_name``: task names are unique (CreateSchedule answers
  ALREADY_EXISTS).
- ``schedule.interval_seconds`` stays, legacy: the period of schedules written before
  cron expressions existed; nothing new writes it and the scheduler ignores it when a
  cron expression is set.

Downgrade: PostgreSQL cannot drop an enum label, so the type is rebuilt without
``in_progress``; backups still ``in_progress`` become ``failed`` first (a downgraded
server could not have finished them anyway).

Revision ID: 0016_backup_service
Revises: 0015_service_account_description
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0016_backup_service"
down_revision: str | None = "0015_service_account_description"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = [
    # Inside the migration's transaction: allowed since PostgreSQL 12; the new label is
    # usable once the migration commits (nothing below uses it).
    "ALTER TYPE backup_status_enum ADD VALUE IF NOT EXISTS 'in_progress'",
    "ALTER TABLE schedule ADD COLUMN cron_expression TEXT",
    "ALTER TABLE schedule ADD COLUMN job TEXT NOT NULL DEFAULT 'backup'",
    "ALTER TABLE schedule ADD COLUMN last_run_at TIMESTAMPTZ",
    """ALTER TABLE schedule ADD CONSTRAINT ck_schedule_job
         CHECK (job IN ('backup', 'drill'))""",
    "CREATE UNIQUE INDEX uq_schedule_task_name ON schedule (task_name)",
    "COMMENT ON COLUMN schedule.interval_seconds IS "
    "'Legacy: the period of schedules written before cron_expression (migration 0016); "
    "nothing new writes it'",
]

DOWNGRADE = [
    "DROP INDEX uq_schedule_task_name",
    "ALTER TABLE schedule DROP CONSTRAINT ck_schedule_job",
    "ALTER TABLE schedule DROP COLUMN last_run_at",
    "ALTER TABLE schedule DROP COLUMN job",
    "ALTER TABLE schedule DROP COLUMN cron_expression",
    "COMMENT ON COLUMN schedule.interval_seconds IS NULL",
    "UPDATE backup SET backup_status = 'failed' WHERE backup_status = 'in_progress'",
    "ALTER TYPE backup_status_enum RENAME TO backup_status_enum_0016",
    "CREATE TYPE backup_status_enum AS ENUM ('failed', 'success')",
    """ALTER TABLE backup ALTER COLUMN backup_status TYPE backup_status_enum
         USING backup_status::text::backup_status_enum""",
    "DROP TYPE backup_status_enum_0016",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
