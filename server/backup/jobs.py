"""One backup, restore or drill at a time across every replica: the job lock.

A job holds a PostgreSQL session-level advisory lock (:data:`server.core.jobs.
LOCK_BACKUP_JOB`) on a dedicated connection, outside any transaction, for its whole
run (server/core/jobs.py ``held_job_lock``): the job opens its own transactions and
runs outside tools meanwhile. A second job, in this process or on another replica, is
refused at once (FAILED_PRECONDITION ``BACKUP_JOB_RUNNING``), never queued. The lock is
released when the job ends, or by PostgreSQL when the holder's connection ends (its
process died), so a crash never leaves it stuck.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine

from server.core.errors import FailedPrecondition
from server.core.jobs import LOCK_BACKUP_JOB, held_job_lock

#: The ErrorInfo reason of a job refused because another one runs.
JOB_RUNNING = "BACKUP_JOB_RUNNING"


def job_running(job: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"another backup, restore or drill is running; try the {job} again when it ends",
        reason=JOB_RUNNING,
        metadata={"job": job},
    )


@asynccontextmanager
async def job_lock(engine: AsyncEngine, job: str = "backup") -> AsyncIterator[None]:
    """Hold the job lock for the ``async with`` block; FAILED_PRECONDITION
    ``BACKUP_JOB_RUNNING`` at once if another job holds it. ``job`` names the job in
    the refusal (``backup``, ``restore``, ``drill``)."""
    async with held_job_lock(engine, LOCK_BACKUP_JOB) as got:
        if not got:
            raise job_running(job)
        yield
