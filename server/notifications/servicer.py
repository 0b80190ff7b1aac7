"""NotificationService: RPC methods only (proto <-> values in convert.py, rules in
domain.py); each call is one unit of work opened on ``resources.db``."""

from __future__ import annotations

from typing import Any

import grpc

from gencharge.v1 import notification_service_pb2 as pb
from gencharge.v1 import notification_service_pb2_grpc
from server.auth.principal import principal
from server.core.idempotency import request_hash
from server.core.resources import Resources
from server.notifications import convert, domain

Context = grpc.aio.ServicerContext[Any, Any]


class NotificationServicer(notification_service_pb2_grpc.NotificationServiceServicer):
    def __init__(self, resources: Resources) -> None:
        self._db = resources.db

    async def ListNotifications(
        self, request: pb.ListNotificationsRequest, context: Context
    ) -> pb.ListNotificationsResponse:
        status = convert.status_filter(request)
        async with self._db.read_only() as conn:
            page = await domain.list_own(
                principal(),
                status=status,
                type_id=request.type_id,
                page_size=request.page_size,
                page_token=request.page_token,
                conn=conn,
            )
        return convert.list_response(page)

    async def MarkNotificationViewed(
        self, request: pb.MarkNotificationViewedRequest, context: Context
    ) -> pb.Notification:
        async with self._db.transaction() as conn:
            notification = await domain.mark_viewed(principal(), request.notification_id, conn=conn)
        return convert.notification_message(notification)

    async def SendNotification(
        self, request: pb.SendNotificationRequest, context: Context
    ) -> pb.SendNotificationResponse:
        order = convert.broadcast_of(request)
        async with self._db.transaction() as conn:
            count = await domain.send(principal(), order, request_hash(request), conn=conn)
        return pb.SendNotificationResponse(recipient_count=count)

    async def ListNotificationTypes(
        self, request: pb.ListNotificationTypesRequest, context: Context
    ) -> pb.ListNotificationTypesResponse:
        async with self._db.read_only() as conn:
            types = await domain.types(conn=conn)
        return convert.types_response(types)
