"""Charge through the gateway, then record: the steps a top-up and an externally paid
recharge share, around the attempt their claim wrote (server/payments/attempts/
domain.py). No transaction is open while the gateway is called.

Once the key is claimed the work runs to its end even if the caller goes away (a
cancelled call or a passed deadline does not stop it), and whatever stops it anyway (a
crash, a failed recording) leaves the attempt ``charging`` for the recovery job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from server.core.db import Database
from server.core.errors import DomainError, FailedPrecondition, Unavailable
from server.payments.attempts import domain
from server.payments.attempts.domain import Attempt
from server.payments.gateway import ChargeResult, PaymentGateway

log = logging.getLogger(__name__)

R = TypeVar("R")
#: Record an authorised or pending charge (locks the attempt; replays a recorded one).
Record = Callable[[ChargeResult, AsyncConnection], Awaitable[R]]
#: The caller's result of an attempt that is already recorded.
Replay = Callable[[Attempt, AsyncConnection], Awaitable[R]]


@dataclass(frozen=True)
class ChargeOrder:
    """What to charge, under which reference."""

    reference: str
    amount: Decimal
    currency: str
    method: str
    details: Mapping[str, str]


async def charge_and_record(
    db: Database,
    gateway: PaymentGateway,
    order: ChargeOrder,
    *,
    record: Record[R],
    replay: Replay[R],
) -> R:
    """Charge, then record the outcome; shielded from the caller's cancellation.

    - authorised or pending: ``record`` in one transaction. If that fails (a database
      error), the charge stays ``charging`` for the recovery job and the call answers
      UNAVAILABLE ``PAYMENT_NOT_RECORDED``: a retry with the same request_id gets
      IN_PROGRESS until the recovery records it, then the recorded outcome;
    - declined: the key and the attempt are released (nothing was captured; the same
      request_id may try again), FAILED_PRECONDITION ``PAYMENT_DECLINED``;
    - no answer (the outcome is unknown): the key is released so that the caller may
      retry at once (the same reference never captures twice), the attempt stays
      ``charging`` for the recovery job; UNAVAILABLE ``GATEWAY_UNAVAILABLE``.

    An attempt recorded meanwhile (by the recovery job, while this charge was slow)
    answers with that outcome."""
    work = asyncio.ensure_future(_charge_and_record(db, gateway, order, record, replay))
    work.add_done_callback(_consume_exception)
    return await asyncio.shield(work)


def _consume_exception(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def _charge_and_record(
    db: Database,
    gateway: PaymentGateway,
    order: ChargeOrder,
    record: Record[R],
    replay: Replay[R],
) -> R:
    try:
        charge = await gateway.charge(
            amount=order.amount,
            currency=order.currency,
            method=order.method,
            details=dict(order.details),
            reference=order.reference,
        )
    except DomainError:  # the gateway refused the order itself: nothing was charged
        async with db.side_transaction() as conn:
            done = await domain.release(order.reference, conn=conn)
            if done is not None:
                return await replay(done, conn)
        raise
    except Exception as exc:
        async with db.side_transaction() as conn:
            done = await domain.abandon(order.reference, conn=conn)
            if done is not None:
                return await replay(done, conn)
        log.warning(
            "payment gateway did not answer; the charge is left for recovery",
            extra={"reference": order.reference, "error": type(exc).__name__},
        )
        raise Unavailable(
            "the payment gateway did not answer; retry with the same request_id",
            reason="GATEWAY_UNAVAILABLE",
        ) from exc
    if charge.status == "declined":
        async with db.side_transaction() as conn:
            done = await domain.release(order.reference, payment_id=charge.payment_id, conn=conn)
            if done is not None:
                return await replay(done, conn)
        reason = charge.decline_reason or "declined"
        raise FailedPrecondition(
            f"the payment was declined: {reason}",
            reason="PAYMENT_DECLINED",
            metadata={"decline_reason": charge.decline_reason or ""},
        )
    try:
        async with db.transaction() as conn:
            return await record(charge, conn)
    except Exception as exc:
        log.error(
            "payment charged but not recorded; the recovery job will record it",
            extra={
                "reference": order.reference,
                "charge_status": charge.status,
                "error": type(exc).__name__,
            },
        )
        raise Unavailable(
            "the payment went through but could not be recorded yet; it will be recorded "
            "automatically: retry with the same request_id for the outcome",
            reason="PAYMENT_NOT_RECORDED",
        ) from exc
