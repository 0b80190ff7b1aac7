"""SQL of the ledger (``transactions``) and of referral rewards (``referralrewards``).

This module is the only writer of both tables. Nothing here updates
``users.wallet_balance``: the database trigger ``update_wallet_balance`` moves it when a
``wallet``/``success`` row is inserted, or a ``pending`` one is updated to ``success``.
A wallet-moving row is never inserted with ``ON CONFLICT``: duplicates are kept out by
idempotency keys and row locks.

The ``*_SQL`` constants are fragments for statements built elsewhere from the parts of
several owners (the one-statement recharge in server/recharge/queries.py); their bind
parameters are named in each docstring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, and_, bindparam, exists, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import Integer, Numeric

from server.core import pagination
from server.core.schema import referralrewards, transactions

RowT = Row[Any]

#: Sources of a recharge (a plan bought for a number).
RECHARGE_SOURCES = ("recharge", "autopay")
#: Payment methods that go through the payment gateway.
EXTERNAL_METHODS = ("UPI", "Card", "NetBanking")


def has_recharged(user_id: Any, *, exclude_txn: Any = None) -> Any:
    """Whether the user ``user_id`` (a column or bind parameter) bought a recharge that
    succeeded or still waits for its payment (a pending, externally paid recharge
    counts: its first-recharge price was given when it was charged), leaving out the
    transaction ``exclude_txn`` when given. As a Core expression."""
    t = transactions.c
    earlier = select(t.txn_id).where(
        t.user_id == user_id,
        t.source.in_(RECHARGE_SOURCES),
        t.status.in_(["success", "pending"]),
    )
    if exclude_txn is not None:
        earlier = earlier.where(t.txn_id != exclude_txn)
    return earlier.limit(1).exists()


def referral_reward_sql(*, after: str = "", excluding_txn: bool = False) -> str:
    """Record the referrer's reward for ``:user_id``'s first successful recharge (binds
    ``:user_id``, ``:reward_amount``; with ``excluding_txn`` also ``:txn_id``, the
    recharge that is not "earlier"). ``after``: a CTE name the insert depends on (it
    is joined, so nothing is inserted without it). Returns ``reward_id, referrer_id,
    reward_amount, status``; nothing when the user was not referred, the reward is
    zero or a reward exists (one per referred user)."""
    join = f"\n        CROSS JOIN {after}" if after else ""
    exclude = "AND earlier.txn_id <> :txn_id" if excluding_txn else ""
    return f"""
        INSERT INTO referralrewards (referrer_id, referred_id, reward_amount)
        SELECT referrer.user_id, buyer.user_id, :reward_amount
        FROM users buyer
        JOIN users referrer ON referrer.referral_code = buyer.referred_by{join}
        WHERE buyer.user_id = :user_id
          AND :reward_amount > 0
          AND NOT EXISTS (
              SELECT 1 FROM transactions earlier
              WHERE earlier.user_id = :user_id {exclude}
                AND earlier.source IN ('recharge', 'autopay')
                AND earlier.status = 'success')
        ON CONFLICT (referred_id) DO NOTHING
        RETURNING reward_id, referrer_id, reward_amount, status"""


_REWARD_ON_SETTLEMENT = text(referral_reward_sql(excluding_txn=True)).bindparams(
    bindparam("reward_amount", type_=Numeric(10, 2)),
    bindparam("user_id", type_=Integer),
    bindparam("txn_id", type_=Integer),
)


async def insert_transaction(conn: AsyncConnection, values: Mapping[str, Any]) -> RowT:
    """Insert one ledger row (a plain INSERT: never ON CONFLICT for ledger rows)."""
    result = await conn.execute(insert(transactions).values(**values).returning(*transactions.c))
    row: RowT = result.one()
    return row


async def get_transaction(
    conn: AsyncConnection, txn_id: int, *, user_id: int | None = None, for_update: bool = False
) -> RowT | None:
    query = select(*transactions.c).where(transactions.c.txn_id == txn_id)
    if user_id is not None:
        query = query.where(transactions.c.user_id == user_id)
    if for_update:
        query = query.with_for_update()
    row: RowT | None = (await conn.execute(query)).one_or_none()
    return row


async def get_transactions(conn: AsyncConnection, txn_ids: Sequence[int]) -> Sequence[RowT]:
    result = await conn.execute(
        select(*transactions.c)
        .where(transactions.c.txn_id.in_(list(txn_ids)))
        .order_by(transactions.c.txn_id)
    )
    rows: Sequence[RowT] = result.all()
    return rows


async def get_transaction_by_payment_id(
    conn: AsyncConnection, payment_transaction_id: str, *, for_update: bool = False
) -> RowT | None:
    query = select(*transactions.c).where(
        transactions.c.payment_transaction_id == payment_transaction_id
    )
    if for_update:
        query = query.with_for_update()
    row: RowT | None = (await conn.execute(query)).one_or_none()
    return row


async def transaction_status(conn: AsyncConnection, txn_id: int) -> str | None:
    result = await conn.execute(
        select(transactions.c.status).where(transactions.c.txn_id == txn_id)
    )
    status: str | None = result.scalar_one_or_none()
    return status


async def settle_transaction(
    conn: AsyncConnection, txn_id: int, *, status: str, payment_transaction_id: str | None
) -> RowT:
    """Move a pending row to ``success`` or ``failed`` (the trigger moves the wallet)."""
    values: dict[str, Any] = {"status": status}
    if payment_transaction_id is not None:
        values["payment_transaction_id"] = payment_transaction_id
    result = await conn.execute(
        update(transactions)
        .where(transactions.c.txn_id == txn_id, transactions.c.status == "pending")
        .values(**values)
        .returning(*transactions.c)
    )
    row: RowT = result.one()
    return row


_REFUNDED = text(
    """
    SELECT coalesce(sum(r.amount), 0)
           - coalesce((SELECT sum(v.amount) FROM transactions v
                        JOIN transactions rr ON v.refund_of_txn_id = rr.txn_id
                       WHERE rr.refund_of_txn_id = :txn_id AND rr.source = 'refund'
                         AND v.source = 'refund' AND v.status = 'success'), 0)
      FROM transactions r
     WHERE r.refund_of_txn_id = :txn_id AND r.source = 'refund'
       AND r.status IN ('success', 'pending')
    """
).bindparams(bindparam("txn_id", type_=Integer))


async def refunded_amount(conn: AsyncConnection, txn_id: int) -> Decimal:
    """The refunds of ``txn_id`` that succeeded or are pending, less their reversals."""
    value = (await conn.execute(_REFUNDED, {"txn_id": txn_id})).scalar_one()
    return Decimal(value)


async def reversal_of(conn: AsyncConnection, refund_txn_id: int) -> RowT | None:
    result = await conn.execute(
        select(*transactions.c)
        .where(
            transactions.c.refund_of_txn_id == refund_txn_id,
            transactions.c.source == "refund",
            transactions.c.status == "success",
        )
        .limit(1)
    )
    row: RowT | None = result.one_or_none()
    return row


async def outstanding_refunds(
    conn: AsyncConnection, *, created_before: datetime, exclude: Sequence[int], limit: int
) -> Sequence[RowT]:
    """Gateway refunds whose answer was never recorded, made before ``created_before``,
    oldest first: a service refund still ``pending``, or a top-up refund (a wallet
    debit, ``success`` at once) with no gateway id and no reversal. A reversal (a
    wallet credit linked to a refund) is never one. Reads the refund rows only (the
    partial index ``idx_transactions_refund_of``)."""
    t = transactions.c
    reversal = transactions.alias("reversal")
    reversed_ = exists().where(
        reversal.c.refund_of_txn_id == t.txn_id, reversal.c.source == "refund"
    )
    query = (
        select(*transactions.c)
        .where(
            t.refund_of_txn_id.is_not(None),
            t.source == "refund",
            t.payment_transaction_id.is_(None),
            t.payment_method.in_(EXTERNAL_METHODS),
            t.created_at < created_before,
            or_(
                t.status == "pending",
                and_(
                    t.status == "success",
                    t.category == "wallet",
                    t.txn_type == "debit",
                    ~reversed_,
                ),
            ),
        )
        .order_by(t.created_at, t.txn_id)
        .limit(limit)
    )
    if exclude:
        query = query.where(t.txn_id.not_in(list(exclude)))
    rows: Sequence[RowT] = (await conn.execute(query)).all()
    return rows


async def set_payment_transaction_id(
    conn: AsyncConnection, txn_id: int, payment_transaction_id: str
) -> RowT | None:
    """Set the gateway's id of a row that has none (None: it had one already)."""
    result = await conn.execute(
        update(transactions)
        .where(transactions.c.txn_id == txn_id, transactions.c.payment_transaction_id.is_(None))
        .values(payment_transaction_id=payment_transaction_id)
        .returning(*transactions.c)
    )
    row: RowT | None = result.one_or_none()
    return row


