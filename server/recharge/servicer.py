"""RechargeService: proto <-> recharge domain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from gencharge.v1 import common_pb2, recharge_service_pb2_grpc, transaction_pb2
from gencharge.v1 import recharge_service_pb2 as pb
from server.auth.principal import principal
from server.core import protoconv
from server.core.errors import FieldViolation, InvalidArgument
from server.core.idempotency import request_hash
from server.core.resources import Resources
from server.plans.convert import offer_message, plan_message
from server.recharge import domain
from server.recharge.autopay import AutoPayRpcs
from server.recharge.batch import BatchRpcs
from server.recharge.bills import BillRpcs
from server.wallet.convert import transaction_message

Context = grpc.aio.ServicerContext[Any, Any]

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
PENDING_PAYMENT_TTL = timedelta(minutes=15)


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
    )
    if result.active_plan is not None:
        message.active_plan.CopyFrom(active_plan_message(result.active_plan))
    if result.cashback_txn is not None:
        message.cashback_transaction.CopyFrom(transaction_message(result.cashback_txn))
    if result.pending is not None:
        message.pending_payment.CopyFrom(
            common_pb2.PendingPayment(
                redirect_url=result.pending.redirect_url or "",
                expires_at=protoconv.timestamp(datetime.now(UTC) + PENDING_PAYMENT_TTL),
            )
        )
    return message


def _optional_offer(request: Any) -> int | None:
    return request.offer_id if request.HasField("offer_id") else None


class RechargeServicer(
    AutoPayRpcs, BillRpcs, BatchRpcs, recharge_service_pb2_grpc.RechargeServiceServicer
):
    """Quotes, recharges and active plans here; AutoPay, bills and BatchRecharge in
    their own modules (server/recharge/autopay.py, bills.py, batch.py)."""

    def __init__(self, recharges: domain.Recharges, resources: Resources) -> None:
        self._recharges = recharges
        self._resources = resources

    async def QuoteRecharge(self, request: pb.QuoteRechargeRequest, context: Context) -> pb.Quote:
        result = await self._recharges.quote(
            principal(),
            phone_number=request.phone_number,
            plan_id=request.plan_id,
            offer_id=_optional_offer(request),
            user_id=request.user_id,
        )
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
        )
        if pricing.offer is not None:
            quote.offer.CopyFrom(offer_message(pricing.offer))
        return quote

    async def Recharge(self, request: pb.RechargeRequest, context: Context) -> pb.Recharge:
        method = payment_method(request.payment_method, default="Wallet")
        order = domain.Order(
            request_id=request.request_id,
            phone_number=request.phone_number,
            plan_id=request.plan_id,
            offer_id=_optional_offer(request),
            payment_method=method,
            payment_details=payment_details(method, request.payment_details),
            user_id=request.user_id,
            expected_amount_minor=(
                request.expected_amount.units_minor if request.HasField("expected_amount") else None
            ),
        )
        result = await self._recharges.recharge(
            principal(), order, request_hash(request), rpc="/gencharge.v1.RechargeService/Recharge"
        )
        return recharge_message(result)

    async def GetRecharge(self, request: pb.GetRechargeRequest, context: Context) -> pb.Recharge:
        return recharge_message(await self._recharges.get(principal(), request.txn_id))

    async def ListRecharges(
        self, request: pb.ListRechargesRequest, context: Context
    ) -> pb.ListRechargesResponse:
        rows, token = await self._recharges.list_recharges(
            principal(),
            phone_number=request.phone_number,
            status=protoconv.enum_filter("status", request.status, TXN_STATUSES),
            created_after=(
                request.created_after.ToDatetime(UTC) if request.HasField("created_after") else None
            ),
            created_before=(
                request.created_before.ToDatetime(UTC)
                if request.HasField("created_before")
                else None
            ),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListRechargesResponse(
            recharges=[pb.Recharge(transaction=transaction_message(r)) for r in rows],
            next_page_token=token,
        )

    async def ListActivePlans(
        self, request: pb.ListActivePlansRequest, context: Context
    ) -> pb.ListActivePlansResponse:
        views, token = await self._recharges.active_plans(
            principal(),
            phone_number=request.phone_number,
            status=protoconv.enum_filter("status", request.status, ACTIVE_STATUSES),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListActivePlansResponse(
            active_plans=[active_plan_message(v) for v in views], next_page_token=token
        )
