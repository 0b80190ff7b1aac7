"""Backup schedules run by the in-process scheduler (server/ops/scheduler.py).

Each tick claims the due schedules (``FOR UPDATE SKIP LOCKED``: with several replicas
each due run fires once, on the replica that claimed it) and starts their jobs in the
background, so a long backup never holds up the tick's other jobs; then retention
deletes expired backups. A run that finds another job holding the job lock tries again
for up to 10 minutes, then is skipped and logged (its schedule has already moved to its
next time).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from server.audit.scope import job_scope
from server.backup import domain, flows
from server.backup.backup_job import BackupRequest, create_backup
from server.backup.context import JobContext, ignore
from server.backup.domain import ClaimedRun, Schedule
from server.backup.drill_job import run_drill
from server.backup.jobs import JOB_RUNNING
from server.core.errors import DomainError, FailedPrecondition

log = logging.getLogger("gencharge.backup")

#: A scheduled run that finds another job running (a retention pass, another replica's
#: drill) tries again every LOCK_RETRY_SECONDS, LOCK_ATTEMPTS times in all (10 minutes),
#: before it is skipped and logged: a nightly backup is not lost to a moment's overlap.
LOCK_ATTEMPTS = 120
LOCK_RETRY_SECONDS = 5.0

#: Starts a job in the background (the scheduler keeps the task).
Spawn = Callable[[Awaitable[Any]], None]


@dataclass
class BackupCounts:
    """What one tick did: runs claimed (and started), backups expired."""

    claimed: int = 0
    expired: list[str] = field(default_factory=list)


async def scheduled_request(ctx: JobContext, schedule: Schedule) -> BackupRequest:
    """What a backup schedule's run takes: a full backup of both databases, or, when
    the schedule names a backup, a backup like that one (its databases, tables and
    collections, and kind: naming an incremental backup makes every run incremental)."""
    description = f"scheduled: {schedule.task_name}"[:500]
    if not schedule.backup_id:
        return BackupRequest(description=description)
    async with ctx.resources.db.read_only() as conn:
        template = await domain.get_backup(schedule.backup_id, conn=conn)
    tables: tuple[str, ...] = ()
    if (template.backup_data or "all") != "all":
        tables = tuple(
            str(name)
            for key in ("tables", "collections")
            for name in template.details.get(key) or ()
        )
    return BackupRequest(
        source_db=template.source_db or domain.SOURCE_ALL,
        tables=tables,
        description=description,
        backup_data=template.backup_data or "",
        incremental=template.kind == "incremental",
    )


async def run_claimed(ctx: JobContext, run: ClaimedRun) -> None:
    """Run one claimed schedule: a full backup of both databases, or a restore drill
    (of the schedule's backup if it names one, else the newest). Failures are logged
    and recorded by the job itself; nothing is raised."""
    schedule = run.schedule
    extra: dict[str, object] = {
        "schedule_id": schedule.schedule_id,
        "task_name": schedule.task_name,
    }
    with job_scope(f"schedule_{schedule.job}"):
        try:
            for attempt in range(LOCK_ATTEMPTS):
                try:
                    if schedule.job == "drill":
                        result = await run_drill(ctx, ignore, backup_id=schedule.backup_id or None)
                        extra["ok"] = result.ok
                    else:
                        request = await scheduled_request(ctx, schedule)
                        backup = await create_backup(ctx, request, ignore)
                        extra["backup_id"] = backup.backup_id
                    break
                except FailedPrecondition as exc:
                    if exc.reason != JOB_RUNNING or attempt == LOCK_ATTEMPTS - 1:
                        raise
                    await asyncio.sleep(LOCK_RETRY_SECONDS)
        except DomainError as exc:
            log.warning(
                "scheduled backup job not done",
                extra={**extra, "reason": exc.reason, "error": exc.message},
            )
            return
        except Exception as exc:
            log.exception(
                "scheduled backup job failed", extra={**extra, "error": type(exc).__name__}
            )
            return
    log.info("scheduled backup job done", extra=extra)


async def run_tick(ctx: JobContext, now: datetime, spawn: Spawn) -> BackupCounts:
    """Claim due schedules and start their runs with ``spawn``; then retention."""
    counts = BackupCounts()
    # Retention first: it holds the job lock for a moment, and the runs started below
    # take it next.
    with job_scope("backup_retention"):
        counts.expired = await flows.expire_backups(ctx, now)
    for run in await flows.claim_due(ctx.resources.db, now):
        counts.claimed += 1
        spawn(run_claimed(ctx, run))
    return counts
