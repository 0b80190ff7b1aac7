"""The contract's comments are promises to client teams: each test here pins one of them
through the real server (tests are named after the promise). The comments they check
are in protos/gencharge/v1/*.proto; where a promise is already pinned elsewhere, that
test is named in the comment above the section.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import text

from gencharge.v1 import auth_service_pb2 as auth_pb
from gencharge.v1 import (
    common_pb2,
    notification_service_pb2_grpc,
    plan_service_pb2_grpc,
    recharge_service_pb2_grpc,
)
from gencharge.v1 import notification_service_pb2 as note_pb
from gencharge.v1 import plan_service_pb2 as plan_pb
from gencharge.v1 import recharge_service_pb2 as pb
from gencharge.v1 import transaction_pb2 as tpb
from server.auth.scopes import PAYMENTS_CONFIRM, RECHARGES_WRITE
from server.core.pagination import Page, fingerprint
from server.plans.domain import PlanFilter
from tests.helpers.auth import Actor, auth_stub, create_admin, create_service, register_user
from tests.helpers.money import (
    checkout_request,
    confirm,
    failed_request,
    fund,
    make_offer,
    make_plan,
    sandbox_of,
)
from tests.helpers.rpc import ErrorDetails, details_of


def rid() -> str:
    return uuid.uuid4().hex


def recharges(channel: grpc.aio.Channel) -> recharge_service_pb2_grpc.RechargeServiceStub:
    return recharge_service_pb2_grpc.RechargeServiceStub(channel)


async def failure(call: Any) -> ErrorDetails:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return details_of(info.value)


async def sql(resources: Any, statement: str, **params: Any) -> None:
    async with resources.db.transaction() as conn:
        await conn.execute(text(statement), params)


async def count_rows(resources: Any, statement: str, **params: Any) -> int:
    async with resources.db.read_only() as conn:
        return int((await conn.execute(text(statement), params)).scalar_one())


async def block(resources: Any, user_id: int, status: str = "blocked") -> None:
    await sql(resources, "UPDATE users SET status = :s WHERE user_id = :u", s=status, u=user_id)


async def quote(channel: Any, actor: Actor, plan_id: int, **fields: Any) -> pb.Quote:
    return await recharges(channel).QuoteRecharge(
        pb.QuoteRechargeRequest(plan_id=plan_id, **fields), metadata=actor.metadata
    )


async def recharge(channel: Any, actor: Actor, plan_id: int, **fields: Any) -> pb.Recharge:
    fields.setdefault("request_id", rid())
    return await recharges(channel).Recharge(
        pb.RechargeRequest(plan_id=plan_id, **fields), metadata=actor.metadata
    )


def reasons(q: pb.Quote) -> list[str]:
    return [r.reason for r in q.reasons]


# --- RechargeService.QuoteRecharge: "Whether Recharge with the same inputs would be
# accepted now"; "Ineligibility is not an error: eligible is false with reasons" ---------


async def test_quote_for_a_wallet_payment_is_not_eligible_when_the_wallet_cannot_pay(
    channel, resources
) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "60")
    plan_id = await make_plan(resources, price="100.00")
    wallet = common_pb2.PAYMENT_METHOD_WALLET

    short = await quote(channel, user, plan_id, payment_method=wallet)
    assert not short.eligible and reasons(short) == ["INSUFFICIENT_FUNDS"]
    assert short.reasons[0].message
    assert short.amount_to_pay.units_minor == 10000
    # PAYMENT_METHOD_UNSPECIFIED is a wallet payment, for the quote as for Recharge.
    assert reasons(await quote(channel, user, plan_id)) == ["INSUFFICIENT_FUNDS"]
    refused = await failure(recharge(channel, user, plan_id, payment_method=wallet))
    assert refused.code == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.reason == "INSUFFICIENT_FUNDS"

    # The wallet does not pay an external payment: the same user may pay by UPI.
    upi = await quote(channel, user, plan_id, payment_method=common_pb2.PAYMENT_METHOD_UPI)
    assert upi.eligible

    # A discount that brings the price down to the balance makes it payable.
    offer_id = await make_offer(resources, type_name="discount", discount_amount=Decimal("40"))
    exact = await quote(channel, user, plan_id, offer_id=offer_id, payment_method=wallet)
    assert exact.eligible and exact.amount_to_pay.units_minor == 6000
    paid = await recharge(
        channel, user, plan_id, offer_id=offer_id, expected_amount=exact.amount_to_pay
    )
    assert paid.transaction.amount.units_minor == 6000


async def test_quote_reports_a_blocked_payer_as_a_reason_and_recharge_refuses_it(
    channel, resources
) -> None:
    user = await register_user(channel)
    service = await create_service(channel, resources, [RECHARGES_WRITE])
    await fund(resources, user.user_id, "500")
    plan_id = await make_plan(resources, price="10.00")
    await block(resources, user.user_id)

    blocked = await quote(channel, service, plan_id, user_id=user.user_id)
    assert not blocked.eligible and reasons(blocked) == ["ACCOUNT_BLOCKED"]
    refused = await failure(recharge(channel, service, plan_id, user_id=user.user_id))
    assert refused.code == grpc.StatusCode.PERMISSION_DENIED  # as documented (and TopUp)
    assert refused.reason == "ACCOUNT_BLOCKED"


async def test_every_reason_a_quote_gives_is_the_reason_recharge_refuses_with(
    channel, resources
) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "500")
    cases = {
        "PLAN_INACTIVE": (await make_plan(resources, status="inactive"), None),
        "USER_TYPE_NOT_ELIGIBLE": (
            await make_plan(resources, criteria={"user_types": ["postpaid"]}),
            None,
        ),
        "OFFER_INACTIVE": (
            await make_plan(resources),
            await make_offer(resources, cashback_amount=Decimal("1"), status="inactive"),
        ),
    }
    for reason, (plan_id, offer_id) in cases.items():
        extra = {"offer_id": offer_id} if offer_id else {}
        q = await quote(channel, user, plan_id, **extra)
        assert not q.eligible and reasons(q) == [reason], reason
        refused = await failure(recharge(channel, user, plan_id, **extra))
        assert (refused.code, refused.reason) == (grpc.StatusCode.FAILED_PRECONDITION, reason)


async def test_recharge_accepts_only_inr_in_expected_amount(channel, resources) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "50")
    plan_id = await make_plan(resources, price="10.00")
    usd = common_pb2.Money(units_minor=1000, currency_code="USD")
    details = await failure(recharge(channel, user, plan_id, expected_amount=usd))
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "expected_amount.currency_code" in details.field_violations
    inr = common_pb2.Money(units_minor=1000)  # empty means INR
    assert (await recharge(channel, user, plan_id, expected_amount=inr)).transaction.txn_id


# --- GetRecharge / ListRecharges return the Recharge the customer was shown -----------------


def shown(r: pb.Recharge) -> pb.Recharge:
    """What GetRecharge/ListRecharges promise to show again: everything but the
    one-time gateway redirect of a pending payment."""
    copy = pb.Recharge()
    copy.CopyFrom(r)
    copy.ClearField("pending_payment")
    return copy


async def listed(channel: Any, user: Actor) -> dict[int, pb.Recharge]:
    page = await recharges(channel).ListRecharges(
        pb.ListRechargesRequest(page_size=200), metadata=user.metadata
    )
    return {r.transaction.txn_id: r for r in page.recharges}


async def got(channel: Any, user: Actor, txn_id: int) -> pb.Recharge:
    return await recharges(channel).GetRecharge(
        pb.GetRechargeRequest(txn_id=txn_id), metadata=user.metadata
    )


async def test_get_and_list_recharges_show_the_discount_and_cashback_the_recharge_showed(
    channel, resources
) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "500")
    plan_id = await make_plan(resources, price="100.00")
    both = await make_offer(
        resources,
        type_name="discount",
        discount_amount=Decimal("10"),
        cashback_percent=Decimal("5"),
    )
    with_offer = await recharge(channel, user, plan_id, offer_id=both)
    assert with_offer.discount.units_minor == 1000 and with_offer.cashback.units_minor == 450
    assert with_offer.cashback_transaction.amount.units_minor == 450
    plain = await recharge(channel, user, plan_id)
    assert plain.active_plan.status == pb.ACTIVE_PLAN_STATUS_QUEUED

    page = await listed(channel, user)
    for made in (with_offer, plain):
        assert await got(channel, user, made.transaction.txn_id) == made
        assert page[made.transaction.txn_id] == made
    assert not page[plain.transaction.txn_id].HasField("cashback_transaction")


async def test_a_bonus_offer_shows_its_allowances_on_the_quote_and_the_recharge(
    channel, resources
) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "100")
    plan_id = await make_plan(resources, price="20.00")
    bonus_id = await make_offer(
        resources, type_name="bonus_data", bonus={"data_mb": 2048, "sms_count": 50}
    )
    q = await quote(channel, user, plan_id, offer_id=bonus_id)
    assert q.eligible and (q.bonus.data_mb, q.bonus.sms_count) == (2048, 50)
    assert q.amount_to_pay.units_minor == 2000  # price unchanged
    made = await recharge(channel, user, plan_id, offer_id=bonus_id)
    assert made.bonus == q.bonus and made.transaction.amount.units_minor == 2000
    assert await got(channel, user, made.transaction.txn_id) == made
    assert (await listed(channel, user))[made.transaction.txn_id] == made
    plain = await recharge(channel, user, plan_id)
    assert not plain.HasField("bonus")
    assert not (await got(channel, user, plain.transaction.txn_id)).HasField("bonus")


async def test_a_pending_recharge_shows_its_promised_cashback_then_the_credit(
    channel, resources, grpc_server
) -> None:
    user = await register_user(channel)
    service = await create_service(channel, resources, [PAYMENTS_CONFIRM])
    plan_id = await make_plan(resources, price="40.00")
    offer_id = await make_offer(resources, cashback_amount=Decimal("4.00"))
    sandbox = sandbox_of(grpc_server)

    card = common_pb2.PaymentDetails(card=common_pb2.CardPayment(card_token="tok_pending"))
    made = []
    for _ in range(2):
        pending = await recharge(
            channel,
            user,
            plan_id,
            offer_id=offer_id,
            payment_method=common_pb2.PAYMENT_METHOD_CARD,
            payment_details=card,
        )
        assert pending.transaction.status == tpb.TRANSACTION_STATUS_PENDING
        assert pending.HasField("pending_payment") and not pending.HasField("active_plan")
        assert pending.cashback.units_minor == 400  # to be credited
        assert await got(channel, user, pending.transaction.txn_id) == shown(pending)
        made.append(pending)

    ok, no = made
    await confirm(
        channel, service, checkout_request(sandbox, ok.transaction.payment_transaction_id)
    )
    await confirm(channel, service, failed_request(sandbox, no.transaction.payment_transaction_id))
    page = await listed(channel, user)
    settled = await got(channel, user, ok.transaction.txn_id)
    assert settled.transaction.status == tpb.TRANSACTION_STATUS_SUCCESS
    assert settled.active_plan.status == pb.ACTIVE_PLAN_STATUS_ACTIVE
    assert settled.cashback.units_minor == 400
    assert settled.cashback_transaction.source == tpb.TRANSACTION_SOURCE_CASHBACK
    assert settled.cashback_transaction.amount.units_minor == 400
    failed = await got(channel, user, no.transaction.txn_id)
    assert failed.transaction.status == tpb.TRANSACTION_STATUS_FAILED
    assert not failed.HasField("active_plan") and failed.cashback.units_minor == 0
    assert page[ok.transaction.txn_id] == settled and page[no.transaction.txn_id] == failed


# --- ListActivePlans: "by valid_from"; status unspecified is "ACTIVE and QUEUED" --------------


async def test_list_active_plans_comes_by_valid_from_active_and_queued_by_default(
    channel, resources
) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "500")
    plan_id = await make_plan(resources, price="10.00", validity=28)
    first = await recharge(channel, user, plan_id)  # own number, active now
    queued = await recharge(channel, user, plan_id)  # own number, from day 28
    other = await recharge(channel, user, plan_id, phone_number="9123456789")  # active now
    ended = await recharge(channel, user, plan_id, phone_number="9123456790")
    await sql(
        resources,
        "UPDATE currentactiveplans SET valid_from = now() - interval '40 days', "
        "valid_to = now() - interval '12 days' WHERE id = :id",
        id=ended.active_plan.id,
    )
    stub = recharges(channel)

    async def walk(**filters: Any) -> list[int]:
        ids: list[int] = []
        token = ""
        while True:
            page = await stub.ListActivePlans(
                pb.ListActivePlansRequest(page_size=1, page_token=token, **filters),
                metadata=user.metadata,
            )
            ids += [p.id for p in page.active_plans]
            token = page.next_page_token
            if not token:
                return ids

    expected = [first.active_plan.id, other.active_plan.id, queued.active_plan.id]
    assert await walk() == expected
    assert await walk(status=pb.ACTIVE_PLAN_STATUS_EXPIRED) == [ended.active_plan.id]
    assert await walk(status=pb.ACTIVE_PLAN_STATUS_QUEUED) == [queued.active_plan.id]


# --- PlanService list orders: ListPlans "most popular first, then by price"; ListOffers
# "newest first"; ListPlanGroups and ListOfferTypes "by name" (every page in that order) --


async def walk_pages(call: Any, request_type: Any, field: str, **filters: Any) -> list[Any]:
    items: list[Any] = []
    token = ""
    while True:
        page = await call(request_type(page_size=2, page_token=token, **filters))
        items += list(getattr(page, field))
        token = page.next_page_token
        if not token:
            return items


def forged(filters: dict[str, Any], after: Any) -> str:
    """A page token in the server's format, carrying ``after``, for these filters."""
    return Page(1, None, fingerprint(filters)).next_token(after, True)


