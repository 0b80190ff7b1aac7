"""WalletService: proto <-> domain only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from gencharge.v1 import common_pb2, transaction_pb2, wallet_service_pb2_grpc
from gencharge.v1 import wallet_service_pb2 as pb
from server.auth.access import PermissionMatrix
from server.auth.principal import principal
from server.core import db, protoconv
from server.core.idempotency import request_hash
from server.core.money import from_minor
from server.core.resources import Resources
from server.payments.gateway import PaymentGateway
from server.wallet import convert, domain

Context = grpc.aio.ServicerContext[Any, Any]

OUTCOMES: dict[int, str] = {
    pb.PAYMENT_OUTCOME_SUCCESS: "success",
    pb.PAYMENT_OUTCOME_FAILED: "failed",
}


def _method_name(value: int) -> str:
    if value == common_pb2.PAYMENT_METHOD_UNSPECIFIED:
        return ""
    names = {int(key): name for key, name in convert.PAYMENT_METHODS.items()}
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


def _time(message: Any, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    value: Timestamp = getattr(message, field)
    return value.ToDatetime(tzinfo=UTC)


class WalletServicer(wallet_service_pb2_grpc.WalletServiceServicer):
    def __init__(
        self, resources: Resources, gateway: PaymentGateway, matrix: PermissionMatrix
    ) -> None:
        self._engine = resources.engine
        self._gateway = gateway
        self._matrix = matrix
        self._referral_reward = from_minor(resources.settings.referral_reward_minor)

    async def GetWallet(self, request: pb.GetWalletRequest, context: Context) -> pb.Wallet:
        async with db.read_only(self._engine) as conn:
            row = await domain.get_wallet(conn, principal())
        return pb.Wallet(
            user_id=row.user_id,
            balance=protoconv.money(row.wallet_balance),
            updated_at=protoconv.timestamp(row.updated_at),
        )

    async def TopUp(self, request: pb.TopUpRequest, context: Context) -> pb.TopUpResponse:
        details_field, details = _details(request)
        order = domain.TopUpOrder(
            request_id=request.request_id,
            amount_minor=request.amount.units_minor if request.HasField("amount") else None,
            currency=request.amount.currency_code,
            method=_method_name(request.payment_method),
            details_field=details_field,
            details=details,
            fingerprint=request_hash(request),
        )
        result = await domain.top_up(self._engine, self._gateway, principal(), order)
        response = pb.TopUpResponse(transaction=convert.transaction_message(result.transaction))
        if result.redirect_url:
            response.pending_payment.CopyFrom(
                common_pb2.PendingPayment(
                    redirect_url=result.redirect_url,
                    expires_at=protoconv.timestamp(result.expires_at),
                )
            )
        return response

    async def ConfirmPayment(
        self, request: pb.ConfirmPaymentRequest, context: Context
    ) -> transaction_pb2.Transaction:
        outcome = (
            ""
            if request.outcome == pb.PAYMENT_OUTCOME_UNSPECIFIED
            else OUTCOMES.get(request.outcome, "?")
        )
        confirmation = domain.Confirmation(
            request_id=request.request_id,
            txn_id=request.txn_id,
            payment_transaction_id=request.payment_transaction_id,
            outcome=outcome,
            failure_reason=request.failure_reason,
            fingerprint=request_hash(request),
        )
        async with db.transaction(self._engine) as conn:
            row = await domain.confirm_payment(
                conn, principal(), confirmation, referral_reward=self._referral_reward
            )
        return convert.transaction_message(row)

    async def ListTransactions(
        self, request: pb.ListTransactionsRequest, context: Context
    ) -> pb.ListTransactionsResponse:
        flt = domain.TransactionFilter(
            category=protoconv.enum_filter("category", request.category, convert.CATEGORIES),
            txn_type=protoconv.enum_filter("txn_type", request.txn_type, convert.TXN_TYPES),
            source=protoconv.enum_filter("source", request.source, convert.SOURCES),
            status=protoconv.enum_filter("status", request.status, convert.STATUSES),
            created_after=_time(request, "created_after"),
            created_before=_time(request, "created_before"),
        )
        async with db.read_only(self._engine) as conn:
            rows, token = await domain.list_transactions(
                conn, principal(), flt, request.page_size, request.page_token
            )
        return pb.ListTransactionsResponse(
            transactions=[convert.transaction_message(r) for r in rows], next_page_token=token
        )

    async def GetTransaction(
        self, request: pb.GetTransactionRequest, context: Context
    ) -> transaction_pb2.Transaction:
        async with db.read_only(self._engine) as conn:
            row = await domain.get_transaction(conn, principal(), self._matrix, request.txn_id)
        return convert.transaction_message(row)

    async def ListReferralRewards(
        self, request: pb.ListReferralRewardsRequest, context: Context
    ) -> pb.ListReferralRewardsResponse:
        status = protoconv.enum_filter("status", request.status, convert.REFERRAL_STATUSES)
        async with db.read_only(self._engine) as conn:
            rows, token = await domain.list_referral_rewards(
                conn, principal(), status, request.page_size, request.page_token
            )
        return pb.ListReferralRewardsResponse(
            referral_rewards=[convert.referral_reward_message(r) for r in rows],
            next_page_token=token,
        )
