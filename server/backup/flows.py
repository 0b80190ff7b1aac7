"""Backup work that opens its own transactions: schedule changes (the unique task name
checked again by the database: a concurrent change with the same name is
ALREADY_EXISTS, not INTERNAL) and the scheduler's claim of due runs.

The jobs themselves (backup, restore, drill) hold the job lock (server/backup/jobs.py)
and record themselves with server/backup/domain.py: ``start_backup`` /
``finish_backup`` and ``log_job``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError

from server.backup import domain
from server.backup.domain import ClaimedRun, Schedule, ScheduleInput
from server.core.db import Database
from server.core.errors import AlreadyExists

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
