"""Recharge work that opens transactions: the one-transaction wallet recharge, and the
externally paid recharge that spans several transactions around the payment gateway
(no transaction is open while the gateway is called). The plan-expiry job of the
scheduler is here too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from server.auth.principal import Principal
from server.core.db import Database
from server.core.jobs import LOCK_PLAN_EXPIRY, try_job_lock
from server.core.money import CURRENCY
from server.ledger import domain as ledger
from server.payments.attempts.domain import Attempt
from server.payments.attempts.flows import ChargeOrder, charge_and_record
from server.payments.gateway import ChargeResult, PaymentGateway
from server.plans.catalogue import Catalogue
from server.recharge import domain, queries, wallet
from server.recharge.domain import Order, PlanCounts, RechargeResult
from server.recharge.group import GroupCommitter


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
    #: Writes wallet recharges in groups (None: each in a call of its own).
    committer: GroupCommitter | None = None


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
        item = wallet.prepare(who, order, fingerprint, source=source, scope=scope)
        return await wallet_recharge(r, item)
    return await _external(r, who, order, fingerprint, source=source, scope=scope)


#: Runs the wallet function for a priced item (its parameters by name) and returns its
#: row: one call in autocommit by default; BatchRecharge commits items in groups.
WalletCall = Callable[[dict[str, Any]], Awaitable[Mapping[str, Any]]]


async def wallet_recharge(
    r: Recharger, item: wallet.WalletItem, call: WalletCall | None = None
) -> RechargeResult:
    """A checked wallet order: priced, then one function call in autocommit (one round
    trip); again after a wrong assumption about the payer, and from the key for a
    replay (server/recharge/wallet.py)."""

    async def alone(args: dict[str, Any]) -> Mapping[str, Any]:
        async with r.db.driver() as driver:
            return await queries.wallet_recharge(driver, args)

    async def checked(args: dict[str, Any]) -> Mapping[str, Any]:
        try:
            if call is not None:
                return await call(args)
            if r.committer is not None:
                return await r.committer.submit(args)
            return await alone(args)
        except DBAPIError as exc:
            # The wallet trigger's own refusal (the function checks the balance first).
            to_pay = item.pricing.to_pay if item.pricing else None
            refused = ledger.insufficient_funds(exc, to_pay)
            if refused is not None:
                raise refused from None
            raise

    return await _wallet_loop(r, item, checked, lambda: replay(r, item))


async def wallet_recharge_in(
    r: Recharger, item: wallet.WalletItem, conn: AsyncConnection
) -> RechargeResult:
    """Like :func:`wallet_recharge`, inside the caller's transaction on ``conn`` (the
    autopay job records the mandate's run with it)."""
    driver = await queries.driver_of(conn)

    async def call(args: dict[str, Any]) -> Mapping[str, Any]:
        return await queries.wallet_recharge(driver, args)

    async def replay_in() -> RechargeResult:
        result = await domain.replayed(
            caller=item.caller,
            request_id=item.order.request_id,
            rpc=item.rpc,
            fingerprint=item.fingerprint,
            conn=conn,
        )
        if result is None:  # purged between two statements of this transaction
            # (the job retries on its next tick, with the same request_id)
            raise RuntimeError("the idempotency key expired meanwhile")
        return result

    return await _wallet_loop(r, item, call, replay_in)


async def _wallet_loop(
    r: Recharger,
    item: wallet.WalletItem,
    call: WalletCall,
    replay: Callable[[], Awaitable[RechargeResult | None]],
) -> RechargeResult:
    while True:
        await wallet.price(r.catalogue, item)
        said = wallet.outcome(item, await call(wallet.call_args(item, r.reward_amount)))
        if said is wallet.REPLAY:
            result = await replay()
            if result is not None:
                return result
        elif isinstance(said, RechargeResult):
            return said


async def replay(r: Recharger, item: wallet.WalletItem) -> RechargeResult | None:
    """The earlier call's response for this item's key; None when the key is gone (the
    claim this makes then is rolled back with the read-only connection)."""
    async with r.db.read_only() as conn:
        return await domain.replayed(
            caller=item.caller,
            request_id=item.order.request_id,
            rpc=item.rpc,
            fingerprint=item.fingerprint,
            conn=conn,
        )


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
