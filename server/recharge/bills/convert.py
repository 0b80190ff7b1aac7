"""Bill reminder messages <-> values."""

from __future__ import annotations

from gencharge.v1 import recharge_service_pb2 as pb
from server.core import protoconv
from server.core.idempotency import request_hash
from server.recharge import convert as recharge_convert
from server.recharge.bills.domain import BillPayment, BillReminder, PayBill

STATUSES = {
    pb.BILL_REMINDER_STATUS_PENDING: "pending",
    pb.BILL_REMINDER_STATUS_SENT: "sent",
    pb.BILL_REMINDER_STATUS_PAID: "paid",
}
STATUSES_BY_NAME = {v: k for k, v in STATUSES.items()}


def bill_reminder_message(reminder: BillReminder) -> pb.BillReminder:
    return pb.BillReminder(
        reminder_id=reminder.reminder_id,
        user_id=reminder.user_id,
        plan_id=reminder.plan_id or 0,
        due_date=protoconv.timestamp(reminder.due_date),
        status=STATUSES_BY_NAME[reminder.status],
        sent_at=protoconv.timestamp(reminder.sent_at),
        amount=protoconv.optional_money(reminder.amount),
    )


def pay_bill(request: pb.PayBillRequest) -> PayBill:
    method = recharge_convert.payment_method(request.payment_method)
    return PayBill(
        request_id=request.request_id,
        reminder_id=request.reminder_id,
        payment_method=method,
        payment_details=recharge_convert.payment_details(method, request.payment_details),
        fingerprint=request_hash(request),
    )


def pay_bill_response(paid: BillPayment) -> pb.PayBillResponse:
    recharge = recharge_convert.recharge_message(paid.result)
    response = pb.PayBillResponse(
        transaction=recharge.transaction,
        bill_reminder=bill_reminder_message(paid.reminder),
    )
    if recharge.HasField("pending_payment"):
        response.pending_payment.CopyFrom(recharge.pending_payment)
    return response