async def test_list_plans_comes_most_popular_first_then_by_price_on_every_page(
    channel, resources
) -> None:
    made = {}
    for name, price, popular in [
        ("B 300", "300.00", False),
        ("A 50", "50.00", False),
        ("P 999", "999.00", True),
        ("P 10", "10.00", True),
        ("C 50", "50.00", False),  # same price as A 50: the older plan first
    ]:
        made[name] = await make_plan(resources, name=name, price=price)
        if popular:
            await sql(
                resources, "UPDATE plans SET most_popular = true WHERE plan_id = :p", p=made[name]
            )
    stub = plan_service_pb2_grpc.PlanServiceStub(channel)
    plans = await walk_pages(stub.ListPlans, plan_pb.ListPlansRequest, "plans")
    assert [p.plan_name for p in plans] == ["P 10", "P 999", "A 50", "C 50", "B 300"]

    for after in ([True, "x", 1], [True, "NaN", 1], ["1", "10.00", 1], [True, "10.00"], 7):
        token = forged({"plans": asdict(PlanFilter())}, after)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ListPlans(plan_pb.ListPlansRequest(page_token=token))
        details = details_of(info.value)
        assert details.code == grpc.StatusCode.INVALID_ARGUMENT, after
        assert "page_token" in details.field_violations


