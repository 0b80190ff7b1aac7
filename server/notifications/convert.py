"""NotificationService messages <-> notification values (pure functions)."""

from __future__ import annotations

from google.protobuf import json_format

from gencharge.v1 import notification_service_pb2 as pb
from server.core import protoconv
from server.notifications.domain import (
    Broadcast,
    Notification,
    NotificationPage,
    NotificationTypes,
)

STATUSES: dict[pb.NotificationStatus.ValueType, str] = {
    pb.NOTIFICATION_STATUS_DELIVERED: "delivered",
    pb.NOTIFICATION_STATUS_VIEWED: "viewed",
}
STATUSES_BY_NAME = {v: k for k, v in STATUSES.items()}
SENDER_TYPES: dict[str, pb.NotificationSenderType.ValueType] = {
    "system": pb.NOTIFICATION_SENDER_TYPE_SYSTEM,
    "admin": pb.NOTIFICATION_SENDER_TYPE_ADMIN,
}


# ---------------------------------------------------------------- requests -> values


def status_filter(request: pb.ListNotificationsRequest) -> str | None:
    """The status filter of a list request: None for UNSPECIFIED; unknown values are
    INVALID_ARGUMENT on ``status``."""
    return protoconv.enum_filter("status", request.status, STATUSES)


def broadcast_of(request: pb.SendNotificationRequest) -> Broadcast:
    return Broadcast(
        request_id=request.request_id,
        recipient_type_id=request.recipient_type_id,
        recipient_ids=list(request.recipient_ids),
        description=request.description,
        type_id=request.type_id,
        attachments=[json_format.MessageToDict(a) for a in request.attachments],
    )


# ---------------------------------------------------------------- values -> messages


def notification_message(notification: Notification) -> pb.Notification:
    n = notification
    return pb.Notification(
        notification_id=n.notification_id,
        sender_type=SENDER_TYPES.get(n.sender_type, pb.NOTIFICATION_SENDER_TYPE_UNSPECIFIED),
        sender_id=n.sender_id or 0,
        description=n.description or "",
        recipient_type_id=n.recipient_type_id or 0,
        recipient_id=n.recipient_id or 0,
        status=STATUSES_BY_NAME.get(n.status, pb.NOTIFICATION_STATUS_UNSPECIFIED),
        type_id=n.type_id or 0,
        type_name=n.type_name or "",
        attachments=[s for s in map(protoconv.struct, n.attachments) if s is not None],
        sent_at=protoconv.timestamp(n.sent_at),
    )


def list_response(page: NotificationPage) -> pb.ListNotificationsResponse:
    return pb.ListNotificationsResponse(
        notifications=[notification_message(n) for n in page.notifications],
        next_page_token=page.next_page_token,
        unread_count=page.unread_count,
    )


def types_response(types: NotificationTypes) -> pb.ListNotificationTypesResponse:
    return pb.ListNotificationTypesResponse(
        notification_types=[
            pb.NotificationType(type_id=t.type_id, type_name=t.type_name)
            for t in types.notification_types
        ],
        recipient_types=[
            pb.NotificationRecipientType(
                recipient_type_id=t.recipient_type_id,
                recipient_type_name=t.recipient_type_name,
            )
            for t in types.recipient_types
        ],
    )
