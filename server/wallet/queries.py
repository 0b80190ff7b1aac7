"""SQL for the wallet and the ledger (SQLAlchemy Core).

Nothing here updates ``users.wallet_balance``: the database trigger
``update_wallet_balance`` moves it when a ``wallet``/``success`` ledger row is inserted,
or when a ``pending`` one is updated to ``success`` (docs/data-model.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core import pagination
from server.core.schema import referralrewards, transactions, users


async def get_wallet(conn: AsyncConnection, user_id: int) -> Row[Any] | None:
    columns: tuple[Any, ...] = (
        users.c.user_id,
        users.c.wallet_balance,
        users.c.updated_at,
        users.c.status,
    )
    result = await conn.execute(select(*columns).where(users.c.user_id == user_id))
    row: Row[Any] | None = result.one_or_none()
    return row


async def insert_transaction(conn: AsyncConnection, values: dict[str, Any]) -> Row[Any]:
    """Insert one ledger row (a plain INSERT: never ON CONFLICT for ledger rows)."""
    result = await conn.execute(insert(transactions).values(**values).returning(*transactions.c))
    row: Row[Any] = result.one()
    return row


async def get_transaction(
    conn: AsyncConnection, txn_id: int, *, user_id: int | None = None, for_update: bool = False
) -> Row[Any] | None:
    query = select(*transactions.c).where(transactions.c.txn_id == txn_id)
    if user_id is not None:
        query = query.where(transactions.c.user_id == user_id)
    if for_update:
        query = query.with_for_update()
    row: Row[Any] | None = (await conn.execute(query)).one_or_none()
    return row


async def get_transaction_by_payment_id(
    conn: AsyncConnection, payment_transaction_id: str, *, for_update: bool = False
) -> Row[Any] | None:
    query = select(*transactions.c).where(
        transactions.c.payment_transaction_id == payment_transaction_id
    )
    if for_update:
        query = query.with_for_update()
    row: Row[Any] | None = (await conn.execute(query)).one_or_none()
    return row


async def settle_transaction(
    conn: AsyncConnection, txn_id: int, *, status: str, payment_transaction_id: str | None
) -> Row[Any]:
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
    row: Row[Any] = result.one()
    return row


async def fail_stale_pending(conn: AsyncConnection, *, created_before: datetime) -> list[int]:
    """Mark external payments pending since before ``created_before`` failed; their ids."""
    result = await conn.execute(
        update(transactions)
        .where(
            transactions.c.status == "pending",
            transactions.c.payment_method.in_(("UPI", "Card", "NetBanking")),
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
    category: str | None,
    txn_type: str | None,
    source: str | None,
    status: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """The user's rows, newest first, keyset-paginated on (created_at, txn_id)."""
    t = transactions.c
    query = select(*transactions.c).where(t.user_id == user_id)
    if category is not None:
        query = query.where(t.category == category)
    if txn_type is not None:
        query = query.where(t.txn_type == txn_type)
    if source is not None:
        query = query.where(t.source == source)
    if status is not None:
        query = query.where(t.status == status)
    if created_after is not None:
        query = query.where(t.created_at >= created_after)
    if created_before is not None:
        query = query.where(t.created_at < created_before)
    result = await conn.execute(
        pagination.keyset_query(query, t.created_at, t.txn_id, after, limit, newest_first=True)
    )
    rows: Sequence[Row[Any]] = result.all()
    return rows


async def list_referral_rewards(
    conn: AsyncConnection,
    *,
    referrer_id: int,
    status: str | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> Sequence[Row[Any]]:
    r = referralrewards.c
    query = select(*referralrewards.c).where(r.referrer_id == referrer_id)
    if status is not None:
        query = query.where(r.status == status)
    result = await conn.execute(
        pagination.keyset_query(query, r.created_at, r.reward_id, after, limit, newest_first=True)
    )
    rows: Sequence[Row[Any]] = result.all()
    return rows
