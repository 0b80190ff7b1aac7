"""AutoPay mandates through the real server: CRUD, validation, idempotency, ownership.
(Their execution by the scheduler is in tests/ops/test_scheduler.py.)"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from gencharge.v1 import recharge_service_pb2 as pb
from gencharge.v1 import recharge_service_pb2_grpc
from tests.helpers.auth import Actor, create_admin, register_user
from tests.helpers.money import make_plan
from tests.helpers.rpc import details_of


def stub(channel: grpc.aio.Channel) -> recharge_service_pb2_grpc.RechargeServiceStub:
    return recharge_service_pb2_grpc.RechargeServiceStub(channel)


def rid() -> str:
    return uuid.uuid4().hex


def ts(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


def in_days(days: float) -> Timestamp:
    return ts(datetime.now(UTC) + timedelta(days=days))


async def create(channel: Any, actor: Actor, plan_id: int, **fields: Any) -> pb.AutoPay:
    request_id = fields.pop("request_id", rid())
    fields.setdefault("tag", pb.AUTO_PAY_TAG_REGULAR)
    fields.setdefault("next_due_date", in_days(1))
    return await stub(channel).CreateAutoPay(
        pb.CreateAutoPayRequest(
            request_id=request_id, autopay=pb.AutoPay(plan_id=plan_id, **fields)
        ),
        metadata=actor.metadata,
    )


async def failure(call: Any) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return details_of(info.value)


async def test_create_list_update_delete(channel, resources) -> None:
    user = await register_user(channel)
    plan_id = await make_plan(resources, price="99.00", validity=28)
    other_plan = await make_plan(resources, price="149.00", validity=56)
    created = await create(channel, user, plan_id)
    assert created.autopay_id > 0 and created.user_id == user.user_id
    assert created.status == pb.AUTO_PAY_STATUS_ENABLED
    assert created.tag == pb.AUTO_PAY_TAG_REGULAR
    assert created.phone_number == user.phone_number  # defaults to the owner's number
    assert created.created_at.seconds > 0

    listed = await stub(channel).ListAutoPays(pb.ListAutoPaysRequest(), metadata=user.metadata)
    assert [a.autopay_id for a in listed.autopays] == [created.autopay_id]

    due = in_days(7)
    updated = await stub(channel).UpdateAutoPay(
        pb.UpdateAutoPayRequest(
            autopay=pb.AutoPay(
                autopay_id=created.autopay_id,
                plan_id=other_plan,
                status=pb.AUTO_PAY_STATUS_DISABLED,
                tag=pb.AUTO_PAY_TAG_ONETIME,
                next_due_date=due,
                phone_number="+91 98765 43210",
            ),
            update_mask=FieldMask(
                paths=["plan_id", "status", "tag", "next_due_date", "phone_number"]
            ),
        ),
        metadata=user.metadata,
    )
    assert updated.plan_id == other_plan
    assert updated.status == pb.AUTO_PAY_STATUS_DISABLED
    assert updated.tag == pb.AUTO_PAY_TAG_ONETIME
    assert updated.next_due_date.seconds == due.seconds
    assert updated.phone_number == "9876543210"

    enabled = await stub(channel).ListAutoPays(
        pb.ListAutoPaysRequest(status=pb.AUTO_PAY_STATUS_ENABLED), metadata=user.metadata
    )
    assert list(enabled.autopays) == []
    disabled = await stub(channel).ListAutoPays(
        pb.ListAutoPaysRequest(status=pb.AUTO_PAY_STATUS_DISABLED), metadata=user.metadata
    )
    assert [a.autopay_id for a in disabled.autopays] == [created.autopay_id]

    await stub(channel).DeleteAutoPay(
        pb.DeleteAutoPayRequest(autopay_id=created.autopay_id), metadata=user.metadata
    )
    listed = await stub(channel).ListAutoPays(pb.ListAutoPaysRequest(), metadata=user.metadata)
    assert list(listed.autopays) == []
    gone = await failure(
        stub(channel).DeleteAutoPay(
            pb.DeleteAutoPayRequest(autopay_id=created.autopay_id), metadata=user.metadata
        )
    )
    assert gone.code == grpc.StatusCode.NOT_FOUND


async def test_update_changes_only_masked_fields(channel, resources) -> None:
    user = await register_user(channel)
    plan_id = await make_plan(resources)
    other_plan = await make_plan(resources, price="20.00")
    created = await create(channel, user, plan_id)
    updated = await stub(channel).UpdateAutoPay(
        pb.UpdateAutoPayRequest(
            autopay=pb.AutoPay(
                autopay_id=created.autopay_id,
                plan_id=other_plan,
                status=pb.AUTO_PAY_STATUS_DISABLED,
            ),
            update_mask=FieldMask(paths=["status"]),
        ),
        metadata=user.metadata,
    )
    assert updated.status == pb.AUTO_PAY_STATUS_DISABLED
    assert updated.plan_id == plan_id
    assert updated.next_due_date == created.next_due_date


async def test_create_is_idempotent(channel, resources) -> None:
    user = await register_user(channel)
    plan_id = await make_plan(resources)
    key = rid()
    due = in_days(2)
    first = await create(channel, user, plan_id, request_id=key, next_due_date=due)
    second = await create(channel, user, plan_id, request_id=key, next_due_date=due)
    assert first.autopay_id == second.autopay_id
    listed = await stub(channel).ListAutoPays(pb.ListAutoPaysRequest(), metadata=user.metadata)
    assert len(listed.autopays) == 1
    mismatch = await failure(
        create(channel, user, plan_id, request_id=key, next_due_date=in_days(3))
    )
    assert mismatch.code == grpc.StatusCode.ALREADY_EXISTS
    assert mismatch.reason == "IDEMPOTENCY_KEY_REUSED"


async def test_validation(channel, resources) -> None:
    user = await register_user(channel)
    plan_id = await make_plan(resources)
    inactive = await make_plan(resources, status="inactive")

    past = await failure(create(channel, user, plan_id, next_due_date=in_days(-1)))
    assert past.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "autopay.next_due_date" in past.field_violations

    request = pb.CreateAutoPayRequest(
        request_id=rid(), autopay=pb.AutoPay(plan_id=plan_id, tag=pb.AUTO_PAY_TAG_ONETIME)
    )
    no_due = await failure(stub(channel).CreateAutoPay(request, metadata=user.metadata))
    assert "autopay.next_due_date" in no_due.field_violations

    no_tag = await failure(create(channel, user, plan_id, tag=pb.AUTO_PAY_TAG_UNSPECIFIED))
    assert no_tag.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "autopay.tag" in no_tag.field_violations

    bad_key = await failure(create(channel, user, plan_id, request_id="short"))
    assert "request_id" in bad_key.field_violations

    bad_phone = await failure(create(channel, user, plan_id, phone_number="12"))
    assert "autopay.phone_number" in bad_phone.field_violations

    missing = await failure(create(channel, user, 999_999))
    assert missing.code == grpc.StatusCode.NOT_FOUND

    withdrawn = await failure(create(channel, user, inactive))
    assert withdrawn.code == grpc.StatusCode.FAILED_PRECONDITION
    assert withdrawn.reason == "PLAN_INACTIVE"

    created = await create(channel, user, plan_id)
    duplicate = await failure(create(channel, user, plan_id))
    assert duplicate.code == grpc.StatusCode.ALREADY_EXISTS

    no_mask = await failure(
        stub(channel).UpdateAutoPay(
            pb.UpdateAutoPayRequest(autopay=pb.AutoPay(autopay_id=created.autopay_id)),
            metadata=user.metadata,
        )
    )
    assert "update_mask" in no_mask.field_violations
    bad_path = await failure(
        stub(channel).UpdateAutoPay(
            pb.UpdateAutoPayRequest(
                autopay=pb.AutoPay(autopay_id=created.autopay_id),
                update_mask=FieldMask(paths=["user_id"]),
            ),
            metadata=user.metadata,
        )
    )
    assert "update_mask" in bad_path.field_violations
    past_update = await failure(
        stub(channel).UpdateAutoPay(
            pb.UpdateAutoPayRequest(
                autopay=pb.AutoPay(autopay_id=created.autopay_id, next_due_date=in_days(-2)),
                update_mask=FieldMask(paths=["next_due_date"]),
            ),
            metadata=user.metadata,
        )
    )
    assert "autopay.next_due_date" in past_update.field_violations


async def test_ownership(channel, resources) -> None:
    owner = await register_user(channel)
    other = await register_user(channel)
    plan_id = await make_plan(resources)
    created = await create(channel, owner, plan_id)

    listed = await stub(channel).ListAutoPays(pb.ListAutoPaysRequest(), metadata=other.metadata)
    assert list(listed.autopays) == []
    update = await failure(
        stub(channel).UpdateAutoPay(
            pb.UpdateAutoPayRequest(
                autopay=pb.AutoPay(
                    autopay_id=created.autopay_id, status=pb.AUTO_PAY_STATUS_DISABLED
                ),
                update_mask=FieldMask(paths=["status"]),
            ),
            metadata=other.metadata,
        )
    )
    assert update.code == grpc.StatusCode.NOT_FOUND
    delete = await failure(
        stub(channel).DeleteAutoPay(
            pb.DeleteAutoPayRequest(autopay_id=created.autopay_id), metadata=other.metadata
        )
    )
    assert delete.code == grpc.StatusCode.NOT_FOUND
    # Still there, unchanged, for the owner.
    mine = await stub(channel).ListAutoPays(pb.ListAutoPaysRequest(), metadata=owner.metadata)
    assert [a.status for a in mine.autopays] == [pb.AUTO_PAY_STATUS_ENABLED]


async def test_admins_have_no_mandates(channel, resources) -> None:
    admin = await create_admin(channel, resources)
    denied = await failure(
        stub(channel).ListAutoPays(pb.ListAutoPaysRequest(), metadata=admin.metadata)
    )
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED and denied.reason == "USER_ONLY"


async def test_pagination_by_due_date(channel, resources) -> None:
    user = await register_user(channel)
    plans = [await make_plan(resources, price=f"{10 + i}.00") for i in range(5)]
    for i, plan_id in enumerate(plans):
        await create(channel, user, plan_id, next_due_date=in_days(5 - i))
    seen: list[int] = []
    token = ""
    while True:
        page = await stub(channel).ListAutoPays(
            pb.ListAutoPaysRequest(page_size=2, page_token=token), metadata=user.metadata
        )
        assert len(page.autopays) <= 2
        seen += [a.plan_id for a in page.autopays]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(plans))  # earliest due first
    bad = await failure(
        stub(channel).ListAutoPays(
            pb.ListAutoPaysRequest(page_token="garbage"), metadata=user.metadata
        )
    )
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT
