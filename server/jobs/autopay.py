"""Autopay: execute due mandates (DDS AutoPay) from the owner's wallet.

A tick claims up to ``batch_size`` due, enabled mandates with ``FOR UPDATE SKIP
LOCKED`` (replicas take disjoint rows) and keeps them locked until their outcome is
recorded. Each due occurrence is one idempotent recharge: request_id
``autopay-<autopay_id>-<due epoch seconds>`` (caller ``user:<owner>``), so a tick that
is retried after a crash replays the recorded recharge instead of paying again.

Outcomes (recorded with the notification in the claim's transaction):

- success: REGULAR mandates move ``next_due_date`` on by the plan's validity (until it
  is in the future), ONETIME mandates are disabled; ``autopay_success`` notification.
- transient failure (INSUFFICIENT_FUNDS, ACCOUNT_BLOCKED, IN_PROGRESS): ``last_error``
  and ``last_run_at`` are set and the same occurrence is retried once
  ``retry_after_seconds`` have passed; ``autopay_failed`` is sent when the error first
  appears (not on every retry).
- permanent failure (plan withdrawn or gone, not eligible, bad number, ...): the
  mandate is disabled with ``last_error``; ``autopay_failed`` notification.
- an unexpected error (e.g. the database): logged, nothing recorded; the next tick
  tries again.

The wallet trigger makes a short wallet fail the debit: no balance ever goes negative.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from server.audit.scope import job_scope
from server.auth.principal import Principal
from server.core import db
from server.core.errors import DomainError
from server.notifications import notify
from server.recharge import autopay_queries as queries
from server.recharge.domain import Order, Recharges

log = logging.getLogger(__name__)

RPC = "autopay"
TRANSIENT_REASONS = frozenset({"INSUFFICIENT_FUNDS", "ACCOUNT_BLOCKED", "IN_PROGRESS"})


@dataclass(frozen=True)
class AutopayCounts:
    due: int = 0
    succeeded: int = 0
    failed: int = 0
    disabled: int = 0
    errors: int = 0


def request_id(autopay_id: int, due: datetime) -> str:
    return f"autopay-{autopay_id}-{int(due.timestamp())}"


def _fingerprint(autopay_id: int, due: datetime) -> str:
    return hashlib.sha256(f"autopay:{autopay_id}:{due.isoformat()}".encode()).hexdigest()


def next_due(due: datetime, validity_days: int, now: datetime) -> datetime:
    """The due date one validity period on, skipping periods already in the past."""
    step = timedelta(days=max(validity_days, 1))
    result = due + step
    if result <= now:
        missed = (now - result) // step + 1
        result += step * missed
    return result


def _rupees(amount: Any) -> str:
    return f"\u20b9{amount}"


async def run(
    engine: AsyncEngine,
    recharges: Recharges,
    *,
    batch_size: int = 100,
    retry_after_seconds: float = 3600.0,
) -> AutopayCounts:
    due_count = succeeded = failed = disabled = errors = 0
    async with db.side_transaction(engine) as conn:
        rows = await queries.claim_due(
            conn, limit=batch_size, retry_after_seconds=retry_after_seconds
        )
        for row in rows:
            due_count += 1
            due: datetime = row.next_due_date
            order = Order(
                request_id=request_id(row.autopay_id, due),
                phone_number=row.phone_number or "",
                plan_id=row.plan_id,
                offer_id=None,
                payment_method="Wallet",
                payment_details={},
                user_id=0,
            )
            phone = row.phone_number or "your number"
            try:
                with job_scope("autopay", order.request_id):  # the debit is audited
                    result = await recharges.recharge(
                        Principal("user", str(row.user_id)),
                        order,
                        _fingerprint(row.autopay_id, due),
                        rpc=RPC,
                        source="autopay",
                    )
            except DomainError as exc:
                failed += 1
                error = f"{exc.reason}: {exc.message}"
                permanent = exc.reason not in TRANSIENT_REASONS
                await queries.record_run(conn, row.autopay_id, disable=permanent, error=error)
                if permanent:
                    disabled += 1
                if permanent or row.last_error != error:
                    then = (
                        "The autopay was turned off; update it to resume."
                        if permanent
                        else "We will try again later."
                    )
                    await notify(
                        conn,
                        user_id=row.user_id,
                        type_name="autopay_failed",
                        description=(
                            f"Autopay of {row.plan_name} for {phone} failed: {exc.message}. " + then
                        ),
                        attachments=[
                            {"kind": "autopay", "autopay_id": row.autopay_id, "reason": exc.reason}
                        ],
                    )
                continue
            except Exception as exc:  # the next tick retries (the request_id is idempotent)
                errors += 1
                log.warning(
                    "autopay run failed",
                    extra={"autopay_id": row.autopay_id, "error": type(exc).__name__},
                )
                continue
            succeeded += 1
            following: datetime | None = None
            if row.tag == "regular":
                following = next_due(due, int(row.validity), datetime.now(UTC))
                await queries.record_run(conn, row.autopay_id, next_due_date=following)
            else:
                await queries.record_run(conn, row.autopay_id, disable=True)
            txn = result.txn
            more = (
                f" Next payment on {following.date().isoformat()}." if following is not None else ""
            )
            await notify(
                conn,
                user_id=row.user_id,
                type_name="autopay_success",
                description=(
                    f"Autopay recharged {phone} with {row.plan_name} for "
                    f"{_rupees(txn.amount)}.{more}"
                ),
                attachments=[
                    {
                        "kind": "autopay",
                        "autopay_id": row.autopay_id,
                        "txn_id": int(txn.txn_id),
                        "next_due_date": following.isoformat() if following else None,
                    }
                ],
            )
    return AutopayCounts(due_count, succeeded, failed, disabled, errors)
