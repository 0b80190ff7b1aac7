"""Wallet work that spans several transactions or calls the payment gateway
(docs/payments.md). Each step opens its own transaction; none is held open while the
gateway is called.

- :func:`top_up`: claim the key (committed "in progress"), charge through the gateway
  outside any transaction, then record the credit and complete the key together (or
  release the key when the charge was declined or the gateway did not answer).
- :func:`confirm_payment`: the gateway's callback, verified by the gateway adapter outside
  any transaction, settles a pending payment and, when the payment bought a recharge,
  activates its plan (server/recharge/domain.py), in one transaction.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Any

from server.auth.principal import Principal
from server.core.db import Database
from server.core.errors import (
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    Unavailable,
)
from server.core.money import CURRENCY, from_minor
from server.ledger.domain import Transaction
from server.payments import signing
from server.payments.gateway import (
    Callback,
    CallbackRejected,
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

    1. claim the idempotency key in its own committed transaction ("in progress");
    2. charge through the gateway, outside any transaction;
    3. authorised: insert the ``success`` credit (the trigger credits the wallet) and
       complete the key, in one transaction; pending: insert a ``pending`` credit with
       the gateway's payment id (nothing moves until ConfirmPayment); declined: release
       the key, write nothing, FAILED_PRECONDITION ``PAYMENT_DECLINED``.
    """
    async with db.side_transaction() as conn:
        replay = await domain.begin_top_up(who, order, conn=conn)
    if replay is not None:
        async with db.read_only() as conn:
            return await domain.replayed_top_up(who, replay, conn=conn)
    # From here on the key is "in progress": finish the work even if the caller goes
    # away (a cancelled call would otherwise leave the key stuck until it expires).
    work = asyncio.ensure_future(_charge_and_record(db, gateway, who, order))
    work.add_done_callback(_consume_exception)
    return await asyncio.shield(work)


def _consume_exception(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def _charge_and_record(
    db: Database, gateway: PaymentGateway, who: Principal, order: TopUpOrder
) -> TopUpResult:
    assert order.amount_minor is not None
    try:
        charge = await gateway.charge(
            amount=from_minor(order.amount_minor),
            currency=CURRENCY,
            method=order.method,
            details=dict(order.details),
            reference=domain.gateway_reference(who.subject, order.request_id),
        )
    except Exception as exc:
        # The gateway is idempotent per reference, so a retry with the same request_id
        # cannot charge twice: forget the key and let the caller retry.
        async with db.side_transaction() as conn:
            await domain.release_top_up(who, order, conn=conn)
        if isinstance(exc, DomainError):
            raise
        raise Unavailable(
            "the payment gateway did not answer; retry with the same request_id",
            reason="GATEWAY_UNAVAILABLE",
        ) from exc
    if charge.status == "declined":
        async with db.side_transaction() as conn:
            await domain.release_top_up(who, order, conn=conn)
        raise FailedPrecondition(
            "the payment was declined",
            reason="PAYMENT_DECLINED",
            metadata={"decline_reason": charge.decline_reason or ""},
        )
    async with db.transaction() as conn:
        return await domain.record_top_up(who, order, charge, conn=conn)


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
