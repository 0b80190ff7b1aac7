"""Notification rules: users read and mark their own; admins send; the system notifies.

Users see only notifications addressed to them (``recipient_id``); a notification of
another user is NOT_FOUND, never PERMISSION_DENIED, so ids cannot be probed. Admin
sends are idempotent on ``request_id`` (the key is claimed and completed in the same
transaction as the rows, so a retried broadcast is sent once).

Every function works on the connection it is given (keyword ``conn``); the servicer
opens the transaction (server/core/db.py ``Database``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from server.audit.scope import audit_change, current_rpc
from server.auth.principal import Principal, customer_id
from server.core import idempotency, pagination
from server.core.errors import FieldViolation, InvalidArgument, NotFound
from server.notifications import queries

MAX_DESCRIPTION = 2000
MAX_RECIPIENT_IDS = 1000
#: Recipient type name -> which users a broadcast (no recipient_ids) reaches.
BROADCAST_USER_TYPES: Mapping[str, str | None] = {
    "all_users": None,
    "prepaid_users": "prepaid",
    "postpaid_users": "postpaid",
}
#: What only customers have (the PERMISSION_DENIED USER_ONLY message names it).
WHAT = "notifications"


class UnknownNotificationType(LookupError):
    """``notify`` was given a type name that NotificationTypes does not hold."""


# ---------------------------------------------------------------- values


@dataclass(frozen=True)
class Notification:
    """One notification, with the name of its type."""

    notification_id: int
    sender_type: str  # "system" | "admin"
    sender_id: int | None
    description: str | None
    recipient_type_id: int | None
    recipient_id: int | None
    status: str  # "delivered" | "viewed"
    type_id: int | None
    type_name: str | None
    #: The JSON objects attached (a stored single object counts as one; anything
    #: else stored there is not an attachment).
    attachments: tuple[Mapping[str, Any], ...]
    sent_at: datetime

    @classmethod
    def from_row(cls, row: Row[Any]) -> Notification:
        return cls(
            notification_id=row.notification_id,
            sender_type=row.sender_type,
            sender_id=row.sender_id,
            description=row.description,
            recipient_type_id=row.recipient_type_id,
            recipient_id=row.recipient_id,
            status=row.status,
            type_id=row.type_id,
            type_name=row.type_name,
            attachments=_attachments(row.attachments),
            sent_at=row.timestamp,
        )


def _attachments(value: Any) -> tuple[Mapping[str, Any], ...]:
    items = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
    return tuple(MappingProxyType(item) for item in items if isinstance(item, dict))


@dataclass(frozen=True)
class NotificationPage:
    """A page of the caller's notifications (newest first)."""

    notifications: tuple[Notification, ...]
    next_page_token: str
    #: How many of the caller's notifications are still unread (all pages).
    unread_count: int


@dataclass(frozen=True)
class NotificationType:
    type_id: int
    type_name: str


@dataclass(frozen=True)
class RecipientType:
    recipient_type_id: int
    recipient_type_name: str


@dataclass(frozen=True)
class NotificationTypes:
    """The reference data: notification types and recipient types, in id order."""

    notification_types: tuple[NotificationType, ...]
    recipient_types: tuple[RecipientType, ...]


@dataclass(frozen=True)
class Broadcast:
    request_id: str
    recipient_type_id: int
    recipient_ids: Sequence[int]
    description: str
    type_id: int
    attachments: Sequence[Mapping[str, Any]]


# ---------------------------------------------------------------- the system


async def notify(
    conn: AsyncConnection,
    *,
    user_id: int,
    type_name: str,
    description: str,
    attachments: Sequence[Mapping[str, Any]] | None = None,
) -> int:
    """A system notification (status delivered) to one user, in the caller's
    transaction. Returns its id; raises UnknownNotificationType for a bad type name.

    ``conn`` may be passed by position (background jobs and other domains do) or by
    keyword."""
    notification_id = await queries.insert_system(
        conn,
        user_id=user_id,
        type_name=type_name,
        description=description,
        attachments=attachments,
    )
    if notification_id is None:
        raise UnknownNotificationType(type_name)
    return notification_id


# ---------------------------------------------------------------- users


async def list_own(
    who: Principal,
    *,
    status: str | None,
    type_id: int,
    page_size: int,
    page_token: str,
    conn: AsyncConnection,
) -> NotificationPage:
    """The caller's notifications, newest first, the next page token and the number
    still unread."""
    user_id = customer_id(who, WHAT)
    if type_id < 0:
        raise InvalidArgument.field("type_id", "must not be negative")
    page = pagination.parse(page_size, page_token, {"notifications": [user_id, status, type_id]})
    rows = await queries.list_for_user(
        conn,
        user_id=user_id,
        status=status,
        type_id=type_id or None,
        after=pagination.time_keyset(page.after),
        limit=page.fetch,
    )
    unread = await queries.unread_count(conn, user_id)
    items, token = pagination.time_page(rows, page, "timestamp", "notification_id")
    return NotificationPage(
        notifications=tuple(Notification.from_row(r) for r in items),
        next_page_token=token,
        unread_count=unread,
    )