async def test_list_offers_comes_newest_first_on_every_page(channel, resources) -> None:
    ages = {"Old": 30, "Newest": 0, "Middle": 10, "Older": 20}
    for name, days in ages.items():
        offer_id = await make_offer(resources, offer_name=name, cashback_amount=Decimal("1"))
        await sql(
            resources,
            "UPDATE offers SET created_at = now() - make_interval(days => :d) WHERE offer_id = :o",
            d=days,
            o=offer_id,
        )
    stub = plan_service_pb2_grpc.PlanServiceStub(channel)
    offers = await walk_pages(stub.ListOffers, plan_pb.ListOffersRequest, "offers")
    assert [o.offer_name for o in offers] == ["Newest", "Middle", "Older", "Old"]


async def test_plan_groups_and_offer_types_come_by_name_on_every_page(channel, resources) -> None:
    await sql(resources, "INSERT INTO plangroups (group_name) VALUES ('aaa first'), ('zzz')")
    await sql(resources, "INSERT INTO offertypes (offer_type_name) VALUES ('zzz'), ('aaa')")
    stub = plan_service_pb2_grpc.PlanServiceStub(channel)
    groups = [
        g.group_name
        for g in await walk_pages(stub.ListPlanGroups, plan_pb.ListPlanGroupsRequest, "plan_groups")
    ]
    assert groups == sorted(groups) and groups[0] == "aaa first" and groups[-1] == "zzz"
    types = [
        t.offer_type_name
        for t in await walk_pages(stub.ListOfferTypes, plan_pb.ListOfferTypesRequest, "offer_types")
    ]
    assert types == sorted(types) and types[0] == "aaa" and types[-1] == "zzz"