async def fail_stale_pending(conn: AsyncConnection, *, created_before: datetime) -> list[int]:
    """Mark external payments pending since before ``created_before`` failed; their ids."""
    result = await conn.execute(
        update(transactions)
        .where(
            transactions.c.status == "pending",
            transactions.c.payment_method.in_(EXTERNAL_METHODS),
            # A pending refund waits for the gateway's answer, not for a payer.
            transactions.c.source.is_distinct_from("refund"),
            transactions.c.created_at < created_before,
        )
        .values(status="failed")
        .returning(transactions.c.txn_id)
    )
    return sorted(int(txn_id) for txn_id in result.scalars())


async def list_transactions(
    conn: AsyncConnection,
    *,
    user_id: int,
    category: str | None = None,
    txn_type: str | None = None,
    sources: Sequence[str] | None = None,
    status: str | None = None,
    to_phone: str | None = None,
    created_after: datetime | None,
    created_before: datetime | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> Sequence[RowT]:
    """The user's rows, newest first, keyset-paginated on (created_at, txn_id)."""
    t = transactions.c
    query = select(*transactions.c).where(t.user_id == user_id)
    if category is not None:
        query = query.where(t.category == category)
    if txn_type is not None:
        query = query.where(t.txn_type == txn_type)
    if sources is not None:
        query = query.where(t.source.in_(list(sources)))
    if status is not None:
        query = query.where(t.status == status)
    if to_phone is not None:
        query = query.where(t.to_phone_number == to_phone)
    if created_after is not None:
        query = query.where(t.created_at >= created_after)
    if created_before is not None:
        query = query.where(t.created_at < created_before)
    result = await conn.execute(
        pagination.keyset_query(query, t.created_at, t.txn_id, after, limit, newest_first=True)
    )
    rows: Sequence[RowT] = result.all()
    return rows


# --- referral rewards ---------------------------------------------------------------------


async def referral_reward_on_first_recharge(
    conn: AsyncConnection, *, user_id: int, txn_id: int, reward_amount: Decimal
) -> RowT | None:
    """Record the referrer's reward if ``txn_id`` is the buyer's first successful
    recharge (see :func:`referral_reward_sql`)."""
    if reward_amount <= 0:
        return None
    result = await conn.execute(
        _REWARD_ON_SETTLEMENT,
        {"reward_amount": reward_amount, "user_id": user_id, "txn_id": txn_id},
    )
    row: RowT | None = result.one_or_none()
    return row


async def mark_reward_paid(conn: AsyncConnection, reward_id: int) -> None:
    await conn.execute(
        update(referralrewards)
        .where(referralrewards.c.reward_id == reward_id)
        .values(status="paid")
    )


async def list_referral_rewards(
    conn: AsyncConnection,
    *,
    referrer_id: int,
    status: str | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> Sequence[RowT]:
    r = referralrewards.c
    query = select(*referralrewards.c).where(r.referrer_id == referrer_id)
    if status is not None:
        query = query.where(r.status == status)
    result = await conn.execute(
        pagination.keyset_query(query, r.created_at, r.reward_id, after, limit, newest_first=True)
    )
    rows: Sequence[RowT] = result.all()
    return rows
