"""Bad input never reaches INTERNAL: the cases once seen answering INTERNAL, each through
the real server (the property-based sweep over every RPC is tests/rpc/test_fuzz.py).

- ids above PostgreSQL ``integer`` (2**31-1) on every RPC that takes one;
- Timestamps outside 0001..9999 (seconds = 2**40, negative nanos);
- NUL and other control characters in strings (Register's name);
- forged page tokens (the old unsigned format with a huge keyset id; a tampered one);
- an order a 100%-discount offer makes free (quoted eligible, then a 0-amount debit);
- an oversized update_mask, once echoed back until the trailers overflowed;
- request bytes that do not parse (invalid UTF-8 in a string field);
- NaN in a Struct (a notification attachment: jsonb has no NaN).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Awaitable
from decimal import Decimal
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2, timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from sqlalchemy import text

from gencharge.v1 import auth_service_pb2 as auth_pb
from gencharge.v1 import (
    auth_service_pb2_grpc,
    common_pb2,
    notification_service_pb2_grpc,
    plan_service_pb2_grpc,
    recharge_service_pb2_grpc,
    wallet_service_pb2_grpc,
)
from gencharge.v1 import notification_service_pb2 as notification_pb
from gencharge.v1 import plan_service_pb2 as plan_pb
from gencharge.v1 import recharge_service_pb2 as recharge_pb
from gencharge.v1 import wallet_service_pb2 as wallet_pb
from server.auth.scopes import SCOPES
from server.core.errors import MAX_VIOLATIONS
from tests.helpers.auth import PASSWORD, create_admin, create_service, register_user
from tests.helpers.money import balance, fund, make_offer, make_plan
from tests.helpers.rpc import ErrorDetails, details_of

BIG = 2**31  # one past PostgreSQL integer
#: What a client accepts in trailers by default (grpc.max_metadata_size).
CLIENT_METADATA_LIMIT = 8192


async def _refused(call: Awaitable[Any]) -> ErrorDetails:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return details_of(info.value)


async def _invalid(call: Awaitable[Any], field: str) -> ErrorDetails:
    details = await _refused(call)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert field in details.field_violations, details.field_violations
    return details


async def _count(resources: Any, sql: str, **params: Any) -> int:
    async with resources.db.read_only() as conn:
        return int((await conn.execute(text(sql), params)).scalar_one())


async def test_ids_beyond_integer_are_invalid_argument(channel: Any, resources: Any) -> None:
    user = await register_user(channel)
    service = await create_service(channel, resources, list(SCOPES))
    admin = await create_admin(channel, resources)
    wallet = wallet_service_pb2_grpc.WalletServiceStub(channel)
    recharge = recharge_service_pb2_grpc.RechargeServiceStub(channel)
    notifications = notification_service_pb2_grpc.NotificationServiceStub(channel)
    me, svc = user.metadata, service.metadata
    cases: list[tuple[Awaitable[Any], str]] = [
        (wallet.GetTransaction(wallet_pb.GetTransactionRequest(txn_id=BIG), metadata=me), "txn_id"),
        (recharge.GetRecharge(recharge_pb.GetRechargeRequest(txn_id=BIG), metadata=me), "txn_id"),
        (
            notifications.MarkNotificationViewed(
                notification_pb.MarkNotificationViewedRequest(notification_id=2**62), metadata=me
            ),
            "notification_id",
        ),
        (
            recharge.DeleteAutoPay(
                recharge_pb.DeleteAutoPayRequest(autopay_id=2**63 - 1), metadata=me
            ),
            "autopay_id",
        ),
        (
            notifications.ListNotifications(
                notification_pb.ListNotificationsRequest(type_id=BIG), metadata=me
            ),
            "type_id",
        ),
        (
            recharge.PayBill(
                recharge_pb.PayBillRequest(request_id=uuid.uuid4().hex, reminder_id=BIG),
                metadata=me,
            ),
            "reminder_id",
        ),
        (
            wallet.ConfirmPayment(
                wallet_pb.ConfirmPaymentRequest(
                    request_id=uuid.uuid4().hex,
                    txn_id=BIG,
                    payment_transaction_id="pay_1",
                    outcome=wallet_pb.PAYMENT_OUTCOME_SUCCESS,
                ),
                metadata=svc,
            ),
            "txn_id",
        ),
        (
            recharge.UpdateAutoPay(
                recharge_pb.UpdateAutoPayRequest(
                    autopay=recharge_pb.AutoPay(autopay_id=BIG, plan_id=1),
                    update_mask=field_mask_pb2.FieldMask(paths=["plan_id"]),
                ),
                metadata=me,
            ),
            "autopay.autopay_id",
        ),
        (
            recharge.Recharge(
                recharge_pb.RechargeRequest(request_id=uuid.uuid4().hex, plan_id=BIG), metadata=me
            ),
            "plan_id",
        ),
        (
            recharge.QuoteRecharge(
                recharge_pb.QuoteRechargeRequest(plan_id=1, offer_id=-(2**40)), metadata=me
            ),
            "offer_id",
        ),
        (
            notifications.SendNotification(
                notification_pb.SendNotificationRequest(
                    request_id=uuid.uuid4().hex, recipient_ids=[1, BIG], description="hi"
                ),
                metadata=admin.metadata,
            ),
            "recipient_ids[1]",
        ),
    ]
    for call, field in cases:
        details = await _invalid(call, field)
        assert "2147483647" in details.field_violations[field]
    # The largest integer id is simply not found.
    missing = await _refused(
        wallet.GetTransaction(wallet_pb.GetTransactionRequest(txn_id=BIG - 1), metadata=me)
    )
    assert missing.code == grpc.StatusCode.NOT_FOUND


async def test_timestamps_out_of_range_are_invalid_argument(channel: Any) -> None:
    user = await register_user(channel)
    wallet = wallet_service_pb2_grpc.WalletServiceStub(channel)
    recharge = recharge_service_pb2_grpc.RechargeServiceStub(channel)
    far = timestamp_pb2.Timestamp(seconds=2**40)
    before_year_1 = timestamp_pb2.Timestamp(seconds=-62135596801)
    bad_nanos = timestamp_pb2.Timestamp(seconds=0, nanos=-1)
    await _invalid(
        wallet.ListTransactions(
            wallet_pb.ListTransactionsRequest(created_after=far), metadata=user.metadata
        ),
        "created_after",
    )
    await _invalid(
        wallet.ListTransactions(
            wallet_pb.ListTransactionsRequest(created_before=bad_nanos), metadata=user.metadata
        ),
        "created_before",
    )
    await _invalid(
        recharge.ListRecharges(
            recharge_pb.ListRechargesRequest(created_before=far), metadata=user.metadata
        ),
        "created_before",
    )
    await _invalid(
        recharge.ListRecharges(
            recharge_pb.ListRechargesRequest(created_after=before_year_1), metadata=user.metadata
        ),
        "created_after",
    )
    # The edges themselves are fine.
    last = timestamp_pb2.Timestamp(seconds=253402300799, nanos=999_999_999)
    first = timestamp_pb2.Timestamp(seconds=-62135596800)
    reply = await wallet.ListTransactions(
        wallet_pb.ListTransactionsRequest(created_after=first, created_before=last),
        metadata=user.metadata,
    )
    assert list(reply.transactions) == []


async def test_control_characters_in_strings_are_invalid_argument(
    channel: Any, resources: Any
) -> None:
    auth = auth_service_pb2_grpc.AuthServiceStub(channel)
    before = await _count(resources, "SELECT count(*) FROM users")
    details = await _invalid(
        auth.Register(
            auth_pb.RegisterRequest(
                name="Ada\x00Lovelace",
                email=f"ada-{uuid.uuid4().hex[:8]}@example.com",
                phone_number="9123456780",
                password=PASSWORD,
            )
        ),
        "name",
    )
    assert "U+0000" in details.field_violations["name"]
    assert "\x00" not in details.message
    await _invalid(
        auth.Login(auth_pb.LoginRequest(email="a@example.com\x1b[2J", password="x")), "email"
    )
    await _invalid(
        auth.Register(auth_pb.RegisterRequest(name="x" * 5000, email="a@example.com")), "name"
    )
    assert await _count(resources, "SELECT count(*) FROM users") == before
    # Tabs, new lines and any printable Unicode pass (the name is the domain's to judge).
    reply = await auth.Register(
        auth_pb.RegisterRequest(
            name="Zoë\tŁukasz 😀",
            email=f"zoe-{uuid.uuid4().hex[:8]}@example.com",
            phone_number="9123456781",
            password=PASSWORD,
            user_type=common_pb2.USER_TYPE_PREPAID,
        )
    )
    assert reply.user.name == "Zoë\tŁukasz 😀"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _payload(token: str) -> Any:
    body = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def _forgeries(token: str, after: Any) -> list[str]:
    """``token`` with its keyset replaced by ``after``: in the old unsigned format, and
    with the genuine token's signature kept."""
    payload = dict(_payload(token), a=after)
    raw = _b64(json.dumps(payload, separators=(",", ":")).encode())
    return [raw, f"{raw}.{token.split('.')[1]}"]


async def test_forged_page_tokens_are_invalid_argument(channel: Any, resources: Any) -> None:
    user = await register_user(channel)
    for _ in range(3):
        await fund(resources, user.user_id, "10")
    for price in ("11.00", "12.00"):
        await make_plan(resources, price=price)
    wallet = wallet_service_pb2_grpc.WalletServiceStub(channel)
    plans = plan_service_pb2_grpc.PlanServiceStub(channel)
    me = user.metadata

    first = await wallet.ListTransactions(
        wallet_pb.ListTransactionsRequest(page_size=2), metadata=me
    )
    token = first.next_page_token
    assert token
    second = await wallet.ListTransactions(
        wallet_pb.ListTransactionsRequest(page_size=2, page_token=token), metadata=me
    )
    assert len(second.transactions) == 1  # a token this server issued works
    at = _payload(token)["a"][0]
    for forged in _forgeries(token, [at, 2**70]) + _forgeries(token, [at, "1 OR 1=1"]):
        await _invalid(
            wallet.ListTransactions(
                wallet_pb.ListTransactionsRequest(page_size=2, page_token=forged), metadata=me
            ),
            "page_token",
        )
    body, tag = token.split(".")
    tampered = body[:-1] + ("A" if body[-1] != "A" else "B") + "." + tag
    for bad in (tampered, "x" * 2000, "", "..", "a.b.c"):
        if bad:
            await _invalid(
                wallet.ListTransactions(
                    wallet_pb.ListTransactionsRequest(page_size=2, page_token=bad), metadata=me
                ),
                "page_token",
            )

    listed = await plans.ListPlans(plan_pb.ListPlansRequest(page_size=1))
    assert listed.next_page_token
    for forged in _forgeries(listed.next_page_token, 2**70):
        await _invalid(
            plans.ListPlans(plan_pb.ListPlansRequest(page_size=1, page_token=forged)),
            "page_token",
        )


