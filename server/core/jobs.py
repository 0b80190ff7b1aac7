"""Background jobs run by the scheduler (server/ops/scheduler.py).

Each job is safe with several server processes sharing the database: it either takes
a transaction-level advisory lock (:func:`try_job_lock`; a replica that does not get it
skips the job this tick), holds a session-level one for its whole run
(:func:`held_job_lock`, for a job that calls an outside system between its
transactions), or claims rows with ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

#: Advisory lock keys, one per job ("GCJ" + job number).
LOCK_PLAN_EXPIRY = 0x47434A_0000000001
LOCK_BILL_REMINDERS = 0x47434A_0000000003
LOCK_IDEMPOTENCY_PURGE = 0x47434A_0000000004
LOCK_PAYMENT_RECOVERY = 0x47434A_0000000005
LOCK_REFUND_RECOVERY = 0x47434A_0000000006
#: Backups, restores and drills (server/backup/jobs.py): one at a time across replicas.
LOCK_BACKUP_JOB = 0x47434A_0000000007


async def try_job_lock(conn: AsyncConnection, key: int) -> bool:
    """The job's lock for this transaction; False if another replica holds it."""
    result = await conn.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": key})
    return bool(result.scalar_one())


@asynccontextmanager
async def held_job_lock(engine: AsyncEngine, key: int) -> AsyncIterator[bool]:
    """The job's lock for its whole run: a session-level advisory lock on a connection of
    its own, outside any transaction (the run may call an outside system meanwhile, and
    opens its own transactions); False if another replica holds it. Released at the end,
    or with the connection if the process dies; a connection whose unlock failed is
    discarded rather than returned to the pool holding the lock."""
    async with engine.connect() as conn:
        result = await conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key})
        got = bool(result.scalar_one())
        await conn.commit()
        if not got:
            yield False
            return
        try:
            yield True
        finally:
            try:
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                await conn.commit()
            except BaseException:
                await conn.invalidate()
                raise
