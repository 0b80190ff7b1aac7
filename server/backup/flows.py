"""Backup work that opens its own transactions: schedule changes (the unique task name
checked again by the database: a concurrent change with the same name is
ALREADY_EXISTS, not INTERNAL) and the scheduler's claim of due runs.

The jobs themselves (backup, restore, drill) hold the job lock (server/backup/jobs.py)
and record themselves with server/backup/domain.py: ``start_backup`` /
``finish_backup`` and ``log_job``.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from server.backup import domain, jobs
from server.backup.context import JobContext, domain_error
from server.backup.domain import ClaimedRun, Schedule, ScheduleInput
from server.backup.errors import BackupError
from server.backup.physical import wal
from server.core.db import Database
from server.core.errors import AlreadyExists, DomainError, FailedPrecondition

log = logging.getLogger("gencharge.backup")

#: The unique index on schedule.task_name (migration 0016).
_TASK_NAME_INDEX = "uq_schedule_task_name"


def _taken(task_name: str) -> AlreadyExists:
    return AlreadyExists(
        f"a schedule named {task_name.strip()[: domain.MAX_TASK_NAME]!r} exists",
        reason="TASK_NAME_TAKEN",
    )


async def create_schedule(db: Database, new: ScheduleInput, now: datetime) -> Schedule:
    """CreateSchedule in one transaction with its audit event."""
    try:
        async with db.transaction() as conn:
            return await domain.create_schedule(new, now, conn=conn)
    except IntegrityError as exc:
        if _TASK_NAME_INDEX not in str(exc):
            raise
        raise _taken(new.task_name) from None


async def update_schedule(db: Database, change: ScheduleInput, now: datetime) -> Schedule:
    """UpdateSchedule in one transaction with its audit event."""
    try:
        async with db.transaction() as conn:
            return await domain.update_schedule(change, now, conn=conn)
    except IntegrityError as exc:
        if _TASK_NAME_INDEX not in str(exc):
            raise
        raise _taken(change.task_name) from None


async def claim_due(db: Database, now: datetime) -> list[ClaimedRun]:
    """The due runs this replica claimed at ``now`` (committed before it returns, so
    the runs start after the claim is visible to every other replica)."""
    async with db.side_transaction() as conn:
        return await domain.claim_due_schedules(now, conn=conn)


async def delete_backup(ctx: JobContext, backup_id: str) -> None:
    """DeleteBackup: under the job lock (a restore or drill may be reading the files),
    the checks, the stored files, then the row (audited). A storage out of reach leaves
    the row, so the delete can be tried again; files already gone are no error."""
    async with jobs.job_lock(ctx.engine, job="delete"):
        async with ctx.resources.db.read_only() as conn:
            await domain.check_deletable(backup_id, conn=conn)
        await _delete_files(ctx, backup_id)
        async with ctx.resources.db.transaction() as conn:
            await domain.delete_backup(backup_id, conn=conn)


async def _delete_files(ctx: JobContext, backup_id: str) -> None:
    try:
        await ctx.storage.delete_prefix(backup_id)
    except BackupError as exc:
        raise domain_error(exc) from None


async def expire_backups(ctx: JobContext, now: datetime) -> list[str]:
    """Retention: delete the backups older than ``backup_retention_days`` (never the
    newest successful one, nor one a newer backup builds on: domain
    ``backups_to_expire``), files first; then the archived WAL no kept backup needs.
    Skipped, returning nothing, while another job holds the lock; a backup whose files
    cannot be removed now is left for next time."""
    deleted: list[str] = []
    try:
        async with jobs.job_lock(ctx.engine, job="retention"):
            async with ctx.resources.db.read_only() as conn:
                expired = await domain.backups_to_expire(
                    now, ctx.settings.backup_retention_days, conn=conn
                )
            for backup in reversed(expired):  # an incremental before the backup it builds on
                try:
                    await _delete_files(ctx, backup.backup_id)
                    async with ctx.resources.db.transaction() as conn:
                        await domain.delete_backup(backup.backup_id, conn=conn)
                except DomainError as exc:
                    log.warning(
                        "expired backup not deleted",
                        extra={"backup_id": backup.backup_id, "reason": exc.reason},
                    )
                    continue
                deleted.append(backup.backup_id)
            await _prune_wal_archive(ctx)
    except FailedPrecondition as exc:
        if exc.reason != jobs.JOB_RUNNING:
            raise
    if deleted:
        log.info("expired backups deleted", extra={"backups": deleted})
    return deleted


async def _prune_wal_archive(ctx: JobContext) -> None:
    """Delete the archived WAL segments older than the oldest kept backup's physical
    part (every kept chain's own WAL is in storage too): the archive folder grows no
    further than the retention window. Nothing happens while no backup has a physical
    part, or without an archive folder."""
    archive = ctx.settings.backup_wal_archive_dir
    if archive is None or not await asyncio.to_thread(archive.is_dir):
        return
    async with ctx.resources.db.read_only() as conn:
        oldest = await domain.oldest_physical_start(conn=conn)
    if oldest is None:
        return
    removed = await asyncio.to_thread(wal.prune, archive, oldest)
    if removed:
        log.info(
            "archived WAL pruned",
            extra={"segments": len(removed), "first": removed[0], "last": removed[-1]},
        )