# --- AuthService -------------------------------------------------------------------------
# Blocked users' and disabled service accounts' access tokens: UNAUTHENTICATED
# SESSION_ENDED, pinned by tests/auth/test_token_matrix.py (test_token_of_a_blocked_user,
# test_token_of_a_disabled_service_account); Login of a blocked user: PERMISSION_DENIED
# ACCOUNT_BLOCKED, tests/auth/test_auth.py::test_blocked_user_cannot_log_in_and_loses_sessions.


async def test_jwks_keys_are_ed25519_for_eddsa_as_documented(channel) -> None:
    jwks = await auth_stub(channel).GetJwks(auth_pb.GetJwksRequest())
    assert jwks.keys
    for key in jwks.keys:
        assert (key.kty, key.crv, key.alg, key.use) == ("OKP", "Ed25519", "EdDSA", "sig")
        assert key.y == ""  # OKP keys have no y coordinate
        assert len(base64.urlsafe_b64decode(key.x + "=" * (-len(key.x) % 4))) == 32
        assert key.kid


async def test_refresh_token_of_a_blocked_account_is_permission_denied_account_blocked(
    channel, resources
) -> None:
    user = await register_user(channel)
    refresh = auth_stub(channel).RefreshToken
    await block(resources, user.user_id)
    blocked = await failure(refresh(auth_pb.RefreshTokenRequest(refresh_token=user.refresh_token)))
    assert (blocked.code, blocked.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ACCOUNT_BLOCKED")
    # Unblocking does not bring the ended session back: log in again.
    await block(resources, user.user_id, "active")
    ended = await failure(refresh(auth_pb.RefreshTokenRequest(refresh_token=user.refresh_token)))
    assert (ended.code, ended.reason) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "INVALID_REFRESH_TOKEN",
    )


