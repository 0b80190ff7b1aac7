"""SQL of wallet adjustments (``wallet_adjustments``: this module is its only writer).
The ledger rows they name are written through server/ledger."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core import pagination
from server.core.schema import wallet_adjustments

RowT = Row[Any]


async def insert_adjustment(
    conn: AsyncConnection,
    *,
    txn_id: int,
    user_id: int,
    requested_by: int,
    reason: str,
    status: str,
) -> RowT:
    result = await conn.execute(
        insert(wallet_adjustments)
        .values(
            txn_id=txn_id,
            user_id=user_id,
            requested_by=requested_by,
            reason=reason,
            status=status,
        )
        .returning(*wallet_adjustments.c)
    )
    row: RowT = result.one()
    return row


async def get_adjustment(
    conn: AsyncConnection, txn_id: int, *, for_update: bool = False
) -> RowT | None:
    query = select(*wallet_adjustments.c).where(wallet_adjustments.c.txn_id == txn_id)
    if for_update:
        query = query.with_for_update()
    row: RowT | None = (await conn.execute(query)).one_or_none()
    return row


async def decide(
    conn: AsyncConnection, txn_id: int, *, status: str, decided_by: int, note: str | None
) -> RowT:
    """A pending adjustment becomes ``approved`` or ``rejected``."""
    result = await conn.execute(
        update(wallet_adjustments)
        .where(wallet_adjustments.c.txn_id == txn_id, wallet_adjustments.c.status == "pending")
        .values(status=status, decided_by=decided_by, decided_at=func.now(), decision_note=note)
        .returning(*wallet_adjustments.c)
    )
    row: RowT = result.one()
    return row


async def list_adjustments(
    conn: AsyncConnection,
    *,
    status: str | None,
    user_id: int | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> Sequence[RowT]:
    """Newest first, keyset-paginated on (created_at, txn_id)."""
    a = wallet_adjustments.c
    query = select(*wallet_adjustments.c)
    if status is not None:
        query = query.where(a.status == status)
    if user_id is not None:
        query = query.where(a.user_id == user_id)
    result = await conn.execute(
        pagination.keyset_query(query, a.created_at, a.txn_id, after, limit, newest_first=True)
    )
    rows: Sequence[RowT] = result.all()
    return rows
