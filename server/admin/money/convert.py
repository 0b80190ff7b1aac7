"""AdminService money messages <-> refund and adjustment values."""

from __future__ import annotations

from gencharge.v1 import admin_service_pb2 as pb
from server.admin.money.domain import Adjustment, AdjustmentOrder, Decision, RefundOrder, RefundStep
from server.core import protoconv
from server.core.idempotency import request_hash
from server.ledger import convert as ledger_convert

ADJUSTMENT_STATUSES: dict[pb.WalletAdjustmentStatus.ValueType, str] = {
    pb.WALLET_ADJUSTMENT_STATUS_APPLIED: "applied",
    pb.WALLET_ADJUSTMENT_STATUS_PENDING: "pending",
    pb.WALLET_ADJUSTMENT_STATUS_APPROVED: "approved",
    pb.WALLET_ADJUSTMENT_STATUS_REJECTED: "rejected",
}
ADJUSTMENT_STATUSES_BY_NAME = {name: value for value, name in ADJUSTMENT_STATUSES.items()}


def refund_order(request: pb.RefundTransactionRequest) -> RefundOrder:
    return RefundOrder(
        request_id=request.request_id,
        txn_id=request.txn_id,
        amount_minor=request.amount.units_minor if request.HasField("amount") else None,
        currency=request.amount.currency_code,
        reason=request.reason,
        fingerprint=request_hash(request),
    )


def refund_response(step: RefundStep) -> pb.RefundTransactionResponse:
    return pb.RefundTransactionResponse(
        refund_transaction=ledger_convert.transaction_message(step.refund),
        original_transaction=ledger_convert.transaction_message(step.original),
        total_refunded=protoconv.money(step.total_refunded, step.original.currency),
    )


def adjustment_order(request: pb.AdjustWalletRequest) -> AdjustmentOrder:
    return AdjustmentOrder(
        request_id=request.request_id,
        user_id=request.user_id,
        amount_minor=request.amount.units_minor if request.HasField("amount") else None,
        currency=request.amount.currency_code,
        reason=request.reason,
        fingerprint=request_hash(request),
    )


def approval(request: pb.ApproveWalletAdjustmentRequest) -> Decision:
    return Decision(request.request_id, request.txn_id, request.note, request_hash(request))


def rejection(request: pb.RejectWalletAdjustmentRequest) -> Decision:
    return Decision(request.request_id, request.txn_id, request.reason, request_hash(request))


def adjustment_message(adjustment: Adjustment) -> pb.WalletAdjustment:
    txn = adjustment.txn
    return pb.WalletAdjustment(
        transaction=ledger_convert.transaction_message(txn),
        status=ADJUSTMENT_STATUSES_BY_NAME[adjustment.status],
        reason=adjustment.reason,
        requested_by=adjustment.requested_by,
        decided_by=adjustment.decided_by or 0,
        decided_at=protoconv.timestamp(adjustment.decided_at),
        decision_note=adjustment.decision_note or "",
        created_at=protoconv.timestamp(adjustment.created_at),
        amount=protoconv.money(adjustment.signed_amount, txn.currency),
    )
