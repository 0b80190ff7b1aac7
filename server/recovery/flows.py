"""The payment-recovery job (server/ops/scheduler.py ticks it): charges left between the
gateway and the ledger reach a final state by themselves.

A payment attempt stays ``charging`` when whatever was to record its outcome did not: a
database error at the recording step, the server process killed between the charge and
the record, or a gateway that did not answer. Once such an attempt is older than the
grace period (``GENCHARGE_PAYMENT_RECOVERY_AFTER_SECONDS``, longer than a charge can
take, so a live call is never raced), the job asks the gateway about its reference
(``PaymentGateway.lookup``), outside any transaction, and settles it in one transaction
(server/recovery/domain.py): authorised -> recorded (the credit, or the paid recharge
with its plan), pending -> the pending transaction recorded (a callback settles it),
declined or unknown to the gateway -> key and attempt released. A gateway that does not
answer backs the attempt off (``next_check_at``). One replica picks attempts at a time
(advisory lock ``LOCK_PAYMENT_RECOVERY``) and leases them, so no attempt is checked by
two replicas at once. Every attempt checked gets one log line (no personal data).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from server.audit.scope import job_scope
from server.core.jobs import LOCK_PAYMENT_RECOVERY, try_job_lock
from server.payments.attempts import domain as attempts
from server.payments.attempts.domain import Attempt
from server.payments.gateway import GatewayError
from server.recharge.flows import Recharger
from server.recovery import domain
from server.recovery.domain import Recovered

log = logging.getLogger(__name__)

#: How long an attempt picked by one replica is left to it before another may pick it.
LEASE = timedelta(minutes=5)
#: Pause before checking again an attempt whose check failed, by checks made so far.
BACKOFF = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
)
#: Attempts checked per tick (the rest wait for the next tick).
BATCH = 100


@dataclass
class RecoveryCounts:
    """What one recovery tick did."""

    ran: bool
    recorded: int = 0
    pending: int = 0
    released: int = 0
    skipped: int = 0
    deferred: int = 0


def backoff(checks: int) -> timedelta:
    return BACKOFF[min(max(checks, 1), len(BACKOFF)) - 1]


async def run(
    r: Recharger, *, now: datetime, grace: timedelta, batch: int = BATCH
) -> RecoveryCounts:
    """One tick: settle the attempts left ``charging`` that are due at ``now``."""
    async with r.db.side_transaction() as conn:
        if not await try_job_lock(conn, LOCK_PAYMENT_RECOVERY):
            return RecoveryCounts(ran=False)
        due = await attempts.take_due(now=now, grace=grace, lease=LEASE, limit=batch, conn=conn)
    counts = RecoveryCounts(ran=True)
    for attempt in due:
        outcome = await recover(r, attempt, now=now)
        setattr(counts, outcome, getattr(counts, outcome) + 1)
    return counts


async def recover(r: Recharger, attempt: Attempt, *, now: datetime) -> str:
    """Ask the gateway about one attempt and settle it; the outcome's name."""
    try:
        found = await r.gateway.lookup(reference=attempt.reference)
    except Exception as exc:  # GatewayError, or anything the adapter let through
        return await _defer(r, attempt, now, exc, "payment recovery: the gateway did not answer")
    try:
        with job_scope("payment_recovery", attempt.charge.request_id):
            async with r.db.transaction() as conn:
                recovered = await domain.settle(
                    attempt, found, reward_amount=r.reward_amount, conn=conn
                )
    except Exception as exc:
        return await _defer(r, attempt, now, exc, "payment recovery: recording failed")
    _log(attempt, recovered, found.status if found else "unknown")
    return recovered.outcome


async def _defer(
    r: Recharger, attempt: Attempt, now: datetime, exc: Exception, message: str
) -> str:
    until = now + backoff(attempt.checks)
    log.warning(
        message,
        exc_info=not _expected(exc),
        extra={
            "reference": attempt.reference,
            "kind": attempt.charge.kind,
            "checks": attempt.checks,
            "error": type(exc).__name__,
            "next_check_at": until.isoformat(),
        },
    )
    try:
        async with r.db.side_transaction() as conn:
            await attempts.back_off(attempt, until=until, error=type(exc).__name__, conn=conn)
    except Exception as again:  # the lease keeps it from the other replicas meanwhile
        log.warning("payment recovery: back-off not saved", extra={"error": type(again).__name__})
    return "deferred"


def _expected(exc: Exception) -> bool:
    """A gateway that does not answer is expected now and then (no traceback)."""
    return isinstance(exc, GatewayError)


def _log(attempt: Attempt, recovered: Recovered, gateway_status: str) -> None:
    log.log(
        logging.DEBUG if recovered.outcome == domain.SKIPPED else logging.INFO,
        "payment recovered",
        extra={
            "reference": attempt.reference,
            "kind": attempt.charge.kind,
            "outcome": recovered.outcome,
            "gateway_status": gateway_status,
            "txn_id": recovered.txn_id,
            "charges": attempt.charges,
            "checks": attempt.checks,
        },
    )
