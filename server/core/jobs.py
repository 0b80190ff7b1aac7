"""Background jobs run by the scheduler (server/ops/scheduler.py).

Each job is safe with several server processes sharing the database: it either takes
a transaction-level advisory lock (:func:`try_job_lock`; a replica that does not get it
skips the job this tick) or claims rows with ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

#: Advisory lock keys, one per job ("GCJ" + job number).
LOCK_PLAN_EXPIRY = 0x47434A_0000000001
LOCK_BILL_REMINDERS = 0x47434A_0000000003
LOCK_IDEMPOTENCY_PURGE = 0x47434A_0000000004
LOCK_PAYMENT_RECOVERY = 0x47434A_0000000005


async def try_job_lock(conn: AsyncConnection, key: int) -> bool:
    """The job's lock for this transaction; False if another replica holds it."""
    result = await conn.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": key})
    return bool(result.scalar_one())