async def mark_viewed(
    who: Principal, notification_id: int, *, conn: AsyncConnection
) -> Notification:
    """Delivered -> viewed for the caller's own notification (idempotent); NOT_FOUND
    for anyone else's."""
    user_id = customer_id(who, WHAT)
    if notification_id <= 0:
        raise InvalidArgument.field("notification_id", "must be a positive id")
    if not await queries.mark_viewed(conn, notification_id=notification_id, user_id=user_id):
        raise NotFound(f"notification {notification_id} not found")
    audit_change(
        "Notifications",
        "UPDATE",
        {"notification_id": notification_id, "status": "viewed"},
    )
    row = await queries.get_for_user(conn, notification_id=notification_id, user_id=user_id)
    assert row is not None
    return Notification.from_row(row)


async def types(*, conn: AsyncConnection) -> NotificationTypes:
    return NotificationTypes(
        notification_types=tuple(
            NotificationType(type_id=r.type_id, type_name=r.type_name)
            for r in await queries.types(conn)
        ),
        recipient_types=tuple(
            RecipientType(
                recipient_type_id=r.recipient_type_id, recipient_type_name=r.recipient_type_name
            )
            for r in await queries.recipient_types(conn)
        ),
    )


# ---------------------------------------------------------------- admins


def _check(order: Broadcast) -> None:
    """Every bad field of the order at once (INVALID_ARGUMENT), before any read."""
    violations: list[FieldViolation] = []
    try:
        idempotency.validate_request_id(order.request_id)
    except InvalidArgument as exc:
        violations.extend(exc.violations)
    if not order.description.strip():
        violations.append(FieldViolation("description", "is required"))
    elif len(order.description) > MAX_DESCRIPTION:
        violations.append(
            FieldViolation("description", f"must be at most {MAX_DESCRIPTION} characters")
        )
    if order.type_id <= 0:
        violations.append(FieldViolation("type_id", "is required"))
    if order.recipient_type_id <= 0:
        violations.append(FieldViolation("recipient_type_id", "is required"))
    if len(order.recipient_ids) > MAX_RECIPIENT_IDS:
        violations.append(FieldViolation("recipient_ids", f"at most {MAX_RECIPIENT_IDS} per call"))
    if any(r <= 0 for r in order.recipient_ids):
        violations.append(FieldViolation("recipient_ids", "must be positive user ids"))
    if violations:
        raise InvalidArgument.of(violations)


async def send(who: Principal, order: Broadcast, fingerprint: str, *, conn: AsyncConnection) -> int:
    """An admin notification to listed users, or to every active user of the
    recipient type; returns how many were created (the original count on replay).

    Idempotent on ``order.request_id`` for the running RPC (``current_rpc()``):
    the key is claimed and completed on ``conn``, with the rows."""
    _check(order)
    sender_id = who.numeric_id if who.kind == "admin" else None
    replay = await idempotency.claim(
        conn,
        caller=who.subject,
        request_id=order.request_id,
        rpc=current_rpc(),
        fingerprint=fingerprint,
    )
    if replay is not None:
        return int(replay.result.get("recipient_count", 0))
    if not await queries.type_exists(conn, order.type_id):
        raise NotFound(f"notification type {order.type_id} not found")
    type_name = await queries.recipient_type_name(conn, order.recipient_type_id)
    if type_name is None:
        raise NotFound(f"recipient type {order.recipient_type_id} not found")
    ids = sorted(set(order.recipient_ids))
    user_type: str | None = None
    if ids:
        missing = set(ids) - await queries.existing_users(conn, ids)
        if missing:
            raise NotFound(
                f"user {min(missing)} not found",
                metadata={"user_ids": ",".join(str(m) for m in sorted(missing)[:20])},
            )
    elif type_name in BROADCAST_USER_TYPES:
        user_type = BROADCAST_USER_TYPES[type_name]
    else:
        raise InvalidArgument.field(
            "recipient_ids", f"are required for recipient type {type_name!r}"
        )
    count = await queries.insert_admin_notifications(
        conn,
        sender_id=sender_id,
        description=order.description,
        recipient_type_id=order.recipient_type_id,
        type_id=order.type_id,
        attachments=list(order.attachments) or None,
        user_ids=ids or None,
        user_type=user_type,
    )
    await idempotency.complete(
        conn,
        caller=who.subject,
        request_id=order.request_id,
        result={"recipient_count": count},
    )
    audit_change(
        "Notifications",
        "INSERT",
        {
            "recipient_type": type_name,
            "type_id": order.type_id,
            "recipient_count": count,
        },
    )
    return count


async def erase_for_user(user_id: int, *, conn: AsyncConnection) -> int:
    """Delete the notifications sent to a user whose personal data is erased (their
    texts may name the person); the number deleted."""
    return await queries.delete_for_user(conn, user_id)