async def test_an_expired_session_is_listed_as_not_active(channel, resources) -> None:
    first = await register_user(channel)
    stub = auth_stub(channel)
    second = await stub.Login(auth_pb.LoginRequest(email=first.email, password=first.password))
    await sql(
        resources,
        "UPDATE sessions SET refresh_token_expires_at = now() - interval '1 second' "
        "WHERE session_id = CAST(:s AS uuid)",
        s=first.session_id,
    )
    metadata = (("authorization", f"Bearer {second.tokens.access_token}"),)
    active = await stub.ListSessions(auth_pb.ListSessionsRequest(), metadata=metadata)
    assert [s.session_id for s in active.sessions] == [second.tokens.session_id]
    every = await stub.ListSessions(
        auth_pb.ListSessionsRequest(include_inactive=True), metadata=metadata
    )
    states = {s.session_id: (s.is_active, s.current) for s in every.sessions}
    assert states == {first.session_id: (False, False), second.tokens.session_id: (True, True)}


# --- RechargeService.UpdateAutoPay: its documented refusals -----------------------------------


async def test_update_autopay_refuses_as_documented(channel, resources) -> None:
    user = await register_user(channel)
    plan_id = await make_plan(resources)
    withdrawn = await make_plan(resources, status="inactive")
    due = Timestamp()
    due.FromDatetime(datetime.now(UTC) + timedelta(days=7))
    stub = recharges(channel)

    async def create(status: int) -> pb.AutoPay:
        return await stub.CreateAutoPay(
            pb.CreateAutoPayRequest(
                request_id=rid(),
                autopay=pb.AutoPay(
                    plan_id=plan_id, tag=pb.AUTO_PAY_TAG_REGULAR, next_due_date=due, status=status
                ),
            ),
            metadata=user.metadata,
        )

    enabled = await create(pb.AUTO_PAY_STATUS_ENABLED)
    paused = await create(pb.AUTO_PAY_STATUS_DISABLED)  # "defaults to ENABLED": may be set

    def update(autopay: pb.AutoPay, *paths: str) -> Any:
        return stub.UpdateAutoPay(
            pb.UpdateAutoPayRequest(autopay=autopay, update_mask=FieldMask(paths=list(paths))),
            metadata=user.metadata,
        )

    enable = pb.AutoPay(autopay_id=paused.autopay_id, status=pb.AUTO_PAY_STATUS_ENABLED)
    twice = await failure(update(enable, "status"))
    assert (twice.code, twice.reason) == (grpc.StatusCode.ALREADY_EXISTS, "AUTOPAY_EXISTS")
    inactive = await failure(
        update(pb.AutoPay(autopay_id=enabled.autopay_id, plan_id=withdrawn), "plan_id")
    )
    assert (inactive.code, inactive.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "PLAN_INACTIVE",
    )
    missing = await failure(
        update(pb.AutoPay(autopay_id=enabled.autopay_id, plan_id=10**6), "plan_id")
    )
    assert missing.code == grpc.StatusCode.NOT_FOUND


