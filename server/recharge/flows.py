"""Recharge work that opens transactions: the one-transaction wallet recharge, and the
externally paid recharge that spans several transactions around the payment gateway
(no transaction is open while the gateway is called). The plan-expiry job of the
scheduler is here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncConnection

from server.auth.principal import Principal
from server.core.db import Database
from server.core.jobs import LOCK_PLAN_EXPIRY, try_job_lock
from server.core.money import CURRENCY
from server.payments.attempts.domain import Attempt
from server.payments.attempts.flows import ChargeOrder, charge_and_record
from server.payments.gateway import ChargeResult, PaymentGateway
from server.plans.catalogue import Catalogue
from server.recharge import domain
from server.recharge.domain import Order, PlanCounts, RechargeResult


@dataclass(frozen=True)
class Recharger:
    """What a recharge needs besides the order: the unit of work, the plan catalogue,
    the payment gateway and the referral reward paid on a referred user's first
    recharge. Built once by the wiring; shared by RechargeService, PayBill, BatchRecharge
    and the autopay job."""

    db: Database
    catalogue: Catalogue
    gateway: PaymentGateway
    reward_amount: Decimal


async def recharge(
    r: Recharger,
    who: Principal,
    order: Order,
    fingerprint: str,
    *,
    source: str = "recharge",
    scope: str | None = None,
) -> RechargeResult:
    """Execute ``order`` once per (``scope``, request_id); ``scope`` defaults to the
    caller's subject (the idempotency keys of different callers never collide)."""
    if order.payment_method == domain.WALLET:
        async with r.db.transaction() as conn:
            return await domain.recharge_from_wallet(
                r.catalogue,
                who,
                order,
                fingerprint,
                reward_amount=r.reward_amount,
                source=source,
                scope=scope,
                conn=conn,
            )
    return await _external(r, who, order, fingerprint, source=source, scope=scope)


async def _external(
    r: Recharger,
    who: Principal,
    order: Order,
    fingerprint: str,
    *,
    source: str,
    scope: str | None,
) -> RechargeResult:
    """Price and check the order (a read), claim its key with its payment attempt (a
    committed transaction of their own), then charge and record outside any open
    transaction (server/payments/attempts/flows.py: the work finishes even if the caller
    goes away; whatever stops it leaves the attempt for the recovery job)."""
    async with r.db.read_only() as conn:
        ext = await domain.prepare_external(
            r.catalogue, who, order, fingerprint, scope=scope, conn=conn
        )
    intent = domain.PaidRecharge.of(ext, source=source)
    async with r.db.side_transaction() as conn:
        replayed = await domain.claim_external(intent, conn=conn)
    if replayed is not None:
        return replayed

    async def record(charge: ChargeResult, conn: AsyncConnection) -> RechargeResult:
        return await domain.record_external(
            intent, charge, reward_amount=r.reward_amount, conn=conn
        )

    async def replay(attempt: Attempt, conn: AsyncConnection) -> RechargeResult:
        return await domain.recorded_recharge(attempt, conn=conn)

    return await charge_and_record(
        r.db,
        r.gateway,
        ChargeOrder(
            reference=intent.charge.reference,
            amount=intent.purchase.amount,
            currency=CURRENCY,
            method=intent.method,
            details=order.payment_details,
        ),
        record=record,
        replay=replay,
    )


async def run_plan_expiry(db: Database) -> PlanCounts:
    """One plan-expiry tick (server/ops/scheduler.py): one replica at a time."""
    async with db.transaction() as conn:
        if not await try_job_lock(conn, LOCK_PLAN_EXPIRY):
            return PlanCounts(ran=False)
        return await domain.expire_and_activate_plans(conn=conn)
