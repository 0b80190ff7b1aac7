"""RefundTransaction's steps around the payment gateway (docs/payments.md "Refunds").
No transaction (nor row lock) is held while the gateway is called.

1. one transaction: the idempotency key, the original row locked ``FOR UPDATE``, the
   check of what is left to refund, the refund's ledger row, for a wallet refund the
   plan of a fully refunded recharge, and the audit event (server/admin/money/domain.py
   ``begin_refund``). A wallet refund is complete here.
2. a gateway refund: ``PaymentGateway.refund`` under the reference
   ``refund:txn:<refund txn_id>``, outside any transaction;
3. one transaction: the gateway's answer recorded on the refund row (its refund id), or,
   if the gateway refused, the reservation released (a pending row fails; a top-up's
   wallet debit is reversed).

Money is never lost or doubled: the reservation (step 1) comes before the gateway, so
no concurrent refund can exceed the original while the gateway works; if the gateway
cannot be reached (or the process stops) between 2 and 3, the row stays outstanding and
counts as refunded; the caller gets UNAVAILABLE and retries with the same request_id,
which repeats step 2 under the same reference (the gateway answers with the first
refund instead of making a second) and records it.
"""

from __future__ import annotations

import logging

from server.admin.money import domain
from server.admin.money.domain import RefundOrder, RefundStep
from server.auth.principal import Principal
from server.core.db import Database
from server.core.errors import Unavailable
from server.payments.gateway import GatewayError, PaymentGateway, RefundResult

log = logging.getLogger(__name__)


async def refund(
    db: Database, gateway: PaymentGateway, who: Principal, order: RefundOrder
) -> RefundStep:
    domain.check_refund_order(order)
    async with db.transaction() as conn:
        step = await domain.begin_refund(who, order, conn=conn)
        waiting = await domain.outstanding(step.refund, conn=conn)
        refused = not waiting and await domain.refused_already(step.refund, conn=conn)
    if refused:
        raise domain.refund_refused(step, "earlier")
    if not waiting:
        return step
    answer = await _ask_gateway(gateway, step)
    async with db.transaction() as conn:
        if answer is None:
            finished = await domain.finish_refund(
                step, refund_id=None, refund_status="refused", conn=conn
            )
        else:
            finished = await domain.finish_refund(
                step, refund_id=answer.refund_id, refund_status=answer.status, conn=conn
            )
        refused = await domain.refused_already(finished.refund, conn=conn)
    if refused:
        raise domain.refund_refused(step, "refused")
    return finished


async def _ask_gateway(gateway: PaymentGateway, step: RefundStep) -> RefundResult | None:
    """The gateway's refund (None: it refused, nothing was refunded). UNAVAILABLE when
    the outcome is unknown: the refund stays reserved for a retry with the same key."""
    payment_id = step.original.payment_transaction_id
    assert payment_id is not None
    try:
        result = await gateway.refund(
            payment_id=payment_id,
            amount=step.refund.amount,
            currency=step.refund.currency,
            reference=step.gateway_reference,
        )
    except GatewayError as exc:
        log.warning(
            "gateway refund outcome unknown",
            extra={"refund_txn_id": step.refund.txn_id, "error": type(exc).__name__},
        )
        raise Unavailable(
            "the payment gateway did not answer; the refund is reserved: retry with the "
            "same request_id to finish it",
            reason="GATEWAY_UNAVAILABLE",
            metadata={"refund_txn_id": str(step.refund.txn_id)},
        ) from exc
    except ValueError:
        # The adapter refused the request before any money moved (e.g. more than was
        # captured, or no such charge). Any other error leaves the refund outstanding.
        log.exception("gateway refused the refund", extra={"refund_txn_id": step.refund.txn_id})
        return None
    if result.status == "failed":
        return None
    return result
