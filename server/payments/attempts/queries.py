"""SQL of ``payment_attempts`` (this module is its only writer)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, delete, func, literal_column, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core.schema import payment_attempts

RowT = Row[Any]
pa = payment_attempts.c


async def begin(
    conn: AsyncConnection,
    *,
    reference: str,
    kind: str,
    caller: str,
    request_id: str,
    rpc: str,
    request_hash: str,
    user_id: int,
    intent: Mapping[str, Any],
) -> bool:
    """Insert the attempt ``charging``; on an existing row under ``reference`` start it
    again (``charges`` + 1) when it was ``released``, or left ``charging`` for the same
    request (a retry after an unknown outcome). False: the row exists and was not
    renewed (``recorded``, or ``charging`` for a different request)."""
    values = {
        "reference": reference,
        "kind": kind,
        "caller": caller,
        "request_id": request_id,
        "rpc": rpc,
        "request_hash": request_hash,
        "user_id": user_id,
        "intent": dict(intent),
    }
    inserting = insert(payment_attempts).values(**values)
    excluded = inserting.excluded
    statement = inserting.on_conflict_do_update(
        index_elements=[pa.reference],
        set_={
            "kind": excluded.kind,
            "caller": excluded.caller,
            "request_id": excluded.request_id,
            "rpc": excluded.rpc,
            "request_hash": excluded.request_hash,
            "user_id": excluded.user_id,
            "intent": excluded.intent,
            "state": "charging",
            "payment_id": None,
            "txn_id": None,
            "charges": pa.charges + 1,
            "checks": 0,
            "next_check_at": None,
            "last_error": None,
            "updated_at": func.now(),
        },
        where=or_(
            pa.state == "released",
            and_(pa.state == "charging", pa.request_hash == excluded.request_hash),
        ),
    ).returning(pa.reference)
    return (await conn.execute(statement)).first() is not None


async def get(conn: AsyncConnection, reference: str, *, for_update: bool = False) -> RowT | None:
    query = select(payment_attempts).where(pa.reference == reference)
    if for_update:
        query = query.with_for_update()
    row: RowT | None = (await conn.execute(query)).one_or_none()
    return row


async def mark_recorded(
    conn: AsyncConnection, reference: str, *, payment_id: str, txn_id: int
) -> None:
    await conn.execute(
        update(payment_attempts)
        .where(pa.reference == reference)
        .values(
            state="recorded",
            payment_id=payment_id,
            txn_id=txn_id,
            next_check_at=None,
            last_error=None,
            updated_at=func.now(),
        )
    )


async def mark_released(conn: AsyncConnection, reference: str, *, payment_id: str | None) -> None:
    await conn.execute(
        update(payment_attempts)
        .where(pa.reference == reference)
        .values(
            state="released",
            payment_id=func.coalesce(payment_id, pa.payment_id),
            next_check_at=None,
            updated_at=func.now(),
        )
    )


async def take_due(
    conn: AsyncConnection, *, now: datetime, grace: timedelta, lease_until: datetime, limit: int
) -> Sequence[RowT]:
    """Attempts still ``charging`` whose check is due at ``now`` (``next_check_at``, or
    ``updated_at`` + ``grace`` before any check), oldest first, leased until
    ``lease_until`` (``checks`` + 1): another replica skips them meanwhile."""
    due = (
        select(pa.reference)
        .where(
            pa.state == "charging",
            func.coalesce(pa.next_check_at, pa.updated_at + grace) <= now,
        )
        .order_by(pa.updated_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    result: Any = await conn.execute(
        update(payment_attempts)
        .where(pa.reference.in_(due))
        .values(next_check_at=lease_until, checks=pa.checks + 1)
        .returning(literal_column("*"))
    )
    return sorted(result.all(), key=lambda row: row.updated_at)


async def back_off(
    conn: AsyncConnection, reference: str, *, until: datetime, error: str, checks: int
) -> None:
    """The next check of an attempt still ``charging`` after ``checks`` checks."""
    await conn.execute(
        update(payment_attempts)
        .where(pa.reference == reference, pa.state == "charging", pa.checks == checks)
        .values(next_check_at=until, last_error=error)
    )


async def purge_settled(conn: AsyncConnection, *, before: datetime) -> int:
    result = await conn.execute(
        delete(payment_attempts).where(
            pa.state.in_(["recorded", "released"]), pa.updated_at < before
        )
    )
    return int(result.rowcount)
