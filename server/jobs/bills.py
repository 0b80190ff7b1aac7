"""Postpaid bill reminders: create them before the due date, notify, and settle
reminders paid by an external payment that has since completed."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.audit.scope import audit_change, job_scope, listed
from server.core import db
from server.jobs import LOCK_BILL_REMINDERS, try_job_lock
from server.notifications import notify
from server.recharge import bills_queries as queries


@dataclass(frozen=True)
class BillCounts:
    ran: bool
    created: int = 0
    sent: int = 0
    paid: int = 0
    released: int = 0


async def run(engine: AsyncEngine, *, days_before: int, batch_size: int = 500) -> BillCounts:
    """One reminder per postpaid bill due within ``days_before`` days (the bill is the
    valid_to of an active postpaid plan of a postpaid user): created, notified
    (``bill_reminder``, status delivered) and marked sent in one transaction."""
    with job_scope("bill_reminders"):
        async with db.transaction(engine) as conn:
            if not await try_job_lock(conn, LOCK_BILL_REMINDERS):
                return BillCounts(ran=False)
            return await _remind_and_reconcile(conn, days_before, batch_size)


async def _remind_and_reconcile(
    conn: AsyncConnection, days_before: int, batch_size: int
) -> BillCounts:
    rows = await queries.create_due(conn, days_before=days_before, limit=batch_size)
    for row in rows:
        amount = f" of \u20b9{row.amount}" if row.amount is not None else ""
        await notify(
            conn,
            user_id=row.user_id,
            type_name="bill_reminder",
            description=(
                f"Your postpaid bill{amount} for {row.phone_number} is due on "
                f"{row.due_date.date().isoformat()}."
            ),
            attachments=[
                {
                    "kind": "bill_reminder",
                    "reminder_id": row.reminder_id,
                    "due_date": row.due_date.isoformat(),
                }
            ],
        )
    await queries.mark_sent(conn, [r.reminder_id for r in rows])
    paid, released = await queries.reconcile_external(conn, limit=batch_size)
    if rows or paid or released:
        audit_change(
            "BillReminders",
            "INSERT" if rows else "UPDATE",
            {
                "created": listed(sorted(r.reminder_id for r in rows)),
                "paid_by_settled_payment": paid,
                "released_after_failed_payment": released,
            },
        )
    return BillCounts(True, len(rows), len(rows), paid, released)
