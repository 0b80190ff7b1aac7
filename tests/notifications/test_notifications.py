"""NotificationService through the real server, and the system's notify()."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from google.protobuf.struct_pb2 import Struct

from gencharge.v1 import common_pb2, notification_service_pb2_grpc
from gencharge.v1 import notification_service_pb2 as pb
from server.notifications import UnknownNotificationType, notify
from tests.helpers.auth import Actor, create_admin, register_user
from tests.helpers.rpc import details_of


def stub(channel: grpc.aio.Channel) -> notification_service_pb2_grpc.NotificationServiceStub:
    return notification_service_pb2_grpc.NotificationServiceStub(channel)


async def failure(call: Any) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return details_of(info.value)


async def type_ids(channel: Any, actor: Actor) -> tuple[dict[str, int], dict[str, int]]:
    reply = await stub(channel).ListNotificationTypes(
        pb.ListNotificationTypesRequest(), metadata=actor.metadata
    )
    return (
        {t.type_name: t.type_id for t in reply.notification_types},
        {t.recipient_type_name: t.recipient_type_id for t in reply.recipient_types},
    )


async def system_notify(resources: Any, user_id: int, text: str, kind: str = "system") -> int:
    async with resources.db.transaction() as conn:
        return await notify(
            conn,
            user_id=user_id,
            type_name=kind,
            description=text,
            attachments=[{"kind": "link", "url": "https://example.com"}],
        )


async def test_list_mark_viewed_and_ownership(channel, resources) -> None:
    user = await register_user(channel)
    other = await register_user(channel)
    first = await system_notify(resources, user.user_id, "first")
    second = await system_notify(resources, user.user_id, "second", "offer")

    listed = await stub(channel).ListNotifications(
        pb.ListNotificationsRequest(), metadata=user.metadata
    )
    assert [n.notification_id for n in listed.notifications] == [second, first]  # newest first
    assert listed.unread_count == 2
    note = listed.notifications[1]
    assert note.description == "first" and note.type_name == "system"
    assert note.sender_type == pb.NOTIFICATION_SENDER_TYPE_SYSTEM and note.sender_id == 0
    assert note.status == pb.NOTIFICATION_STATUS_DELIVERED
    assert note.recipient_id == user.user_id and note.sent_at.seconds > 0
    assert note.attachments[0]["url"] == "https://example.com"

    theirs = await failure(
        stub(channel).MarkNotificationViewed(
            pb.MarkNotificationViewedRequest(notification_id=first), metadata=other.metadata
        )
    )
    assert theirs.code == grpc.StatusCode.NOT_FOUND
    none = await stub(channel).ListNotifications(
        pb.ListNotificationsRequest(), metadata=other.metadata
    )
    assert list(none.notifications) == [] and none.unread_count == 0

    for _ in range(2):  # idempotent
        viewed = await stub(channel).MarkNotificationViewed(
            pb.MarkNotificationViewedRequest(notification_id=first), metadata=user.metadata
        )
        assert viewed.status == pb.NOTIFICATION_STATUS_VIEWED
    unread = await stub(channel).ListNotifications(
        pb.ListNotificationsRequest(status=pb.NOTIFICATION_STATUS_DELIVERED),
        metadata=user.metadata,
    )
    assert [n.notification_id for n in unread.notifications] == [second]
    assert unread.unread_count == 1
    types, _ = await type_ids(channel, user)
    offers = await stub(channel).ListNotifications(
        pb.ListNotificationsRequest(type_id=types["offer"]), metadata=user.metadata
    )
    assert [n.notification_id for n in offers.notifications] == [second]
    missing = await failure(
        stub(channel).MarkNotificationViewed(
            pb.MarkNotificationViewedRequest(notification_id=999_999), metadata=user.metadata
        )
    )
    assert missing.code == grpc.StatusCode.NOT_FOUND


async def test_pagination_newest_first(channel, resources) -> None:
    user = await register_user(channel)
    ids = [await system_notify(resources, user.user_id, f"n{i}") for i in range(5)]
    seen: list[int] = []
    token = ""
    while True:
        page = await stub(channel).ListNotifications(
            pb.ListNotificationsRequest(page_size=2, page_token=token), metadata=user.metadata
        )
        seen += [n.notification_id for n in page.notifications]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(ids))


async def test_list_notification_types(channel, resources) -> None:
    user = await register_user(channel)
    types, recipients = await type_ids(channel, user)
    assert {"autopay_success", "autopay_failed", "bill_reminder", "plan_expiry"} <= set(types)
    assert {"user", "all_users", "prepaid_users", "postpaid_users"} <= set(recipients)


async def test_admin_sends_to_users_and_broadcasts(channel, resources) -> None:
    admin = await create_admin(channel, resources)
    prepaid = await register_user(channel)
    postpaid = await register_user(channel, user_type=common_pb2.USER_TYPE_POSTPAID)
    types, recipients = await type_ids(channel, admin)
    attachment = Struct()
    attachment.update({"kind": "image", "url": "https://example.com/a.png"})

    direct = await stub(channel).SendNotification(
        pb.SendNotificationRequest(
            request_id=uuid.uuid4().hex,
            recipient_type_id=recipients["user"],
            recipient_ids=[prepaid.user_id],
            description="Hello you",
            type_id=types["system"],
            attachments=[attachment],
        ),
        metadata=admin.metadata,
    )
    assert direct.recipient_count == 1
    (note,) = (
        await stub(channel).ListNotifications(
            pb.ListNotificationsRequest(), metadata=prepaid.metadata
        )
    ).notifications
    assert note.sender_type == pb.NOTIFICATION_SENDER_TYPE_ADMIN and note.sender_id > 0
    assert note.description == "Hello you" and note.attachments[0]["kind"] == "image"

    key = uuid.uuid4().hex
    broadcast = pb.SendNotificationRequest(
        request_id=key,
        recipient_type_id=recipients["postpaid_users"],
        description="Bills are due",
        type_id=types["offer"],
    )
    sent = await stub(channel).SendNotification(broadcast, metadata=admin.metadata)
    assert sent.recipient_count == 1
    replay = await stub(channel).SendNotification(broadcast, metadata=admin.metadata)
    assert replay.recipient_count == 1
    got = await stub(channel).ListNotifications(
        pb.ListNotificationsRequest(), metadata=postpaid.metadata
    )
    assert [n.description for n in got.notifications] == ["Bills are due"]  # sent once
    mine = await stub(channel).ListNotifications(
        pb.ListNotificationsRequest(), metadata=prepaid.metadata
    )
    assert len(mine.notifications) == 1  # the postpaid broadcast did not reach prepaid

    everyone = await stub(channel).SendNotification(
        pb.SendNotificationRequest(
            request_id=uuid.uuid4().hex,
            recipient_type_id=recipients["all_users"],
            description="Maintenance tonight",
            type_id=types["system"],
        ),
        metadata=admin.metadata,
    )
    assert everyone.recipient_count == 2


async def test_send_validation_and_access(channel, resources) -> None:
    admin = await create_admin(channel, resources)
    user = await register_user(channel)
    types, recipients = await type_ids(channel, admin)

    def request(**fields: Any) -> pb.SendNotificationRequest:
        values: dict[str, Any] = {
            "request_id": uuid.uuid4().hex,
            "recipient_type_id": recipients["user"],
            "recipient_ids": [user.user_id],
            "description": "hi",
            "type_id": types["system"],
        }
        values.update(fields)
        return pb.SendNotificationRequest(**values)

    denied = await failure(stub(channel).SendNotification(request(), metadata=user.metadata))
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED
    empty = await failure(
        stub(channel).SendNotification(request(description=" "), metadata=admin.metadata)
    )
    assert "description" in empty.field_violations
    no_ids = await failure(
        stub(channel).SendNotification(request(recipient_ids=[]), metadata=admin.metadata)
    )
    assert no_ids.code == grpc.StatusCode.INVALID_ARGUMENT
    bad_type = await failure(
        stub(channel).SendNotification(request(type_id=999), metadata=admin.metadata)
    )
    assert bad_type.code == grpc.StatusCode.NOT_FOUND
    bad_recipient = await failure(
        stub(channel).SendNotification(request(recipient_ids=[999_999]), metadata=admin.metadata)
    )
    assert bad_recipient.code == grpc.StatusCode.NOT_FOUND
    listed = await stub(channel).ListNotifications(
        pb.ListNotificationsRequest(), metadata=user.metadata
    )
    assert list(listed.notifications) == []  # nothing was half-sent


async def test_notify_rejects_unknown_types(resources) -> None:
    async with resources.db.transaction() as conn:
        with pytest.raises(UnknownNotificationType):
            await notify(conn, user_id=1, type_name="no_such_type", description="x")
