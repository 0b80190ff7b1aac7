"""WalletService messages <-> wallet values (the ledger's messages are in
server/ledger/convert.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from gencharge.v1 import common_pb2
from gencharge.v1 import wallet_service_pb2 as pb
from server.core import protoconv
from server.core.idempotency import request_hash
from server.ledger import convert as ledger_convert
from server.payments.gateway import Callback, CheckoutCallback, WebhookCallback
from server.wallet import domain

OUTCOMES: dict[int, str] = {
    pb.PAYMENT_OUTCOME_SUCCESS: "success",
    pb.PAYMENT_OUTCOME_FAILED: "failed",
}


def _method_name(value: int) -> str:
    """The database method name; "" when not set, "?" for an unknown value."""
    if value == common_pb2.PAYMENT_METHOD_UNSPECIFIED:
        return ""
    names = {int(key): name for key, name in ledger_convert.PAYMENT_METHODS.items()}
    return names.get(value, "?")


def _details(request: pb.TopUpRequest) -> tuple[str, dict[str, str]]:
    details = request.payment_details
    which = details.WhichOneof("details")
    if which == "upi":
        return which, {"vpa": details.upi.vpa}
    if which == "card":
        return which, {"card_token": details.card.card_token}
    if which == "net_banking":
        return which, {"bank_code": details.net_banking.bank_code}
    return "", {}


def time_of(message: Any, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    value: Timestamp = getattr(message, field)
    return value.ToDatetime(tzinfo=UTC)


def wallet_message(wallet: domain.Wallet) -> pb.Wallet:
    return pb.Wallet(
        user_id=wallet.user_id,
        balance=protoconv.money(wallet.balance),
        updated_at=protoconv.timestamp(wallet.updated_at),
    )


def top_up_order(request: pb.TopUpRequest) -> domain.TopUpOrder:
    details_field, details = _details(request)
    return domain.TopUpOrder(
        request_id=request.request_id,
        amount_minor=request.amount.units_minor if request.HasField("amount") else None,
        currency=request.amount.currency_code,
        method=_method_name(request.payment_method),
        details_field=details_field,
        details=details,
        fingerprint=request_hash(request),
    )


def top_up_response(result: domain.TopUpResult) -> pb.TopUpResponse:
    response = pb.TopUpResponse(transaction=ledger_convert.transaction_message(result.transaction))
    if result.redirect_url:
        response.pending_payment.CopyFrom(
            common_pb2.PendingPayment(
                redirect_url=result.redirect_url,
                expires_at=protoconv.timestamp(result.expires_at),
            )
        )
    return response


def callback_of(request: pb.ConfirmPaymentRequest) -> Callback | None:
    """The gateway's callback the request carries, unchanged (a webhook's body stays the
    exact bytes received)."""
    which = request.WhichOneof("callback")
    if which == "checkout":
        c = request.checkout
        return CheckoutCallback(c.order_id, c.payment_id, c.signature)
    if which == "webhook":
        return WebhookCallback(bytes(request.webhook.body), request.webhook.signature)
    return None


def confirmation(request: pb.ConfirmPaymentRequest) -> domain.Confirmation:
    outcome = (
        ""
        if request.outcome == pb.PAYMENT_OUTCOME_UNSPECIFIED
        else OUTCOMES.get(request.outcome, "?")
    )
    return domain.Confirmation(
        request_id=request.request_id,
        txn_id=request.txn_id,
        payment_transaction_id=request.payment_transaction_id,
        outcome=outcome,
        failure_reason=request.failure_reason,
        callback=callback_of(request),
        fingerprint=request_hash(request),
    )


def transaction_filter(request: pb.ListTransactionsRequest) -> domain.TransactionFilter:
    return domain.TransactionFilter(
        category=protoconv.enum_filter("category", request.category, ledger_convert.CATEGORIES),
        txn_type=protoconv.enum_filter("txn_type", request.txn_type, ledger_convert.TXN_TYPES),
        source=protoconv.enum_filter("source", request.source, ledger_convert.SOURCES),
        status=protoconv.enum_filter("status", request.status, ledger_convert.STATUSES),
        created_after=time_of(request, "created_after"),
        created_before=time_of(request, "created_before"),
    )
