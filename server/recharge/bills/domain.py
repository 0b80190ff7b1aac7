"""Postpaid bill reminders (DDS BillReminders): the rules of ListBillReminders and
PayBill, and of the scheduler's reminders (no grpc; every function takes the
connection it works on as ``conn``; server/recharge/bills/flows.py opens the
transactions).

PayBill pays a reminder by recharging its plan for its number (the next bill period,
queued behind the current one), from the wallet or by an external method. It runs in
three short steps, and no transaction or row lock is held across another transaction
or across the gateway call (server/recharge/bills/flows.py):

1. :func:`prepare_payment` locks the reminder, checks it is payable and builds the
   recharge order; a failed earlier payment is unlinked here (payable again);
2. the recharge runs under a key of the bill's own (``bill-<id>`` in the caller's
   ``bill`` scope), so one bill is paid at most once whatever request_ids arrive, and a
   payment that committed just before a crash is found again by the next try;
3. :func:`record_payment` locks the reminder again and records the payment on it
   (``paid`` for a wallet payment; linked while an external payment is pending: the
   scheduler marks it paid when the payment succeeds, or unlinks it when it fails),
   with the client's request_id, which gives PayBill its replay semantics. A concurrent
   PayBill for the same bill with another request_id finds it paid (FAILED_PRECONDITION
   ``ALREADY_PAID``) or pending (``PAYMENT_PENDING``).

The amount charged must equal the bill's amount (PRICE_CHANGED otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from server.audit.scope import audit_change, current_rpc, listed
from server.auth.principal import Principal, customer_id
from server.core import idempotency, pagination
from server.core.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from server.core.money import to_minor
from server.ledger import domain as ledger
from server.notifications import notify
from server.recharge.bills import queries
from server.recharge.domain import Order, RechargeResult, result_of


@dataclass(frozen=True)
class BillReminder:
    reminder_id: int
    user_id: int
    plan_id: int | None
    due_date: datetime
    status: str
    sent_at: datetime | None
    amount: Decimal | None
    phone_number: str | None
    paid_txn_id: int | None

    @classmethod
    def of(cls, row: Any) -> BillReminder:
        return cls(
            int(row.reminder_id),
            int(row.user_id),
            row.plan_id,
            row.due_date,
            row.status,
            row.sent_at,
            row.amount,
            row.phone_number,
            row.paid_txn_id,
        )


@dataclass(frozen=True)
class PayBill:
    """A PayBill request."""

    request_id: str
    reminder_id: int
    payment_method: str
    payment_details: Mapping[str, str]
    fingerprint: str


@dataclass(frozen=True)
class BillPayment:
    result: RechargeResult
    reminder: BillReminder


@dataclass(frozen=True)
class BillCounts:
    """What one bill-reminder tick did."""

    ran: bool
    created: int = 0
    sent: int = 0
    paid: int = 0
    released: int = 0


def bill_key(reminder_id: int) -> str:
    """The idempotency key under which a bill's payment runs."""
    return f"bill-{reminder_id:010d}"


def bill_scope(subject: str) -> str:
    """The idempotency scope of a payer's bill payments."""
    return f"{subject}/bill"


def bill_fingerprint(reminder_id: int) -> str:
    return idempotency.text_hash(f"bill:{reminder_id}")


async def list_own(
    who: Principal, *, status: str | None, page_size: int, page_token: str, conn: AsyncConnection
) -> tuple[list[BillReminder], str]:
    user_id = customer_id(who, "bills")
    page = pagination.parse(page_size, page_token, {"bills": [user_id, status]})
    rows = await queries.list_own(
        conn,
        user_id=user_id,
        status=status,
        after=pagination.time_keyset(page.after),
        limit=page.fetch,
    )
    return pagination.time_page([BillReminder.of(r) for r in rows], page, "due_date", "reminder_id")


def validate_payment(who: Principal, pay: PayBill) -> None:
    customer_id(who, "bills")
    violations: list[FieldViolation] = []
    try:
        idempotency.validate_request_id(pay.request_id)
    except InvalidArgument as exc:
        violations.extend(exc.violations)
    if pay.reminder_id <= 0:
        violations.append(FieldViolation("reminder_id", "must be a positive id"))
    if violations:
        raise InvalidArgument.of(violations)


async def _own(who: Principal, reminder_id: int, *, conn: AsyncConnection) -> BillReminder:
    row = await queries.get_own(
        conn, reminder_id=reminder_id, user_id=customer_id(who, "bills"), for_update=True
    )
    if row is None:
        raise NotFound(f"bill reminder {reminder_id} not found")
    return BillReminder.of(row)


