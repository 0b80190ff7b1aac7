"""Settling one payment attempt from what the gateway says about it (no grpc; the
connection is the caller's: server/recovery/flows.py opens the transaction)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncConnection

from server.payments.attempts import domain as attempts
from server.payments.attempts.domain import Attempt
from server.payments.gateway import ChargeResult
from server.recharge import domain as recharge
from server.wallet import domain as wallet

#: What recovering one attempt did.
RECORDED = "recorded"  # authorised: credited / the plan bought
PENDING = "pending"  # the user has yet to pay: recorded pending (a callback settles it)
RELEASED = "released"  # nothing captured: the key and the attempt released
SKIPPED = "skipped"  # settled meanwhile, or a retry of the same request took it over


@dataclass(frozen=True)
class Recovered:
    outcome: str
    txn_id: int | None = None


async def settle(
    picked: Attempt,
    found: ChargeResult | None,
    *,
    reward_amount: Decimal,
    conn: AsyncConnection,
) -> Recovered:
    """Record (authorised or pending) or release (declined, or unknown to the gateway)
    the attempt ``picked`` as the gateway now knows it (``found``), exactly as the live
    call would have. The attempt is locked and checked again first: one recorded or
    released meanwhile, or charged again by a retry of the same request since it was
    picked (``charges`` moved on), is left alone."""
    current = await attempts.lock(picked.reference, conn=conn)
    if current is None or current.state != attempts.CHARGING or current.charges != picked.charges:
        return Recovered(SKIPPED)
    if found is not None and found.status in ("authorised", "pending"):
        if current.charge.kind == attempts.TOP_UP:
            topped = await wallet.record_top_up(
                wallet.TopUpIntent.of_attempt(current), found, conn=conn
            )
            txn_id = topped.transaction.txn_id
        else:
            bought = await recharge.record_external(
                recharge.PaidRecharge.of_attempt(current),
                found,
                reward_amount=reward_amount,
                conn=conn,
            )
            txn_id = bought.txn.txn_id
        return Recovered(RECORDED if found.status == "authorised" else PENDING, txn_id)
    await attempts.release(
        current.reference, payment_id=found.payment_id if found else None, conn=conn
    )
    return Recovered(RELEASED)
