"""Wallet work that spans several transactions or calls the payment gateway
(docs/payments.md). Each step opens its own transaction; none is held open while the
gateway is called.

- :func:`top_up`: claim the key (committed "in progress") with its payment attempt,
  charge through the gateway outside any transaction, then record the credit, complete
  the key and mark the attempt recorded together (or release them when the charge was
  declined; server/payments/attempts/flows.py).
- :func:`confirm_payment`: the gateway's callback, verified by the gateway adapter outside
  any transaction, settles a pending payment and, when the payment bought a recharge,
  activates its plan (server/recharge/domain.py), in one transaction.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncConnection

from server.auth.principal import Principal
from server.core.db import Database
from server.core.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    Unavailable,
)
from server.core.money import CURRENCY
from server.ledger.domain import Transaction
from server.payments import signing
from server.payments.attempts.domain import Attempt
from server.payments.attempts.flows import ChargeOrder, charge_and_record
from server.payments.gateway import (
    Callback,
    CallbackRejected,
    ChargeResult,
    GatewayError,
    PaymentGateway,
    VerifiedPayment,
)
from server.recharge import domain as recharge
from server.wallet import domain
from server.wallet.domain import Confirmation, TopUpOrder, TopUpResult

log = logging.getLogger(__name__)


async def top_up(
    db: Database, gateway: PaymentGateway, who: Principal, order: TopUpOrder
) -> TopUpResult:
    """Charge through the gateway and record the credit.

    1. claim the idempotency key "in progress" and write the payment attempt
       ``charging``, in one committed transaction of their own;
    2. charge through the gateway, outside any transaction (reference
       ``topup:<caller>:<request_id>``);
    3. authorised: insert the ``success`` credit (the trigger credits the wallet),
       complete the key and mark the attempt ``recorded``, in one transaction; pending:
       the same with a ``pending`` credit (nothing moves until ConfirmPayment);
       declined: release the key and the attempt, write nothing, FAILED_PRECONDITION
       ``PAYMENT_DECLINED``. Steps 2-3 finish even if the caller goes away; whatever
       stops them leaves the attempt for the recovery job (server/payments/attempts/
       flows.py).
    """
    async with db.side_transaction() as conn:
        intent, replay = await domain.begin_top_up(who, order, conn=conn)
    if replay is not None:
        async with db.read_only() as conn:
            return await domain.replayed_top_up(who.numeric_id, replay, conn=conn)

    async def record(charge: ChargeResult, conn: AsyncConnection) -> TopUpResult:
        return await domain.record_top_up(intent, charge, conn=conn)

    async def replayed(attempt: Attempt, conn: AsyncConnection) -> TopUpResult:
        return await domain.recorded_top_up(attempt, conn=conn)

    return await charge_and_record(
        db,
        gateway,
        ChargeOrder(
            reference=intent.charge.reference,
            amount=intent.amount,
            currency=CURRENCY,
            method=intent.method,
            details=order.details,
        ),
        record=record,
        replay=replayed,
    )


async def verify(gateway: PaymentGateway, callback: Callback) -> VerifiedPayment:
    """What a callback genuinely says, asked of the gateway adapter outside any
    transaction (for Razorpay a checkout callback is an HTTP call)."""
    try:
        return await gateway.verify_callback(callback)
    except CallbackRejected as exc:
        if exc.reason == signing.SIGNATURE_INVALID:
            raise PermissionDenied(str(exc), reason=exc.reason) from None
        raise InvalidArgument(
            str(exc),
            reason=domain.CALLBACK_MALFORMED,
            violations=[FieldViolation("callback", str(exc))],
        ) from None
    except GatewayError as exc:
        raise Unavailable(
            "the payment gateway could not be asked to verify the callback; retry",
            reason="GATEWAY_UNAVAILABLE",
        ) from exc


async def confirm_payment(
    db: Database,
    gateway: PaymentGateway,
    who: Principal,
    confirmation: Confirmation,
    *,
    referral_reward: Decimal,
) -> Transaction:
    """Settle the pending external payment a gateway callback reports (once).

    1. check the request, then verify the callback with the gateway adapter, outside any
       transaction (nothing is written for a callback that is not genuine);
    2. in one transaction: settle the row (server/wallet/domain.py ``settle_payment``:
       the amount and currency must be the row's) and, for a paid recharge, its plan,
       its offer's cashback and, on a first recharge, the referrer's reward (nothing is
       written if any of it fails; the gateway retries);
    3. a genuine success for a payment we already failed (it expired unpaid) is refunded
       through the gateway, and the call answers TRANSACTION_ALREADY_SETTLED saying so.
    """
    domain.validate_confirmation(confirmation)
    assert confirmation.callback is not None
    verified = await verify(gateway, confirmation.callback)
    try:
        async with db.transaction() as conn:
            txn, settled_now = await domain.settle_payment(who, confirmation, verified, conn=conn)
            if settled_now and txn.status == "success" and txn.is_paid_recharge:
                await recharge.activate_paid_recharge(txn, reward_amount=referral_reward, conn=conn)
    except FailedPrecondition as exc:
        if (
            exc.reason == domain.TRANSACTION_ALREADY_SETTLED
            and verified.outcome == "success"
            and exc.metadata.get("status") == "failed"
        ):
            raise await _refund_late_success(db, gateway, verified, exc) from None
        raise
    return txn


async def _refund_late_success(
    db: Database, gateway: PaymentGateway, verified: VerifiedPayment, refused: FailedPrecondition
) -> FailedPrecondition:
    """The money of a payment we already failed (it expired unpaid, so nothing was
    delivered) goes back: a refund through the gateway, under a reference derived from
    the transaction (a redelivered callback gets the same refund). Returns the error the
    call answers, which says so."""
    txn_id = refused.metadata["txn_id"]
    try:
        refund = await gateway.refund(
            payment_id=verified.payment_id,
            amount=verified.amount,
            currency=verified.currency,
            reference=domain.late_refund_reference(int(txn_id)),
        )
    except GatewayError as exc:
        raise Unavailable(
            "the payment arrived after the transaction failed and must be refunded; the "
            "gateway did not answer: retry",
            reason="GATEWAY_UNAVAILABLE",
        ) from exc
    except Exception:
        log.exception("late payment not refunded", extra={"txn_id": txn_id})
        return FailedPrecondition(
            refused.message + "; the payment could not be refunded automatically: refund it "
            "at the gateway",
            reason=refused.reason,
            metadata={**refused.metadata, "refund_status": "failed"},
        )
    async with db.transaction() as conn:
        await domain.record_late_refund(int(txn_id), refund, conn=conn)
    log.info(
        "late payment refunded",
        extra={"txn_id": txn_id, "refund_id": refund.refund_id, "refund_status": refund.status},
    )
    return FailedPrecondition(
        refused.message + "; the late payment was refunded through the gateway",
        reason=refused.reason,
        metadata={
            **refused.metadata,
            "refund_id": refund.refund_id,
            "refund_status": refund.status,
        },
    )