# --- NotificationService.SendNotification: limits and "every active user" ------------------


async def test_send_notification_limits_and_broadcast_to_active_users_only(
    channel, resources
) -> None:
    admin = await create_admin(channel, resources)
    active = await register_user(channel)
    blocked = await register_user(channel)
    stub = notification_service_pb2_grpc.NotificationServiceStub(channel)
    kinds = await stub.ListNotificationTypes(
        note_pb.ListNotificationTypesRequest(), metadata=admin.metadata
    )
    type_id = {t.type_name: t.type_id for t in kinds.notification_types}["system"]
    groups = {t.recipient_type_name: t.recipient_type_id for t in kinds.recipient_types}

    def send(**fields: Any) -> Any:
        values: dict[str, Any] = {
            "request_id": rid(),
            "recipient_type_id": groups["all_users"],
            "description": "Maintenance tonight",
            "type_id": type_id,
        }
        values.update(fields)
        return stub.SendNotification(
            note_pb.SendNotificationRequest(**values), metadata=admin.metadata
        )

    too_long = await failure(send(description="x" * 2001))
    assert "description" in too_long.field_violations
    too_many = await failure(send(recipient_ids=list(range(1, 1002))))
    assert "recipient_ids" in too_many.field_violations
    assert (await send(description="x" * 2000, recipient_ids=[active.user_id])).recipient_count

    await block(resources, blocked.user_id)
    sent = await send()
    assert sent.recipient_count == 1
    rows = await count_rows(
        resources,
        "SELECT count(*) FROM notifications WHERE recipient_id = :u",
        u=blocked.user_id,
    )
    assert rows == 0