async def replayed_payment(
    who: Principal, pay: PayBill, *, conn: AsyncConnection
) -> BillPayment | None:
    """The original result when this PayBill (same request_id, same request) ran."""
    replay = await idempotency.lookup(
        conn,
        caller=who.subject,
        request_id=pay.request_id,
        rpc=current_rpc(),
        fingerprint=pay.fingerprint,
    )
    if replay is None:
        return None
    row = await queries.get_own(
        conn, reminder_id=pay.reminder_id, user_id=customer_id(who, "bills")
    )
    if row is None:
        raise NotFound(f"bill reminder {pay.reminder_id} not found")
    return BillPayment(await result_of(replay.result, conn=conn), BillReminder.of(row))


async def prepare_payment(who: Principal, pay: PayBill, *, conn: AsyncConnection) -> Order:
    """Step 1: the reminder is payable; the recharge order that pays it."""
    reminder = await _own(who, pay.reminder_id, conn=conn)
    if reminder.status == "paid":
        raise FailedPrecondition("this bill is already paid", reason="ALREADY_PAID")
    if reminder.paid_txn_id is not None:
        status = await ledger.status_of(reminder.paid_txn_id, conn=conn)
        if status == "pending":
            raise FailedPrecondition(
                "a payment of this bill is still pending", reason="PAYMENT_PENDING"
            )
        if status == "failed":
            # The failed payment's key goes too, so the bill's own key can run again.
            await queries.unlink_payment(conn, reminder.reminder_id)
            await idempotency.forget(
                conn, [(bill_scope(who.subject), bill_key(reminder.reminder_id))]
            )
    if reminder.plan_id is None:
        raise FailedPrecondition("this bill names no plan to pay", reason="NO_PLAN")
    return Order(
        request_id=bill_key(reminder.reminder_id),
        phone_number=reminder.phone_number or "",
        plan_id=int(reminder.plan_id),
        offer_id=None,
        payment_method=pay.payment_method,
        payment_details=pay.payment_details,
        user_id=0,
        expected_amount_minor=(to_minor(reminder.amount) if reminder.amount is not None else None),
    )


async def record_payment(
    who: Principal, pay: PayBill, result: RechargeResult, *, conn: AsyncConnection
) -> BillPayment:
    """Step 3: the payment on the reminder, and the client's request_id completed."""
    replay = await idempotency.claim(
        conn,
        caller=who.subject,
        request_id=pay.request_id,
        rpc=current_rpc(),
        fingerprint=pay.fingerprint,
    )
    reminder = await _own(who, pay.reminder_id, conn=conn)
    if replay is not None:  # a concurrent call with this request_id finished first
        return BillPayment(await result_of(replay.result, conn=conn), reminder)
    txn_id = result.txn.txn_id
    if reminder.paid_txn_id is not None:
        # Another PayBill (another request_id) recorded this bill's payment first.
        if reminder.status == "paid":
            raise FailedPrecondition("this bill is already paid", reason="ALREADY_PAID")
        raise FailedPrecondition(
            "a payment of this bill is still pending", reason="PAYMENT_PENDING"
        )
    row = await queries.settle(
        conn, pay.reminder_id, txn_id=txn_id, paid=result.txn.status == "success"
    )
    await idempotency.complete(
        conn,
        caller=who.subject,
        request_id=pay.request_id,
        result={
            "txn_id": txn_id,
            "active_plan_id": result.active_plan.id if result.active_plan else None,
        },
    )
    return BillPayment(result, BillReminder.of(row))


# --- the scheduler's reminders ---------------------------------------------------------------


async def remind_and_reconcile(
    *, days_before: int, batch_size: int, conn: AsyncConnection
) -> BillCounts:
    """One reminder per postpaid bill due within ``days_before`` days (the bill is the
    valid_to of an active postpaid plan of a postpaid user): created, notified
    (``bill_reminder``) and marked sent; reminders paid by an external payment that has
    since settled are marked paid (or unlinked, payable again, when it failed)."""
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
    settled = await queries.reconcile_external(conn, limit=batch_size)
    released = [r for r in settled if r.status != "paid"]
    await idempotency.forget(
        conn,
        [(bill_scope(f"user:{r.user_id}"), bill_key(int(r.reminder_id))) for r in released],
    )
    paid = len(settled) - len(released)
    if rows or settled:
        audit_change(
            "BillReminders",
            "INSERT" if rows else "UPDATE",
            {
                "created": listed(sorted(r.reminder_id for r in rows)),
                "paid_by_settled_payment": paid,
                "released_after_failed_payment": len(released),
            },
        )
    return BillCounts(True, len(rows), len(rows), paid, len(released))
