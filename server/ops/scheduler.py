"""The in-process scheduler: plan expiry and queued-plan activation, autopay, payment
recovery, refund recovery, bill reminders and idempotency-key cleanup, one tick every
``settings.scheduler_interval_seconds``.

Every replica of the server runs its own scheduler; the jobs coordinate through the
database (server/jobs: advisory locks or ``FOR UPDATE SKIP LOCKED``), so no job runs
twice. A failing job is logged and does not stop the others or later ticks. See
docs/scheduler.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from server.admin.money import flows as refund_flows
from server.admin.money.flows import RefundBackoff, RefundRecoveryCounts
from server.audit.scope import job_scope
from server.backup import scheduled as backup_schedules
from server.backup.context import JobContext
from server.backup.scheduled import BackupCounts, Spawn
from server.core import idempotency
from server.core.jobs import LOCK_IDEMPOTENCY_PURGE, try_job_lock
from server.core.resources import Resources
from server.payments.attempts import domain as attempts
from server.recharge import flows as recharge_flows
from server.recharge.autopay import flows as autopay_flows
from server.recharge.autopay.flows import AutopayCounts
from server.recharge.bills import flows as bills_flows
from server.recharge.bills.domain import BillCounts
from server.recharge.domain import PlanCounts
from server.recharge.flows import Recharger
from server.recovery import flows as recovery_flows
from server.recovery.flows import RecoveryCounts
from server.wallet.domain import expire_pending_payments

log = logging.getLogger(__name__)

#: Autopay mandates executed per tick (the rest wait for the next tick).
AUTOPAY_BATCH = 100
#: Seconds before a mandate whose last attempt failed (e.g. short wallet) is retried.
AUTOPAY_RETRY_SECONDS = 3600.0
#: Seconds a tick in progress may run on when the scheduler is stopped.
STOP_GRACE_SECONDS = 5.0

#: The wall clock of the jobs that compare times they stored (payment recovery, key
#: purge); tests pass one they can step.
WallClock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class TickReport:
    """What one tick did, per job (``None``: the job failed; see the log)."""

    plans: PlanCounts | None = None
    autopay: AutopayCounts | None = None
    bills: BillCounts | None = None
    payments: RecoveryCounts | None = None
    refunds: RefundRecoveryCounts | None = None
    purged_keys: int | None = None
    expired_payments: int | None = None
    backups: BackupCounts | None = None
    failed_jobs: list[str] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        """Whether the tick changed anything or failed (worth an INFO log line)."""
        counts = [
            v
            for part in (
                self.plans,
                self.autopay,
                self.bills,
                self.payments,
                self.refunds,
                self.backups,
            )
            if part is not None
            for v in asdict(part).values()
            if not isinstance(v, bool)
        ]
        return bool(self.failed_jobs or self.purged_keys or self.expired_payments or any(counts))

    def as_log(self) -> dict[str, Any]:
        out: dict[str, Any] = {"failed_jobs": list(self.failed_jobs)}
        for name in ("plans", "autopay", "bills", "payments", "refunds", "backups"):
            value = getattr(self, name)
            out[name] = asdict(value) if value is not None else None
        out["purged_keys"] = self.purged_keys
        out["expired_payments"] = self.expired_payments
        return out


async def _purge(resources: Resources, now: datetime) -> int:
    """Expired idempotency keys, and the payment attempts settled before them."""
    async with resources.db.side_transaction() as conn:
        if not await try_job_lock(conn, LOCK_IDEMPOTENCY_PURGE):
            return 0
        purged = await idempotency.purge_expired(conn)
        await attempts.purge_settled(before=now - idempotency.IDEMPOTENCY_TTL, conn=conn)
        return purged


async def _recover_payments(
    resources: Resources, recharger: Recharger, now: datetime
) -> RecoveryCounts:
    grace = timedelta(seconds=resources.settings.payment_recovery_after_seconds)
    return await recovery_flows.run(recharger, now=now, grace=grace)


async def _recover_refunds(
    resources: Resources, recharger: Recharger, now: datetime, backoff: RefundBackoff
) -> RefundRecoveryCounts:
    grace = timedelta(seconds=resources.settings.payment_recovery_after_seconds)
    return await refund_flows.recover_refunds(
        resources.db, recharger.gateway, now=now, grace=grace, backoff=backoff
    )


async def _expire_payments(resources: Resources) -> int:
    """External payments left pending past their deadline are marked failed (so bills
    they were paying become payable again in the same tick)."""
    with job_scope("expire_payments"):
        async with resources.db.transaction() as conn:
            return await expire_pending_payments(conn=conn)


async def run_once(
    resources: Resources,
    recharger: Recharger,
    *,
    autopay_batch: int = AUTOPAY_BATCH,
    autopay_retry_seconds: float = AUTOPAY_RETRY_SECONDS,
    clock: WallClock | None = None,
    refund_backoff: RefundBackoff | None = None,
    backup_context: JobContext | None = None,
    spawn: Spawn | None = None,
) -> TickReport:
    """One tick of every job, in order: plans (so queued plans are active before
    autopay queues more), autopay, payment recovery (charges left between the gateway
    and the ledger), refund recovery (gateway refunds whose answer was not recorded),
    expired external payments, bill reminders, idempotency-key purge.
    ``clock`` (default: the real UTC time) is the recoveries' and the purge's now;
    ``refund_backoff`` the refund recovery's memory of refunds to leave alone for a
    while (the :class:`Scheduler` keeps one; default: none). Due backup schedules start
    their jobs with ``spawn`` (the :class:`Scheduler` runs them in the background);
    without one, this call runs them before it returns."""
    report = TickReport()
    now = (clock or _utc_now)()
    try:
        with job_scope("plan_expiry"):
            report.plans = await recharge_flows.run_plan_expiry(resources.db)
    except Exception as exc:
        report.failed_jobs.append("plans")
        log.exception("scheduler job failed", extra={"job": "plans", "error": type(exc).__name__})
    try:
        report.autopay = await autopay_flows.run(
            recharger,
            batch_size=autopay_batch,
            retry_after_seconds=autopay_retry_seconds,
        )
    except Exception as exc:
        report.failed_jobs.append("autopay")
        log.exception("scheduler job failed", extra={"job": "autopay", "error": type(exc).__name__})
    try:
        report.payments = await _recover_payments(resources, recharger, now)
    except Exception as exc:
        report.failed_jobs.append("payments")
        log.exception(
            "scheduler job failed", extra={"job": "payments", "error": type(exc).__name__}
        )
    try:
        report.refunds = await _recover_refunds(
            resources, recharger, now, refund_backoff or RefundBackoff()
        )
    except Exception as exc:
        report.failed_jobs.append("refunds")
        log.exception("scheduler job failed", extra={"job": "refunds", "error": type(exc).__name__})
    try:
        report.expired_payments = await _expire_payments(resources)
    except Exception as exc:
        report.failed_jobs.append("expired_payments")
        log.exception(
            "scheduler job failed", extra={"job": "expired_payments", "error": type(exc).__name__}
        )
    try:
        with job_scope("bill_reminders"):
            report.bills = await bills_flows.run_reminders(
                resources.db, days_before=resources.settings.bill_reminder_days_before
            )
    except Exception as exc:
        report.failed_jobs.append("bills")
        log.exception("scheduler job failed", extra={"job": "bills", "error": type(exc).__name__})
    inline: list[Any] = []
    try:
        report.backups = await backup_schedules.run_tick(
            backup_context or JobContext.build(resources, clock=clock),
            now,
            spawn or inline.append,
        )
    except Exception as exc:
        report.failed_jobs.append("backups")
        log.exception("scheduler job failed", extra={"job": "backups", "error": type(exc).__name__})
    for job in inline:
        await job
    try:
        report.purged_keys = await _purge(resources, now)
    except Exception as exc:
        report.failed_jobs.append("idempotency_purge")
        log.exception(
            "scheduler job failed",
            extra={"job": "idempotency_purge", "error": type(exc).__name__},
        )
    log.log(logging.INFO if report.busy else logging.DEBUG, "scheduler tick", extra=report.as_log())
    return report


class Scheduler:
    """Runs :func:`run_once` every ``interval`` seconds (default: the setting) until
    stopped. ``ticks`` counts the background ticks finished (failed ones included);
    :meth:`wait_ticks` waits for them."""

    def __init__(
        self,
        resources: Resources,
        recharger: Recharger,
        *,
        interval: float | None = None,
        autopay_batch: int = AUTOPAY_BATCH,
        autopay_retry_seconds: float = AUTOPAY_RETRY_SECONDS,
        clock: WallClock | None = None,
    ) -> None:
        self._resources = resources
        self._clock = clock
        self._recharger = recharger
        self._interval = (
            interval if interval is not None else resources.settings.scheduler_interval_seconds
        )
        self._autopay_batch = autopay_batch
        self._autopay_retry_seconds = autopay_retry_seconds
        #: The refund recovery's back-off, kept across this scheduler's ticks.
        self.refund_backoff = RefundBackoff()
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        #: Backup and drill runs of schedules, started by ticks, running on their own.
        self.backup_runs: set[asyncio.Task[Any]] = set()
        self._backup_context: JobContext | None = None
        #: Background ticks finished so far.
        self.ticks = 0
        self._ticked = asyncio.Condition()

    @property
    def recharger(self) -> Recharger:
        return self._recharger

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def _spawn(self, job: Any) -> None:
        task = asyncio.create_task(job, name="gencharge-scheduled-backup")
        self.backup_runs.add(task)
        task.add_done_callback(self.backup_runs.discard)

    async def run_once(self) -> TickReport:
        if self._backup_context is None:
            self._backup_context = JobContext.build(self._resources, clock=self._clock)
        return await run_once(
            self._resources,
            self._recharger,
            autopay_batch=self._autopay_batch,
            autopay_retry_seconds=self._autopay_retry_seconds,
            clock=self._clock,
            refund_backoff=self.refund_backoff,
            backup_context=self._backup_context,
            spawn=self._spawn,
        )

    async def wait_backup_runs(self) -> None:
        """Wait for the backup and drill runs started so far."""
        while self.backup_runs:
            await asyncio.wait(list(self.backup_runs))

    def start(self) -> None:
        if not self.running:
            self._stopping = asyncio.Event()
            self._task = asyncio.create_task(self._loop(), name="gencharge-scheduler")

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop ticking: a tick in progress may finish for ``grace`` seconds, then it is
        cancelled (its open transactions roll back; every job is safe to run again)."""
        task, self._task = self._task, None
        runs = list(self.backup_runs)
        if runs:  # a scheduled backup may finish; what is left records itself failed
            _, pending = await asyncio.wait(runs, timeout=grace)
            for run in pending:
                run.cancel()
        if task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=grace)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_ticks(self, count: int) -> None:
        """Return once ``count`` background ticks have finished (a barrier for whoever
        needs a tick's effects, instead of polling for them)."""
        async with self._ticked:
            await self._ticked.wait_for(lambda: self.ticks >= count)

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.run_once()
            except Exception as exc:  # run_once isolates jobs; this is a last resort
                log.exception("scheduler tick failed", extra={"error": type(exc).__name__})
            async with self._ticked:
                self.ticks += 1
                self._ticked.notify_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._interval)
