"""Bill work that spans several transactions: PayBill (three short steps around the
recharge, see server/recharge/bills/domain.py) and the scheduler's reminder job."""

from __future__ import annotations

from server.auth.principal import Principal
from server.core.db import Database
from server.core.jobs import LOCK_BILL_REMINDERS, try_job_lock
from server.recharge import flows as recharge
from server.recharge.bills import domain
from server.recharge.bills.domain import BillCounts, BillPayment, PayBill
from server.recharge.flows import Recharger


async def pay_bill(r: Recharger, who: Principal, pay: PayBill) -> BillPayment:
    """Pay a bill once. No transaction (nor the reminder's row lock) is held while the
    recharge runs its own transactions or calls the payment gateway."""
    domain.validate_payment(who, pay)
    async with r.db.read_only() as conn:
        replayed = await domain.replayed_payment(who, pay, conn=conn)
    if replayed is not None:
        return replayed
    async with r.db.transaction() as conn:
        order = await domain.prepare_payment(who, pay, conn=conn)
    result = await recharge.recharge(
        r,
        who,
        order,
        domain.bill_fingerprint(pay.reminder_id),
        source="recharge",
        scope=domain.bill_scope(who.subject),
    )
    async with r.db.transaction() as conn:
        return await domain.record_payment(who, pay, result, conn=conn)


async def run_reminders(db: Database, *, days_before: int, batch_size: int = 500) -> BillCounts:
    """One bill-reminder tick (server/ops/scheduler.py): one replica at a time."""
    async with db.transaction() as conn:
        if not await try_job_lock(conn, LOCK_BILL_REMINDERS):
            return BillCounts(ran=False)
        return await domain.remind_and_reconcile(
            days_before=days_before, batch_size=batch_size, conn=conn
        )
