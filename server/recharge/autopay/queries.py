"""SQL for autopay mandates (DDS AutoPay): the RPCs' reads and writes, and the
scheduler's claim of due mandates (``FOR UPDATE SKIP LOCKED``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Interval, Row, bindparam, delete, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core import pagination
from server.core.schema import autopay, plans, users

RowT = Row[Any]


async def lock_user(conn: AsyncConnection, user_id: int) -> None:
    """Serialise mandate changes of one user (the duplicate check reads, then writes)."""
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 11))"),
        {"key": f"autopay:{user_id}"},
    )


async def plan(conn: AsyncConnection, plan_id: int) -> RowT | None:
    result = await conn.execute(select(plans).where(plans.c.plan_id == plan_id))
    row: RowT | None = result.one_or_none()
    return row


async def user_phone(conn: AsyncConnection, user_id: int) -> str | None:
    result = await conn.execute(select(users.c.phone_number).where(users.c.user_id == user_id))
    value: str | None = result.scalar_one_or_none()
    return value


async def enabled_duplicate(
    conn: AsyncConnection,
    *,
    user_id: int,
    phone: str | None,
    plan_id: int,
    exclude_id: int | None = None,
) -> int | None:
    """Another enabled mandate of this user for the same number and plan."""
    query = select(autopay.c.autopay_id).where(
        autopay.c.user_id == user_id,
        autopay.c.plan_id == plan_id,
        autopay.c.status == "enabled",
        autopay.c.phone_number.is_not_distinct_from(phone),
    )
    if exclude_id is not None:
        query = query.where(autopay.c.autopay_id != exclude_id)
    value = (await conn.execute(query.limit(1))).scalar_one_or_none()
    return None if value is None else int(value)


async def insert(conn: AsyncConnection, values: Mapping[str, Any]) -> RowT:
    result = await conn.execute(autopay.insert().values(**values).returning(*autopay.c))
    row: RowT = result.one()
    return row


async def get_own(
    conn: AsyncConnection, *, autopay_id: int, user_id: int, for_update: bool = False
) -> RowT | None:
    query = select(autopay).where(autopay.c.autopay_id == autopay_id, autopay.c.user_id == user_id)
    if for_update:
        query = query.with_for_update()
    row: RowT | None = (await conn.execute(query)).one_or_none()
    return row


async def list_own(
    conn: AsyncConnection,
    *,
    user_id: int,
    status: str | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> Sequence[RowT]:
    """By next_due_date (earliest first), then id."""
    query = select(autopay).where(autopay.c.user_id == user_id)
    if status is not None:
        query = query.where(autopay.c.status == status)
    result = await conn.execute(
        pagination.keyset_query(
            query, autopay.c.next_due_date, autopay.c.autopay_id, after, limit, newest_first=False
        )
    )
    rows: Sequence[RowT] = result.all()
    return rows


async def update_row(conn: AsyncConnection, autopay_id: int, values: Mapping[str, Any]) -> RowT:
    result = await conn.execute(
        update(autopay)
        .where(autopay.c.autopay_id == autopay_id)
        .values(**values, updated_at=func.now())
        .returning(*autopay.c)
    )
    row: RowT = result.one()
    return row


async def delete_own(conn: AsyncConnection, *, autopay_id: int, user_id: int) -> bool:
    result = await conn.execute(
        delete(autopay)
        .where(autopay.c.autopay_id == autopay_id, autopay.c.user_id == user_id)
        .returning(autopay.c.autopay_id)
    )
    return result.first() is not None


# --- the scheduler ------------------------------------------------------------------------


def _due(retry_after_seconds: float) -> Any:
    return (
        select(
            autopay,
            plans.c.plan_name,
            plans.c.validity,
            plans.c.price,
        )
        .select_from(autopay.join(plans, plans.c.plan_id == autopay.c.plan_id))
        .where(
            autopay.c.status == "enabled",
            autopay.c.next_due_date <= func.now(),
            or_(
                autopay.c.last_error.is_(None),
                autopay.c.last_run_at.is_(None),
                autopay.c.last_run_at
                <= func.now()
                - bindparam("retry_after", timedelta(seconds=retry_after_seconds), Interval()),
            ),
        )
    )


async def due(conn: AsyncConnection, *, limit: int, retry_after_seconds: float) -> list[int]:
    """Ids of due enabled mandates, earliest first (not locked: each is then run in a
    transaction of its own that locks it, see :func:`lock_due`). A mandate whose last
    attempt failed waits ``retry_after_seconds``."""
    query = (
        _due(retry_after_seconds)
        .with_only_columns(autopay.c.autopay_id)
        .order_by(autopay.c.next_due_date, autopay.c.autopay_id)
        .limit(limit)
    )
    return [int(i) for i in (await conn.execute(query)).scalars()]


async def lock_due(
    conn: AsyncConnection, autopay_id: int, *, retry_after_seconds: float
) -> RowT | None:
    """The mandate, locked for this transaction, if it is still due and no other
    transaction (another replica's tick) holds it; None otherwise."""
    result = await conn.execute(
        _due(retry_after_seconds)
        .where(autopay.c.autopay_id == autopay_id)
        .with_for_update(of=autopay, skip_locked=True)
    )
    row: RowT | None = result.one_or_none()
    return row


async def record_run(
    conn: AsyncConnection,
    autopay_id: int,
    *,
    next_due_date: datetime | None = None,
    disable: bool = False,
    error: str | None = None,
) -> None:
    values: dict[str, Any] = {"last_run_at": func.now(), "last_error": error}
    if next_due_date is not None:
        values["next_due_date"] = next_due_date
    if disable:
        values["status"] = "disabled"
    await conn.execute(update(autopay).where(autopay.c.autopay_id == autopay_id).values(**values))
