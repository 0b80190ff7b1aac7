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

Nobody has to retry: the refund-recovery job (:func:`recover_refunds`, ticked by
server/ops/scheduler.py) finds the gateway refunds left outstanding for longer than the
grace period (``GENCHARGE_PAYMENT_RECOVERY_AFTER_SECONDS``, longer than a live call's
gateway step can take, so a live call is never raced) and does steps 2 and 3 for them
with the same code. One replica runs it at a time (the session-level advisory lock
``LOCK_REFUND_RECOVERY``, held for the whole run); a refund whose gateway still does not
answer is backed off (:class:`RefundBackoff`). A later retry of the RPC with the
request_id then answers the finished refund (or REFUND_REFUSED).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from server.admin.money import domain
from server.admin.money.domain import FinishedRefund, RefundOrder, RefundStep
from server.audit.scope import job_scope
from server.auth.principal import Principal
from server.core.db import Database
from server.core.errors import Unavailable
from server.core.jobs import LOCK_REFUND_RECOVERY, held_job_lock
from server.payments.gateway import GatewayError, PaymentGateway, RefundResult

log = logging.getLogger(__name__)

#: Pause before the recovery job asks the gateway again about a refund whose check
#: failed, by checks failed so far.
REFUND_BACKOFF = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
)
#: Refunds the recovery job finishes per tick (the rest wait for the next tick).
REFUND_BATCH = 50


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
    try:
        answer = await ask_gateway(gateway, step)
    except GatewayError as exc:
        log.warning(
            "gateway refund outcome unknown",
            extra={"refund_txn_id": step.refund.txn_id, "error": type(exc).__name__},
        )
        raise Unavailable(
            "the payment gateway did not answer; the refund is reserved: retry with the "
            "same request_id to finish it (the refund-recovery job also finishes it)",
            reason="GATEWAY_UNAVAILABLE",
            metadata={"refund_txn_id": str(step.refund.txn_id)},
        ) from exc
    finished = await record_answer(db, step, answer)
    if finished.refused:
        raise domain.refund_refused(step, "refused")
    return finished.step


async def ask_gateway(gateway: PaymentGateway, step: RefundStep) -> RefundResult | None:
    """Step 2: the gateway's refund under the refund's reference (None: it refused,
    nothing was refunded). Raises GatewayError when the outcome is unknown: the refund
    stays reserved for a retry (or the recovery job)."""
    payment_id = step.original.payment_transaction_id
    assert payment_id is not None
    try:
        result = await gateway.refund(
            payment_id=payment_id,
            amount=step.refund.amount,
            currency=step.refund.currency,
            reference=step.gateway_reference,
        )
    except ValueError:
        # The gateway refused (GatewayRefused: more than was captured, not captured...),
        # or the adapter refused the request, before any money moved. Any other error
        # leaves the refund outstanding.
        log.warning("gateway refused the refund", extra={"refund_txn_id": step.refund.txn_id})
        return None
    if result.status == "failed":
        return None
    return result


async def record_answer(
    db: Database, step: RefundStep, answer: RefundResult | None
) -> FinishedRefund:
    """Step 3, in one transaction: the gateway's answer recorded on the refund (once)."""
    async with db.transaction() as conn:
        if answer is None:
            return await domain.finish_refund(
                step, refund_id=None, refund_status="refused", conn=conn
            )
        return await domain.finish_refund(
            step, refund_id=answer.refund_id, refund_status=answer.status, conn=conn
        )


# --- the refund-recovery job ----------------------------------------------------------------


@dataclass
class RefundRecoveryCounts:
    """What one refund-recovery tick did."""

    ran: bool
    finished: int = 0  # the gateway's refund recorded
    refused: int = 0  # the gateway refused: the reservation released
    skipped: int = 0  # finished meanwhile (a retry of the RPC)
    deferred: int = 0  # the gateway still did not answer: backed off


@dataclass
class RefundBackoff:
    """When the job may ask the gateway again about each refund whose check failed, kept
    by the process that runs the job (the scheduler): a restart, or another replica's
    tick, may ask once more, never more often than each keeps."""

    #: refund txn_id -> (checks failed, next check at)
    waiting: dict[int, tuple[int, datetime]] = field(default_factory=dict)

    def not_before(self, now: datetime) -> list[int]:
        """The refunds still backed off at ``now``."""
        return sorted(txn_id for txn_id, (_, at) in self.waiting.items() if at > now)

    def failed(self, txn_id: int, now: datetime) -> tuple[int, datetime]:
        checks = self.waiting.get(txn_id, (0, now))[0] + 1
        until = now + REFUND_BACKOFF[min(checks, len(REFUND_BACKOFF)) - 1]
        self.waiting[txn_id] = (checks, until)
        return checks, until

    def done(self, txn_id: int) -> None:
        self.waiting.pop(txn_id, None)


async def recover_refunds(
    db: Database,
    gateway: PaymentGateway,
    *,
    now: datetime,
    grace: timedelta,
    backoff: RefundBackoff,
    batch: int = REFUND_BATCH,
) -> RefundRecoveryCounts:
    """One tick: finish the gateway refunds left outstanding since before ``now -
    grace`` (not backed off at ``now``), one at a time, holding the job's lock."""
    async with held_job_lock(db.engine, LOCK_REFUND_RECOVERY) as mine:
        if not mine:
            return RefundRecoveryCounts(ran=False)
        async with db.read_only() as conn:
            due = await domain.outstanding_refunds(
                created_before=now - grace,
                exclude=backoff.not_before(now),
                limit=batch,
                conn=conn,
            )
        counts = RefundRecoveryCounts(ran=True)
        for step in due:
            outcome = await _recover_refund(db, gateway, step, now=now, backoff=backoff)
            setattr(counts, outcome, getattr(counts, outcome) + 1)
        return counts


async def _recover_refund(
    db: Database,
    gateway: PaymentGateway,
    step: RefundStep,
    *,
    now: datetime,
    backoff: RefundBackoff,
) -> str:
    """Steps 2 and 3 for one outstanding refund; the outcome's name."""
    txn_id = step.refund.txn_id
    try:
        answer = await ask_gateway(gateway, step)
        with job_scope("refund_recovery", step.gateway_reference):
            finished = await record_answer(db, step, answer)
    except Exception as exc:  # GatewayError, or anything the adapter let through
        checks, until = backoff.failed(txn_id, now)
        log.warning(
            "refund recovery: the refund is still outstanding",
            exc_info=not isinstance(exc, GatewayError),
            extra={
                "refund_txn_id": txn_id,
                "checks": checks,
                "error": type(exc).__name__,
                "next_check_at": until.isoformat(),
            },
        )
        return "deferred"
    backoff.done(txn_id)
    outcome = "skipped" if not finished.recorded else "refused" if finished.refused else "finished"
    log.info(
        "refund recovered",
        extra={
            "refund_txn_id": txn_id,
            "original_txn_id": step.original.txn_id,
            "outcome": outcome,
            "gateway_refund_id": finished.step.refund.payment_transaction_id,
        },
    )
    return outcome