async def test_an_order_made_free_by_an_offer_is_not_sold(channel: Any, resources: Any) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "500")
    plan_id = await make_plan(resources, price="199.00")
    free = await make_offer(resources, type_name="discount", discount_percent=Decimal(100))
    recharge = recharge_service_pb2_grpc.RechargeServiceStub(channel)
    quote = await recharge.QuoteRecharge(
        recharge_pb.QuoteRechargeRequest(plan_id=plan_id, offer_id=free), metadata=user.metadata
    )
    assert not quote.eligible
    assert [r.reason for r in quote.reasons] == ["NOTHING_TO_PAY"]
    assert quote.amount_to_pay.units_minor == 0
    details = await _refused(
        recharge.Recharge(
            recharge_pb.RechargeRequest(
                request_id=uuid.uuid4().hex, plan_id=plan_id, offer_id=free
            ),
            metadata=user.metadata,
        )
    )
    assert (details.code, details.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "NOTHING_TO_PAY")
    assert await balance(resources, user.user_id) == Decimal("500.00")
    debits = "SELECT count(*) FROM transactions WHERE user_id = :u AND txn_type = 'debit'"
    assert await _count(resources, debits, u=user.user_id) == 0
    # A capped 100% discount leaves something to pay, and sells.
    capped = await make_offer(
        resources,
        type_name="discount",
        discount_percent=Decimal(100),
        max_benefit_amount=Decimal("50.00"),
    )
    done = await recharge.Recharge(
        recharge_pb.RechargeRequest(request_id=uuid.uuid4().hex, plan_id=plan_id, offer_id=capped),
        metadata=user.metadata,
    )
    assert done.transaction.amount.units_minor == 14900


