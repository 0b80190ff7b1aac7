"""Plan expiry and queued-plan activation (DDS CurrentActivePlans.status)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.audit.scope import audit_change, job_scope, listed
from server.core import db
from server.jobs import LOCK_PLAN_EXPIRY, try_job_lock
from server.notifications import notify

EXPIRE = text(
    """
    UPDATE currentactiveplans cap
       SET status = 'expired'
      FROM plans p
     WHERE p.plan_id = cap.plan_id
       AND cap.status IN ('active', 'queued') AND cap.valid_to <= now()
    RETURNING cap.id, cap.user_id, cap.phone_number, p.plan_name,
              (SELECT status FROM currentactiveplans WHERE id = cap.id) AS old_status
    """
)
ACTIVATE = text(
    """
    UPDATE currentactiveplans
       SET status = 'active'
     WHERE status = 'queued' AND valid_from <= now() AND valid_to > now()
    RETURNING id
    """
)
#: Of the numbers whose plan just expired, those left with no active or queued plan.
UNCOVERED = text(
    """
    SELECT phone FROM unnest(CAST(:phones AS text[])) AS phone
    WHERE NOT EXISTS (
        SELECT 1 FROM currentactiveplans
        WHERE phone_number = phone AND status IN ('active', 'queued') AND valid_to > now())
    """
)


@dataclass(frozen=True)
class PlanCounts:
    ran: bool
    expired: int = 0
    activated: int = 0
    notified: int = 0


async def run(engine: AsyncEngine) -> PlanCounts:
    """Mark plans whose valid_to passed expired, activate queued plans whose valid_from
    came, and tell users whose number is left without a plan (``plan_expiry``)."""
    with job_scope("plan_expiry"):
        async with db.transaction(engine) as conn:
            if not await try_job_lock(conn, LOCK_PLAN_EXPIRY):
                return PlanCounts(ran=False)
            return await _expire_and_activate(conn)


async def _expire_and_activate(conn: AsyncConnection) -> PlanCounts:
    expired = (await conn.execute(EXPIRE)).all()
    activated = (await conn.execute(ACTIVATE)).all()
    if expired or activated:
        audit_change(
            "CurrentActivePlans",
            "UPDATE",
            {
                "expired": listed(sorted(r.id for r in expired)),
                "activated": listed(sorted(r.id for r in activated)),
            },
        )
    phones = sorted({r.phone_number for r in expired if r.old_status == "active"})
    uncovered: set[str] = set()
    if phones:
        uncovered = set((await conn.execute(UNCOVERED, {"phones": phones})).scalars())
    notified = 0
    for row in expired:
        if row.old_status == "active" and row.phone_number in uncovered:
            await notify(
                conn,
                user_id=row.user_id,
                type_name="plan_expiry",
                description=f"Your plan {row.plan_name} on {row.phone_number} has expired.",
                attachments=[{"kind": "active_plan", "active_plan_id": row.id}],
            )
            uncovered.discard(row.phone_number)
            notified += 1
    return PlanCounts(True, len(expired), len(activated), notified)
