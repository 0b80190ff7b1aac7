"""SQL for notifications (DDS Notifications, NotificationTypes, NotificationRecipientTypes)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import Integer, String

from server.core import pagination
from server.core.schema import notificationrecipienttypes, notifications, notificationtypes, users

RowT = Row[Any]

_COLUMNS = (*notifications.c, notificationtypes.c.type_name)


def _with_type() -> Any:
    return select(*_COLUMNS).select_from(
        notifications.outerjoin(
            notificationtypes, notificationtypes.c.type_id == notifications.c.type_id
        )
    )


_NOTIFY = text(
    """
    INSERT INTO notifications (sender_type, description, recipient_type_id, recipient_id,
        status, type_id, attachments)
    SELECT 'system', :description, rt.recipient_type_id, :user_id, 'delivered', nt.type_id,
        CAST(:attachments AS jsonb)
    FROM notificationtypes nt, notificationrecipienttypes rt
    WHERE nt.type_name = :type_name AND rt.recipient_type_name = 'user'
    RETURNING notification_id
    """
).bindparams(
    # asyncpg needs the types of parameters used only inside expressions.
    bindparam("user_id", type_=Integer),
    bindparam("attachments", type_=String),
)


async def insert_system(
    conn: AsyncConnection,
    *,
    user_id: int,
    type_name: str,
    description: str,
    attachments: Sequence[Mapping[str, Any]] | None,
) -> int | None:
    """One system notification to one user; None if the type name is unknown."""
    result = await conn.execute(
        _NOTIFY,
        {
            "user_id": user_id,
            "type_name": type_name,
            "description": description,
            "attachments": json.dumps(list(attachments)) if attachments is not None else None,
        },
    )
    value = result.scalar_one_or_none()
    return None if value is None else int(value)


async def list_for_user(
    conn: AsyncConnection,
    *,
    user_id: int,
    status: str | None,
    type_id: int | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> Sequence[RowT]:
    query = _with_type().where(notifications.c.recipient_id == user_id)
    if status is not None:
        query = query.where(notifications.c.status == status)
    if type_id is not None:
        query = query.where(notifications.c.type_id == type_id)
    result = await conn.execute(
        pagination.keyset_query(
            query,
            notifications.c.timestamp,
            notifications.c.notification_id,
            after,
            limit,
            newest_first=True,
        )
    )
    rows: Sequence[RowT] = result.all()
    return rows


async def unread_count(conn: AsyncConnection, user_id: int) -> int:
    result = await conn.execute(
        select(func.count())
        .select_from(notifications)
        .where(notifications.c.recipient_id == user_id, notifications.c.status == "delivered")
    )
    return int(result.scalar_one())


async def mark_viewed(conn: AsyncConnection, *, notification_id: int, user_id: int) -> bool:
    """Delivered -> viewed for the recipient's own notification; True if it is theirs."""
    await conn.execute(
        update(notifications)
        .where(
            notifications.c.notification_id == notification_id,
            notifications.c.recipient_id == user_id,
            notifications.c.status == "delivered",
        )
        .values(status="viewed")
    )
    return await get_for_user(conn, notification_id=notification_id, user_id=user_id) is not None


async def get_for_user(conn: AsyncConnection, *, notification_id: int, user_id: int) -> RowT | None:
    result = await conn.execute(
        _with_type().where(
            notifications.c.notification_id == notification_id,
            notifications.c.recipient_id == user_id,
        )
    )
    row: RowT | None = result.one_or_none()
    return row


async def types(conn: AsyncConnection) -> Sequence[RowT]:
    result = await conn.execute(select(notificationtypes).order_by(notificationtypes.c.type_id))
    rows: Sequence[RowT] = result.all()
    return rows


async def recipient_types(conn: AsyncConnection) -> Sequence[RowT]:
    result = await conn.execute(
        select(notificationrecipienttypes).order_by(notificationrecipienttypes.c.recipient_type_id)
    )
    rows: Sequence[RowT] = result.all()
    return rows


async def type_exists(conn: AsyncConnection, type_id: int) -> bool:
    result = await conn.execute(
        select(notificationtypes.c.type_id).where(notificationtypes.c.type_id == type_id)
    )
    return result.first() is not None


async def recipient_type_name(conn: AsyncConnection, recipient_type_id: int) -> str | None:
    result = await conn.execute(
        select(notificationrecipienttypes.c.recipient_type_name).where(
            notificationrecipienttypes.c.recipient_type_id == recipient_type_id
        )
    )
    value: str | None = result.scalar_one_or_none()
    return value


async def existing_users(conn: AsyncConnection, user_ids: Sequence[int]) -> set[int]:
    result = await conn.execute(select(users.c.user_id).where(users.c.user_id.in_(user_ids)))
    return {int(v) for v in result.scalars()}


_BROADCAST = text(
    """
    INSERT INTO notifications (sender_type, sender_id, description, recipient_type_id,
        recipient_id, status, type_id, attachments)
    SELECT 'admin', :sender_id, :description, :recipient_type_id, u.user_id, 'delivered',
        :type_id, CAST(:attachments AS jsonb)
    FROM users u
    WHERE (CAST(:user_ids AS int[]) IS NULL AND u.status = 'active'
           AND (CAST(:user_type AS text) IS NULL OR u.user_type::text = :user_type))
       OR u.user_id = ANY(CAST(:user_ids AS int[]))
    """
).bindparams(
    bindparam("sender_id", type_=Integer),
    bindparam("recipient_type_id", type_=Integer),
    bindparam("type_id", type_=Integer),
    bindparam("attachments", type_=String),
    bindparam("user_type", type_=String),
)


async def insert_admin_notifications(
    conn: AsyncConnection,
    *,
    sender_id: int | None,
    description: str,
    recipient_type_id: int,
    type_id: int,
    attachments: Sequence[Mapping[str, Any]] | None,
    user_ids: Sequence[int] | None,
    user_type: str | None,
) -> int:
    """One notification per recipient: ``user_ids`` if given, else every active user
    (of ``user_type`` if set). Returns the number created."""
    result = await conn.execute(
        _BROADCAST,
        {
            "sender_id": sender_id,
            "description": description,
            "recipient_type_id": recipient_type_id,
            "type_id": type_id,
            "attachments": json.dumps(list(attachments)) if attachments is not None else None,
            "user_ids": list(user_ids) if user_ids is not None else None,
            "user_type": user_type,
        },
    )
    return int(result.rowcount)


async def delete_for_user(conn: AsyncConnection, user_id: int) -> int:
    """Delete every notification sent to the user (an erasure); the number deleted."""
    statement = notifications.delete().where(notifications.c.recipient_id == user_id)
    result = await conn.execute(statement)
    return int(result.rowcount or 0)
