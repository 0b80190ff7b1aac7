"""SQL for postpaid bill reminders (DDS BillReminders): the RPCs' reads and writes, and
the scheduler's reminder creation and payment reconciliation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, Row, bindparam, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import Integer

from server.core import pagination
from server.core.schema import billreminders

RowT = Row[Any]


async def get_own(
    conn: AsyncConnection, *, reminder_id: int, user_id: int, for_update: bool = False
) -> RowT | None:
    query = select(billreminders).where(
        billreminders.c.reminder_id == reminder_id, billreminders.c.user_id == user_id
    )
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
    """By due date (earliest first), then id."""
    query = select(billreminders).where(billreminders.c.user_id == user_id)
    if status is not None:
        query = query.where(billreminders.c.status == status)
    result = await conn.execute(
        pagination.keyset_query(
            query,
            billreminders.c.due_date,
            billreminders.c.reminder_id,
            after,
            limit,
            newest_first=False,
        )
    )
    rows: Sequence[RowT] = result.all()
    return rows


async def settle(conn: AsyncConnection, reminder_id: int, *, txn_id: int, paid: bool) -> RowT:
    """Link the paying transaction; ``paid`` once it succeeded."""
    values: dict[str, Any] = {"paid_txn_id": txn_id}
    if paid:
        values["status"] = "paid"
    result = await conn.execute(
        update(billreminders)
        .where(billreminders.c.reminder_id == reminder_id)
        .values(**values)
        .returning(*billreminders.c)
    )
    row: RowT = result.one()
    return row


# --- the scheduler ------------------------------------------------------------------------

CREATE_DUE = text(
    """
    INSERT INTO billreminders (user_id, plan_id, due_date, status, amount, phone_number)
    SELECT cap.user_id, cap.plan_id, cap.valid_to, 'pending', p.price, cap.phone_number
    FROM currentactiveplans cap
    JOIN plans p ON p.plan_id = cap.plan_id
    JOIN users u ON u.user_id = cap.user_id
    WHERE cap.status = 'active'
      AND p.plan_type = 'postpaid'
      AND u.user_type = 'postpaid'
      AND u.status = 'active'
      AND cap.valid_to > now()
      AND cap.valid_to <= now() + make_interval(days => :days)
      AND NOT EXISTS (
          SELECT 1 FROM billreminders b
          WHERE b.user_id = cap.user_id
            AND b.due_date = cap.valid_to
            AND b.phone_number IS NOT DISTINCT FROM cap.phone_number)
    ORDER BY cap.valid_to, cap.id
    LIMIT :limit
    ON CONFLICT (user_id, due_date, phone_number) DO NOTHING
    RETURNING reminder_id, user_id, plan_id, due_date, amount, phone_number
    """
).bindparams(bindparam("days", type_=Integer), bindparam("limit", type_=Integer))


async def create_due(conn: AsyncConnection, *, days_before: int, limit: int) -> Sequence[RowT]:
    """Reminders for active postpaid plans of postpaid users whose bill (valid_to) is
    due within ``days_before`` days and has no reminder yet. The caller holds the job's
    advisory lock, so two replicas never create the same reminder."""
    result = await conn.execute(CREATE_DUE, {"days": days_before, "limit": limit})
    rows: Sequence[RowT] = result.all()
    return rows


async def mark_sent(conn: AsyncConnection, reminder_ids: Sequence[int]) -> None:
    if reminder_ids:
        await conn.execute(
            text(
                "UPDATE billreminders SET status = 'sent', sent_at = now()"
                " WHERE reminder_id = ANY(:ids) AND status = 'pending'"
            ).bindparams(bindparam("ids", type_=ARRAY(Integer))),
            {"ids": list(reminder_ids)},
        )


async def unlink_payment(conn: AsyncConnection, reminder_id: int) -> None:
    """The bill's payment failed: the reminder is payable again."""
    await conn.execute(
        update(billreminders)
        .where(billreminders.c.reminder_id == reminder_id)
        .values(paid_txn_id=None)
    )


RECONCILE = text(
    """
    WITH settled AS (
        SELECT b.reminder_id, b.user_id, t.status AS txn_status
        FROM billreminders b
        JOIN transactions t ON t.txn_id = b.paid_txn_id
        WHERE b.status <> 'paid' AND t.status IN ('success', 'failed')
        ORDER BY b.reminder_id
        LIMIT :limit
        FOR UPDATE OF b SKIP LOCKED
    )
    UPDATE billreminders b
       SET status = CASE WHEN settled.txn_status = 'success'
                         THEN 'paid'::reminder_status_enum ELSE b.status END,
           paid_txn_id = CASE WHEN settled.txn_status = 'success'
                              THEN b.paid_txn_id ELSE NULL END
      FROM settled
     WHERE b.reminder_id = settled.reminder_id
    RETURNING b.reminder_id, b.user_id, b.status
    """
).bindparams(bindparam("limit", type_=Integer))


async def reconcile_external(conn: AsyncConnection, *, limit: int) -> Sequence[RowT]:
    """Reminders paid by an external payment that has since settled: paid when it
    succeeded, unlinked (payable again) when it failed: ``reminder_id, user_id, status``."""
    rows: Sequence[RowT] = (await conn.execute(RECONCILE, {"limit": limit})).all()
    return rows
