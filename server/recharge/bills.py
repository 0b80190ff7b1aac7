"""Postpaid bill reminders (DDS BillReminders) and their RPCs (ListBillReminders,
PayBill).

The scheduler (server/jobs/bills.py) creates a reminder for each postpaid bill (the
valid_to of an active postpaid plan) shortly before it is due and notifies the user.
PayBill pays a reminder by recharging its plan for its number (the next bill period,
queued behind the current one), from the wallet or by an external method:

- the reminder's row is locked for the whole payment, so two PayBill calls for one
  bill (even with different request_ids) never both pay: the second sees it paid
  (FAILED_PRECONDITION ALREADY_PAID) or, with the same request_id, gets the original
  result (the recharge is idempotent on the caller's request_id);
- a wallet payment marks the reminder paid (``paid_txn_id``) at once; an external
  payment the gateway leaves pending links its transaction, and the scheduler marks
  the reminder paid when the payment succeeds (or unlinks it when it fails, so the
  bill can be paid again);
- the amount charged must equal the bill's amount (PRICE_CHANGED otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from gencharge.v1 import recharge_service_pb2 as pb
from server.auth.principal import Principal, principal
from server.core import db, idempotency, pagination, protoconv
from server.core.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from server.core.money import to_minor
from server.recharge import bills_queries as queries
from server.recharge.domain import Order, RechargeResult, Recharges, result_of
from server.recharge.rpc_base import RechargeRpcBase

Context = grpc.aio.ServicerContext[Any, Any]
RowT = Row[Any]

PAY_RPC = "/gencharge.v1.RechargeService/PayBill"
STATUSES = {
    pb.BILL_REMINDER_STATUS_PENDING: "pending",
    pb.BILL_REMINDER_STATUS_SENT: "sent",
    pb.BILL_REMINDER_STATUS_PAID: "paid",
}
STATUSES_BY_NAME = {v: k for k, v in STATUSES.items()}


@dataclass(frozen=True)
class BillPayment:
    result: RechargeResult
    reminder: RowT


def _user(who: Principal) -> int:
    if who.kind != "user":
        raise PermissionDenied("only customers have bills", reason="USER_ONLY")
    return who.numeric_id


class Bills:
    def __init__(self, engine: AsyncEngine, recharges: Recharges) -> None:
        self._engine = engine
        self._recharges = recharges

    async def list_own(
        self, who: Principal, *, status: str | None, page_size: int, page_token: str
    ) -> tuple[list[RowT], str]:
        user_id = _user(who)
        page = pagination.parse(page_size, page_token, {"bills": [user_id, status]})
        async with db.read_only(self._engine) as conn:
            rows = await queries.list_own(
                conn,
                user_id=user_id,
                status=status,
                after=pagination.time_keyset(page.after),
                limit=page.fetch,
            )
        return pagination.time_page(rows, page, "due_date", "reminder_id")

    async def pay(
        self,
        who: Principal,
        *,
        request_id: str,
        reminder_id: int,
        payment_method: str,
        payment_details: Mapping[str, str],
        fingerprint: str,
    ) -> BillPayment:
        user_id = _user(who)
        violations: list[FieldViolation] = []
        try:
            idempotency.validate_request_id(request_id)
        except InvalidArgument as exc:
            violations.extend(exc.violations)
        if reminder_id <= 0:
            violations.append(FieldViolation("reminder_id", "must be a positive id"))
        if violations:
            raise InvalidArgument.of(violations)
        # The reminder stays locked until the payment is recorded on it. The client's
        # request_id gives PayBill its replay semantics; the payment itself runs under a
        # key of the bill's own ("bill-<id>" in the caller's "bill" scope), so one bill
        # is paid at most once whatever request_ids arrive, and a payment that committed
        # just before a crash is found again (and recorded on the bill) by the next try.
        async with db.transaction(self._engine) as conn:
            reminder = await queries.get_own(
                conn, reminder_id=reminder_id, user_id=user_id, for_update=True
            )
            if reminder is None:
                raise NotFound(f"bill reminder {reminder_id} not found")
            replay = await idempotency.claim(
                conn,
                caller=who.subject,
                request_id=request_id,
                rpc=PAY_RPC,
                fingerprint=fingerprint,
            )
            if replay is not None:
                result = await result_of(conn, replay.result)
                return BillPayment(result, reminder)
            if reminder.status == "paid":
                raise FailedPrecondition("this bill is already paid", reason="ALREADY_PAID")
            if reminder.paid_txn_id is not None:
                status = await queries.transaction_status(conn, int(reminder.paid_txn_id))
                if status == "pending":
                    raise FailedPrecondition(
                        "a payment of this bill is still pending", reason="PAYMENT_PENDING"
                    )
                if status == "failed":
                    await queries.release_failed_payment(
                        conn, reminder_id=reminder_id, subject=who.subject
                    )
            if reminder.plan_id is None:
                raise FailedPrecondition("this bill names no plan to pay", reason="NO_PLAN")
            order = Order(
                request_id=queries.bill_key(reminder_id),
                phone_number=reminder.phone_number or "",
                plan_id=int(reminder.plan_id),
                offer_id=None,
                payment_method=payment_method,
                payment_details=payment_details,
                user_id=0,
                expected_amount_minor=(
                    to_minor(reminder.amount) if reminder.amount is not None else None
                ),
            )
            result = await self._recharges.recharge(
                who,
                order,
                idempotency.text_hash(f"bill:{reminder_id}"),
                rpc=PAY_RPC,
                source="recharge",
                scope=queries.bill_scope(who.subject),
            )
            txn_id = int(result.txn.txn_id)
            reminder = await queries.settle(
                conn, reminder_id, txn_id=txn_id, paid=result.txn.status == "success"
            )
            await idempotency.complete(
                conn,
                caller=who.subject,
                request_id=request_id,
                result={
                    "txn_id": txn_id,
                    "active_plan_id": result.active_plan.id if result.active_plan else None,
                },
            )
        return BillPayment(result, reminder)


# --- proto <-> domain ---------------------------------------------------------------------


def bill_reminder_message(row: RowT) -> pb.BillReminder:
    return pb.BillReminder(
        reminder_id=row.reminder_id,
        user_id=row.user_id,
        plan_id=row.plan_id or 0,
        due_date=protoconv.timestamp(row.due_date),
        status=STATUSES_BY_NAME[row.status],
        sent_at=protoconv.timestamp(row.sent_at),
        amount=protoconv.optional_money(row.amount),
    )


class BillRpcs(RechargeRpcBase):
    def _bills(self) -> Bills:
        return Bills(self._resources.engine, self._recharges)

    async def ListBillReminders(
        self, request: pb.ListBillRemindersRequest, context: Context
    ) -> pb.ListBillRemindersResponse:
        rows, token = await self._bills().list_own(
            principal(),
            status=protoconv.enum_filter("status", request.status, STATUSES),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListBillRemindersResponse(
            bill_reminders=[bill_reminder_message(r) for r in rows], next_page_token=token
        )

    async def PayBill(self, request: pb.PayBillRequest, context: Context) -> pb.PayBillResponse:
        # servicer.py imports this module: its helpers are imported when first used.
        from server.recharge.servicer import payment_details, payment_method, recharge_message

        method = payment_method(request.payment_method)
        paid = await self._bills().pay(
            principal(),
            request_id=request.request_id,
            reminder_id=request.reminder_id,
            payment_method=method,
            payment_details=payment_details(method, request.payment_details),
            fingerprint=idempotency.request_hash(request),
        )
        recharge = recharge_message(paid.result)
        response = pb.PayBillResponse(
            transaction=recharge.transaction,
            bill_reminder=bill_reminder_message(paid.reminder),
        )
        if recharge.HasField("pending_payment"):
            response.pending_payment.CopyFrom(recharge.pending_payment)
        return response
