"""NotificationService: proto <-> notifications domain."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import json_format
from sqlalchemy import Row

from gencharge.v1 import notification_service_pb2 as pb
from gencharge.v1 import notification_service_pb2_grpc
from server.auth.principal import principal
from server.core import protoconv
from server.core.idempotency import request_hash
from server.core.resources import Resources
from server.notifications.domain import Broadcast, Notifications

Context = grpc.aio.ServicerContext[Any, Any]

STATUSES = {
    pb.NOTIFICATION_STATUS_DELIVERED: "delivered",
    pb.NOTIFICATION_STATUS_VIEWED: "viewed",
}
STATUSES_BY_NAME = {v: k for k, v in STATUSES.items()}
SENDER_TYPES = {
    "system": pb.NOTIFICATION_SENDER_TYPE_SYSTEM,
    "admin": pb.NOTIFICATION_SENDER_TYPE_ADMIN,
}


def _attachments(value: Any) -> list[Any]:
    items = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
    return [protoconv.struct(item) for item in items if isinstance(item, dict)]


def notification_message(row: Row[Any]) -> pb.Notification:
    return pb.Notification(
        notification_id=row.notification_id,
        sender_type=SENDER_TYPES.get(row.sender_type, pb.NOTIFICATION_SENDER_TYPE_UNSPECIFIED),
        sender_id=row.sender_id or 0,
        description=row.description or "",
        recipient_type_id=row.recipient_type_id or 0,
        recipient_id=row.recipient_id or 0,
        status=STATUSES_BY_NAME.get(row.status, pb.NOTIFICATION_STATUS_UNSPECIFIED),
        type_id=row.type_id or 0,
        type_name=row.type_name or "",
        attachments=_attachments(row.attachments),
        sent_at=protoconv.timestamp(row.timestamp),
    )


class NotificationServicer(notification_service_pb2_grpc.NotificationServiceServicer):
    def __init__(self, resources: Resources) -> None:
        self._notifications = Notifications(resources.engine)

    async def ListNotifications(
        self, request: pb.ListNotificationsRequest, context: Context
    ) -> pb.ListNotificationsResponse:
        rows, token, unread = await self._notifications.list_own(
            principal(),
            status=protoconv.enum_filter("status", request.status, STATUSES),
            type_id=request.type_id,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListNotificationsResponse(
            notifications=[notification_message(r) for r in rows],
            next_page_token=token,
            unread_count=unread,
        )

    async def MarkNotificationViewed(
        self, request: pb.MarkNotificationViewedRequest, context: Context
    ) -> pb.Notification:
        row = await self._notifications.mark_viewed(principal(), request.notification_id)
        return notification_message(row)

    async def SendNotification(
        self, request: pb.SendNotificationRequest, context: Context
    ) -> pb.SendNotificationResponse:
        count = await self._notifications.send(
            principal(),
            Broadcast(
                request_id=request.request_id,
                recipient_type_id=request.recipient_type_id,
                recipient_ids=list(request.recipient_ids),
                description=request.description,
                type_id=request.type_id,
                attachments=[json_format.MessageToDict(a) for a in request.attachments],
            ),
            request_hash(request),
        )
        return pb.SendNotificationResponse(recipient_count=count)

    async def ListNotificationTypes(
        self, request: pb.ListNotificationTypesRequest, context: Context
    ) -> pb.ListNotificationTypesResponse:
        types, recipient_types = await self._notifications.types()
        return pb.ListNotificationTypesResponse(
            notification_types=[
                pb.NotificationType(type_id=t.type_id, type_name=t.type_name) for t in types
            ],
            recipient_types=[
                pb.NotificationRecipientType(
                    recipient_type_id=t.recipient_type_id,
                    recipient_type_name=t.recipient_type_name,
                )
                for t in recipient_types
            ],
        )
