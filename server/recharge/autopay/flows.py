"""Autopay: execute due mandates (DDS AutoPay) from the owner's wallet.

A tick lists up to ``batch_size`` due, enabled mandates and runs each in one
transaction of its own: the mandate is locked with ``FOR UPDATE SKIP LOCKED`` (a mandate
another replica is running is skipped), the recharge, the mandate's next due date and
the notification commit together. No lock is held across another transaction: a
failed recharge rolls back, and its outcome is recorded in a new transaction that
locks the mandate again. Each due occurrence is one idempotent recharge: request_id
``autopay-<autopay_id>-<due epoch seconds>`` (caller ``user:<owner>``), so a tick that
is retried after a crash replays the recorded recharge instead of paying again.

Outcomes:

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

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from server.audit.scope import job_scope
from server.core.errors import DomainError
from server.recharge import wallet
from server.recharge.autopay import domain
from server.recharge.flows import Recharger, wallet_recharge_in

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AutopayCounts:
    due: int = 0
    succeeded: int = 0
    failed: int = 0
    disabled: int = 0
    errors: int = 0


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def run(
    r: Recharger,
    *,
    batch_size: int = 100,
    retry_after_seconds: float = 3600.0,
    now: Callable[[], datetime] = _utc_now,
) -> AutopayCounts:
    async with r.db.read_only() as conn:
        due = await domain.due_mandates(
            limit=batch_size, retry_after_seconds=retry_after_seconds, conn=conn
        )
    counts = {"due": 0, "succeeded": 0, "failed": 0, "disabled": 0, "errors": 0}
    for autopay_id in due:
        try:
            outcome = await _run_one(r, autopay_id, retry_after_seconds, now)
        except Exception as exc:  # the next tick retries (the request_id is idempotent)
            counts["due"] += 1
            counts["errors"] += 1
            log.warning(
                "autopay run failed",
                extra={"autopay_id": autopay_id, "error": type(exc).__name__},
            )
            continue
        if outcome is None:
            continue  # no longer due, or another replica is running it
        counts["due"] += 1
        counts[outcome] += 1
        if outcome == "disabled":
            counts["failed"] += 1
    return AutopayCounts(**counts)


async def _run_one(
    r: Recharger, autopay_id: int, retry_after_seconds: float, now: Callable[[], datetime]
) -> str | None:
    """ "succeeded", "failed", "disabled" (a permanent failure) or None (skipped)."""
    with job_scope("autopay") as scope:  # the debit is audited as the scheduler's
        try:
            async with r.db.transaction() as conn:
                mandate = await domain.lock_due(
                    autopay_id, retry_after_seconds=retry_after_seconds, conn=conn
                )
                if mandate is None:
                    return None
                scope.request_id = mandate.request_id
                item = wallet.prepare(
                    mandate.owner,
                    mandate.order(),
                    mandate.fingerprint,
                    source="autopay",
                    scope=None,
                )
                result = await wallet_recharge_in(r, item, conn)
                await domain.record_success(mandate, result, now=now(), conn=conn)
            return "succeeded"
        except DomainError as exc:
            error = exc  # that transaction rolled back: record the failure in a new one
        async with r.db.transaction() as conn:
            mandate = await domain.lock_due(
                autopay_id, retry_after_seconds=retry_after_seconds, conn=conn
            )
            if mandate is None:
                return None
            permanent = await domain.record_failure(mandate, error, conn=conn)
    return "disabled" if permanent else "failed"
