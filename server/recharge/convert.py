"""RechargeService messages <-> recharge values (shared by the servicer and the
autopay, bills and batch sub-packages)."""

from __future__ import annotations

from typing import Any

from gencharge.v1 import common_pb2, transaction_pb2
from gencharge.v1 import recharge_service_pb2 as pb
from server.core import protoconv, validation
from server.core.errors import FieldViolation, InvalidArgument
from server.ledger.convert import transaction_message
from server.plans.convert import bonus_message, offer_message, plan_message
from server.recharge import domain

METHODS: dict[int, str] = {
    common_pb2.PAYMENT_METHOD_WALLET: "Wallet",
    common_pb2.PAYMENT_METHOD_UPI: "UPI",
    common_pb2.PAYMENT_METHOD_CARD: "Card",
    common_pb2.PAYMENT_METHOD_NET_BANKING: "NetBanking",
}
ACTIVE_STATUSES = {
    pb.ACTIVE_PLAN_STATUS_ACTIVE: "active",
    pb.ACTIVE_PLAN_STATUS_EXPIRED: "expired",
    pb.ACTIVE_PLAN_STATUS_QUEUED: "queued",
}
ACTIVE_STATUSES_BY_NAME = {v: k for k, v in ACTIVE_STATUSES.items()}
TXN_STATUSES = {
    transaction_pb2.TRANSACTION_STATUS_SUCCESS: "success",
    transaction_pb2.TRANSACTION_STATUS_FAILED: "failed",
    transaction_pb2.TRANSACTION_STATUS_PENDING: "pending",
}


def payment_method(value: int, *, default: str | None = None) -> str:
    if value == common_pb2.PAYMENT_METHOD_UNSPECIFIED and default is not None:
        return default
    try:
        return METHODS[value]
    except KeyError:
        raise InvalidArgument.field(
            "payment_method", "must be WALLET, UPI, CARD or NET_BANKING"
        ) from None


def payment_details(method: str, details: common_pb2.PaymentDetails) -> dict[str, str]:
    """The gateway details of an external payment, checked against the method."""
    if method == "Wallet":
        return {}
    expected = {"UPI": "upi", "Card": "card", "NetBanking": "net_banking"}[method]
    if details.WhichOneof("details") != expected:
        raise InvalidArgument.field(
            f"payment_details.{expected}", f"is required for {method} payments"
        )
    values = {
        "upi": {"vpa": details.upi.vpa},
        "card": {"card_token": details.card.card_token},
        "net_banking": {"bank_code": details.net_banking.bank_code},
    }[expected]
    empty = [
        FieldViolation(f"payment_details.{expected}.{k}", "is required")
        for k, v in values.items()
        if not v.strip()
    ]
    if empty:
        raise InvalidArgument.of(empty)
    return values


def optional_offer(request: Any) -> int | None:
    return request.offer_id if request.HasField("offer_id") else None


def order_of(request: pb.RechargeRequest) -> domain.Order:
    method = payment_method(request.payment_method, default="Wallet")
    return domain.Order(
        request_id=request.request_id,
        phone_number=request.phone_number,
        plan_id=request.plan_id,
        offer_id=optional_offer(request),
        payment_method=method,
        payment_details=payment_details(method, request.payment_details),
        user_id=request.user_id,
        expected_amount_minor=(
            request.expected_amount.units_minor if request.HasField("expected_amount") else None
        ),
        expected_currency=request.expected_amount.currency_code,
    )


def active_plan_message(view: domain.ActivePlanView) -> pb.ActivePlan:
    return pb.ActivePlan(
        id=view.id,
        user_id=view.user_id,
        plan_id=view.plan_id,
        plan_name=view.plan_name,
        phone_number=view.phone_number,
        valid_from=protoconv.timestamp(view.valid_from),
        valid_to=protoconv.timestamp(view.valid_to),
        status=ACTIVE_STATUSES_BY_NAME[view.status],
    )


def recharge_message(result: domain.RechargeResult) -> pb.Recharge:
    message = pb.Recharge(
        transaction=transaction_message(result.txn),
        discount=protoconv.money(result.discount),
        cashback=protoconv.money(result.cashback),
        bonus=bonus_message(result.bonus),
    )
    if result.active_plan is not None:
        message.active_plan.CopyFrom(active_plan_message(result.active_plan))
    if result.cashback_txn is not None:
        message.cashback_transaction.CopyFrom(transaction_message(result.cashback_txn))
    if result.pending is not None:
        message.pending_payment.CopyFrom(
            common_pb2.PendingPayment(
                redirect_url=result.pending.redirect_url or "",
                expires_at=protoconv.timestamp(result.txn.pending_until),
            )
        )
    return message


def quote_message(result: domain.QuoteResult) -> pb.Quote:
    pricing = result.pricing
    quote = pb.Quote(
        eligible=pricing.eligible,
        reasons=[pb.IneligibilityReason(reason=c, message=m) for c, m in pricing.reasons],
        plan=plan_message(pricing.plan),
        price=protoconv.money(pricing.price),
        discount=protoconv.money(pricing.discount),
        cashback=protoconv.money(pricing.cashback),
        amount_to_pay=protoconv.money(pricing.to_pay),
        starts_at=protoconv.timestamp(result.starts_at),
        ends_at=protoconv.timestamp(result.ends_at),
        queued=result.queued,
        bonus=bonus_message(pricing.bonus),
    )
    if pricing.offer is not None:
        quote.offer.CopyFrom(offer_message(pricing.offer))
    return quote


def batch_order(request: pb.BatchRechargeRequest) -> domain.Order:
    """A BatchRecharge item: a wallet-paid recharge for ``user_id``. A stream's items
    are checked here, one by one (server/core/validation.py: unary requests are checked
    before their handler runs)."""
    validation.check_request(request)
    return domain.Order(
        request_id=request.request_id,
        phone_number=request.phone_number,
        plan_id=request.plan_id,
        offer_id=request.offer_id if request.HasField("offer_id") else None,
        payment_method=domain.WALLET,
        payment_details={},
        user_id=request.user_id,
    )
