"""Recharge work that opens transactions: the one-transaction wallet recharge, and the
externally paid recharge that spans several transactions around the payment gateway
(no transaction is open while the gateway is called). The plan-expiry job of the
scheduler is here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from server.auth.principal import Principal
from server.core.db import Database
from server.core.errors import FailedPrecondition
from server.core.jobs import LOCK_PLAN_EXPIRY, try_job_lock
from server.payments.gateway import PaymentGateway
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
    return await _external(r, who, order, fingerprint, scope=scope)


async def _external(
    r: Recharger, who: Principal, order: Order, fingerprint: str, *, scope: str | None
) -> RechargeResult:
    async with r.db.read_only() as conn:
        ext = await domain.prepare_external(
            r.catalogue, who, order, fingerprint, scope=scope, conn=conn
        )
    async with r.db.side_transaction() as conn:
        replayed = await domain.claim_external(ext, conn=conn)
    if replayed is not None:
        return replayed
    try:
        charge = await r.gateway.charge(
            amount=ext.pricing.to_pay,
            currency="INR",
            method=order.payment_method,
            details=order.payment_details,
            reference=ext.gateway_reference,
        )
    except BaseException:
        async with r.db.side_transaction() as conn:
            await domain.release_external(ext, conn=conn)
        raise
    if charge.status == "declined":
        async with r.db.side_transaction() as conn:
            await domain.release_external(ext, conn=conn)
        raise FailedPrecondition(
            f"the payment was declined: {charge.decline_reason or 'declined'}",
            reason="PAYMENT_DECLINED",
        )
    async with r.db.transaction() as conn:
        return await domain.record_external(ext, charge, reward_amount=r.reward_amount, conn=conn)


async def run_plan_expiry(db: Database) -> PlanCounts:
    """One plan-expiry tick (server/ops/scheduler.py): one replica at a time."""
    async with db.transaction() as conn:
        if not await try_job_lock(conn, LOCK_PLAN_EXPIRY):
            return PlanCounts(ran=False)
        return await domain.expire_and_activate_plans(conn=conn)