def _trailer_bytes(error: grpc.aio.AioRpcError) -> int:
    total = len((error.details() or "").encode())
    for key, value in error.trailing_metadata() or ():
        total += len(key) + len(value if isinstance(value, bytes) else str(value).encode())
    return total


async def test_an_oversized_update_mask_is_refused_in_bounded_words(
    channel: Any, resources: Any
) -> None:
    admin = await create_admin(channel, resources)
    user = await register_user(channel)
    plans = plan_service_pb2_grpc.PlanServiceStub(channel)
    auth = auth_service_pb2_grpc.AuthServiceStub(channel)
    recharge = recharge_service_pb2_grpc.RechargeServiceStub(channel)
    many = field_mask_pb2.FieldMask(paths=[f"no_such_field_{i}" for i in range(3000)])
    calls = [
        plans.UpdatePlan(
            plan_pb.UpdatePlanRequest(plan=plan_pb.Plan(plan_id=1), update_mask=many),
            metadata=admin.metadata,
        ),
        plans.UpdateOffer(
            plan_pb.UpdateOfferRequest(offer=plan_pb.Offer(offer_id=1), update_mask=many),
            metadata=admin.metadata,
        ),
        auth.UpdateMe(auth_pb.UpdateMeRequest(update_mask=many), metadata=user.metadata),
        recharge.UpdateAutoPay(
            recharge_pb.UpdateAutoPayRequest(
                autopay=recharge_pb.AutoPay(autopay_id=1), update_mask=many
            ),
            metadata=user.metadata,
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        details = details_of(info.value)  # readable: the trailers arrived whole
        assert details.code == grpc.StatusCode.INVALID_ARGUMENT
        assert list(details.field_violations) == ["update_mask"]
        assert _trailer_bytes(info.value) < CLIENT_METADATA_LIMIT // 2
    # Within the path limit, the domain names each unknown path, at most MAX_VIOLATIONS
    # of them; the last one counts the rest.
    long_names = [f"no_such_field_{i:03d}_{'x' * 100}" for i in range(64)]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await plans.UpdatePlan(
            plan_pb.UpdatePlanRequest(
                plan=plan_pb.Plan(plan_id=1),
                update_mask=field_mask_pb2.FieldMask(paths=long_names),
            ),
            metadata=admin.metadata,
        )
    assert _trailer_bytes(info.value) < CLIENT_METADATA_LIMIT // 2
    status_violations = _violations(info.value)
    assert 1 <= len(status_violations) <= MAX_VIOLATIONS
    assert status_violations[-1].description.endswith("more violations)")


def _violations(error: grpc.aio.AioRpcError) -> list[Any]:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            assert isinstance(value, bytes)
            for detail in status_pb2.Status.FromString(value).details:
                if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    return list(bad.field_violations)
    return []


async def test_request_bytes_that_do_not_parse_are_invalid_argument(channel: Any) -> None:
    # RegisterRequest.name (field 1, length-delimited) holding bytes that are not UTF-8.
    garbage = b"\x0a\x02\xff\xfe"
    call = channel.unary_unary(
        "/gencharge.v1.AuthService/Register",
        request_serializer=None,
        response_deserializer=None,
    )
    truncated = b"\x0a\x10abc"  # a length past the end
    for data in (garbage, truncated):
        details = await _refused(call(data))
        assert (details.code, details.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "MALFORMED_REQUEST",
        )
        assert "DecodeError" not in details.message


async def test_bad_batch_items_are_answered_in_place(channel: Any, resources: Any) -> None:
    """BatchRecharge checks each item as a unary call checks its request: a bad item
    gets INVALID_ARGUMENT in its place and the stream goes on; bytes that do not parse
    end the stream with MALFORMED_REQUEST."""
    service = await create_service(channel, resources, list(SCOPES))
    user = await register_user(channel)
    await fund(resources, user.user_id, "100")
    plan_id = await make_plan(resources, price="10.00")
    stub = recharge_service_pb2_grpc.RechargeServiceStub(channel)
    items = [
        recharge_pb.BatchRechargeRequest(
            request_id=uuid.uuid4().hex, user_id=user.user_id, plan_id=BIG
        ),
        recharge_pb.BatchRechargeRequest(
            request_id="a\x00b", user_id=user.user_id, plan_id=plan_id
        ),
        recharge_pb.BatchRechargeRequest(
            request_id=uuid.uuid4().hex, user_id=user.user_id, plan_id=plan_id
        ),
    ]
    responses = [r async for r in stub.BatchRecharge(iter(items), metadata=service.metadata)]
    assert [r.WhichOneof("result") for r in responses] == ["error", "error", "recharge"]
    for response, field in zip(responses[:2], ("plan_id", "request_id"), strict=True):
        assert response.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        bad = error_details_pb2.BadRequest()
        assert any(d.Unpack(bad) for d in response.error.details if d.Is(bad.DESCRIPTOR))
        assert [v.field for v in bad.field_violations] == [field]
    assert await balance(resources, user.user_id) == Decimal("90.00")

    raw = channel.stream_stream(RPC_BATCH, request_serializer=None, response_deserializer=None)
    details = await _refused(_drain(raw(iter([b"\x0a\x02\xff\xfe"]), metadata=service.metadata)))
    assert (details.code, details.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST")


RPC_BATCH = "/gencharge.v1.RechargeService/BatchRecharge"


async def _drain(call: Any) -> list[Any]:
    return [response async for response in call]


async def test_json_without_nan_or_infinity(channel: Any, resources: Any) -> None:
    """Struct values become jsonb (or BSON): NaN and Infinity, which JSON lacks, are
    refused on the field."""
    admin = await create_admin(channel, resources)
    notifications = notification_service_pb2_grpc.NotificationServiceStub(channel)
    attachment = struct_pb2.Struct()
    attachment.update({"score": float("nan")})
    await _invalid(
        notifications.SendNotification(
            notification_pb.SendNotificationRequest(
                request_id=uuid.uuid4().hex,
                recipient_type_id=1,
                type_id=1,
                description="hello",
                attachments=[attachment],
            ),
            metadata=admin.metadata,
        ),
        "attachments[0][score]",
    )
    criteria = struct_pb2.Struct()
    criteria.update({"min_amount_minor": float("inf")})
    await _invalid(
        plan_service_pb2_grpc.PlanServiceStub(channel).UpdateOffer(
            plan_pb.UpdateOfferRequest(
                offer=plan_pb.Offer(offer_id=1, criteria=criteria),
                update_mask=field_mask_pb2.FieldMask(paths=["criteria"]),
            ),
            metadata=admin.metadata,
        ),
        "offer.criteria[min_amount_minor]",
    )
