"""Notification rules: users read and mark their own; admins send; the system notifies.

Users see only notifications addressed to them (``recipient_id``); a notification of
another user is NOT_FOUND, never PERMISSION_DENIED, so ids cannot be probed. Admin
sends are idempotent on ``request_id`` (the key is claimed and completed in the same
transaction as the rows, so a retried broadcast is sent once).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.audit.scope import audit_change
from server.auth.principal import Principal
from server.core import db, idempotency, pagination
from server.core.errors import FieldViolation, InvalidArgument, NotFound, PermissionDenied
from server.notifications import queries

RowT = Row[Any]
SEND_RPC = "/gencharge.v1.NotificationService/SendNotification"
MAX_DESCRIPTION = 2000
MAX_RECIPIENT_IDS = 1000
#: Recipient type name -> which users a broadcast (no recipient_ids) reaches.
BROADCAST_USER_TYPES: Mapping[str, str | None] = {
    "all_users": None,
    "prepaid_users": "prepaid",
    "postpaid_users": "postpaid",
}


class UnknownNotificationType(LookupError):
    """``notify`` was given a type name that NotificationTypes does not hold."""


async def notify(
    conn: AsyncConnection,
    *,
    user_id: int,
    type_name: str,
    description: str,
    attachments: Sequence[Mapping[str, Any]] | None = None,
) -> int:
    """A system notification (status delivered) to one user, in the caller's
    transaction. Returns its id; raises UnknownNotificationType for a bad type name."""
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


@dataclass(frozen=True)
class Broadcast:
    request_id: str
    recipient_type_id: int
    recipient_ids: Sequence[int]
    description: str
    type_id: int
    attachments: Sequence[Mapping[str, Any]]


def _user(who: Principal) -> int:
    if who.kind != "user":
        raise PermissionDenied("only customers have notifications", reason="USER_ONLY")
    return who.numeric_id


class Notifications:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def list_own(
        self,
        who: Principal,
        *,
        status: str | None,
        type_id: int,
        page_size: int,
        page_token: str,
    ) -> tuple[list[RowT], str, int]:
        """The caller's notifications, newest first, the next page token and the number
        still unread."""
        user_id = _user(who)
        if type_id < 0:
            raise InvalidArgument.field("type_id", "must not be negative")
        page = pagination.parse(
            page_size, page_token, {"notifications": [user_id, status, type_id]}
        )
        async with db.read_only(self._engine) as conn:
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
        return items, token, unread

    async def mark_viewed(self, who: Principal, notification_id: int) -> RowT:
        user_id = _user(who)
        if notification_id <= 0:
            raise InvalidArgument.field("notification_id", "must be a positive id")
        async with db.transaction(self._engine) as conn:
            if not await queries.mark_viewed(
                conn, notification_id=notification_id, user_id=user_id
            ):
                raise NotFound(f"notification {notification_id} not found")
            audit_change(
                "Notifications",
                "UPDATE",
                {"notification_id": notification_id, "status": "viewed"},
            )
            row = await queries.get_for_user(conn, notification_id=notification_id, user_id=user_id)
        assert row is not None
        return row

    async def types(self) -> tuple[list[RowT], list[RowT]]:
        async with db.read_only(self._engine) as conn:
            return list(await queries.types(conn)), list(await queries.recipient_types(conn))

    async def send(self, who: Principal, order: Broadcast, fingerprint: str) -> int:
        """An admin notification to listed users, or to every active user of the
        recipient type; returns how many were created (the original count on replay)."""
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
            violations.append(
                FieldViolation("recipient_ids", f"at most {MAX_RECIPIENT_IDS} per call")
            )
        if any(r <= 0 for r in order.recipient_ids):
            violations.append(FieldViolation("recipient_ids", "must be positive user ids"))
        if violations:
            raise InvalidArgument.of(violations)
        sender_id = who.numeric_id if who.kind == "admin" else None
        async with db.transaction(self._engine) as conn:
            replay = await idempotency.claim(
                conn,
                caller=who.subject,
                request_id=order.request_id,
                rpc=SEND_RPC,
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
