"""Typed errors, each provoked for real through the server: every reason class the SDK
names, the code classes they fall back to, field violations and the request id."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from gencharge_client import (
    AccountBlocked,
    AsyncClient,
    DeadlineExceeded,
    FailedPrecondition,
    GenChargeError,
    IdempotencyKeyReused,
    InProgress,
    InsufficientFunds,
    InvalidArgument,
    InvalidCredentials,
    InvalidRefreshToken,
    InvalidToken,
    MissingScope,
    NotFound,
    PaymentDeclined,
    PermissionDenied,
    PlanInactive,
    PriceChanged,
    RateLimited,
    ResourceExhausted,
    RetryPolicy,
    ServiceAccountCredentials,
    SessionCredentials,
    SessionEnded,
    StaticTokenCredentials,
    Unauthenticated,
    to_money,
)
from gencharge_client.v1 import admin_service_pb2 as admin_pb
from gencharge_client.v1 import auth_service_pb2 as auth_pb
from gencharge_client.v1 import recharge_service_pb2 as recharge_pb
from sqlalchemy import text

from server.auth.scopes import RECHARGES_READ
from tests.clients.python.support import upi
from tests.helpers.auth import PASSWORD, create_admin, create_service, register_user
from tests.helpers.money import fund, make_plan
from tests.recovery.test_payment_recovery import fail_next_recording


async def customer(client: AsyncClient, channel: Any, resources: Any, rupees: str = "0") -> Any:
    """A registered customer (wallet funded with ``rupees``) and a client acting as them."""
    user = await register_user(channel)
    if rupees != "0":
        await fund(resources, user.user_id, rupees)
    session = await client.login(email=user.email, password=PASSWORD)
    return user, client.with_credentials(session)


async def test_money_reasons(client: AsyncClient, channel: Any, resources: Any) -> None:
    _, poor = await customer(client, channel, resources)
    _, rich = await customer(client, channel, resources, "100")
    plan_id = await make_plan(resources, price="10.00")
    inactive = await make_plan(resources, status="inactive")

    with pytest.raises(InsufficientFunds) as no_money:
        await poor.recharge.recharge(recharge_pb.RechargeRequest(plan_id=plan_id))
    error = no_money.value
    assert isinstance(error, FailedPrecondition) and isinstance(error, GenChargeError)
    assert error.reason == "INSUFFICIENT_FUNDS" and error.domain == "gencharge.v1"
    assert uuid.UUID(error.request_id)  # the id the SDK gave this call
    assert error.server_request_id

    with pytest.raises(PriceChanged):
        await rich.recharge.recharge(
            recharge_pb.RechargeRequest(plan_id=plan_id, expected_amount=to_money("9.99"))
        )
    with pytest.raises(PlanInactive):
        await rich.recharge.recharge(recharge_pb.RechargeRequest(plan_id=inactive))

    key = str(uuid.uuid4())
    done = await rich.recharge.recharge(
        recharge_pb.RechargeRequest(request_id=key, plan_id=plan_id)
    )
    with pytest.raises(IdempotencyKeyReused) as reused:
        await rich.recharge.recharge(
            recharge_pb.RechargeRequest(request_id=key, plan_id=plan_id, phone_number="9999900001")
        )
    assert reused.value.request_id == key
    # The same key and request is no error: the original answer.
    again = await rich.recharge.recharge(
        recharge_pb.RechargeRequest(request_id=key, plan_id=plan_id)
    )
    assert again.transaction.txn_id == done.transaction.txn_id

    with pytest.raises(PaymentDeclined):
        await rich.recharge.recharge(
            recharge_pb.RechargeRequest(plan_id=plan_id, **upi("decline@sandbox"))
        )


async def test_in_progress_after_retrying_a_charge_still_being_recorded(
    client: AsyncClient, channel: Any, resources: Any
) -> None:
    user, me = await customer(client, channel, resources)
    plan_id = await make_plan(resources, price="79.00")
    await fail_next_recording(resources)
    # Attempt 1: charged, not recorded (UNAVAILABLE PAYMENT_NOT_RECORDED); the SDK retries
    # with the same request_id and hears IN_PROGRESS until its attempts run out.
    with pytest.raises(InProgress) as waiting:
        await me.recharge.recharge(recharge_pb.RechargeRequest(plan_id=plan_id, **upi("asha@ok")))
    request_id = waiting.value.request_id
    assert uuid.UUID(request_id)
    async with resources.db.read_only() as conn:
        attempts = (
            await conn.execute(
                text("SELECT count(*) FROM payment_attempts WHERE user_id = :u"),
                {"u": user.user_id},
            )
        ).scalar_one()
        keyed = (
            await conn.execute(
                text("SELECT count(*) FROM payment_attempts WHERE request_id = :r"),
                {"r": request_id},
            )
        ).scalar_one()
    assert attempts == keyed == 1  # one charge attempt: every retry carried the same id


async def test_auth_reasons(client: AsyncClient, channel: Any, resources: Any) -> None:
    user = await register_user(channel)
    with pytest.raises(InvalidCredentials) as wrong:
        await client.login(email=user.email, password="not the passphrase 42")
    assert isinstance(wrong.value, Unauthenticated)

    with pytest.raises(InvalidToken) as garbage:
        await client.with_credentials(StaticTokenCredentials("not.a.jwt")).auth.get_me()
    assert type(garbage.value) is InvalidToken and garbage.value.metadata["cause"] == "malformed"
    with pytest.raises(InvalidRefreshToken):
        await client.auth.refresh_token(auth_pb.RefreshTokenRequest(refresh_token="rt_forged"))

    login = await client.auth.login(auth_pb.LoginRequest(email=user.email, password=PASSWORD))
    me = client.with_credentials(SessionCredentials(login.tokens))
    await me.auth.logout(auth_pb.LogoutRequest())
    with pytest.raises(SessionEnded):
        await me.auth.get_me()

    admin = await create_admin(channel, resources)
    staff = client.with_credentials(StaticTokenCredentials(admin.access_token))
    await staff.admin.block_user(admin_pb.BlockUserRequest(user_id=user.user_id, reason="test"))
    with pytest.raises(AccountBlocked) as blocked:
        await client.login(email=user.email, password=PASSWORD)
    assert isinstance(blocked.value, PermissionDenied)


async def test_rate_limited_carries_retry_after(client: AsyncClient, channel: Any) -> None:
    user = await register_user(channel)
    limited: RateLimited | None = None
    for _ in range(10):
        try:
            await client.login(email=user.email, password="wrong passphrase again 7")
        except InvalidCredentials:
            continue
        except RateLimited as exc:
            limited = exc
            break
    assert limited is not None, "never rate limited"
    assert isinstance(limited, ResourceExhausted)
    assert limited.reason == "TOO_MANY_ATTEMPTS"
    assert limited.retry_after is not None and limited.retry_after > 0
    assert limited.retry_after == float(limited.metadata["retry_after_seconds"])


async def test_scopes_arguments_and_missing_rows(
    client: AsyncClient, channel: Any, resources: Any
) -> None:
    plan_id = await make_plan(resources, price="10.00")
    service = await create_service(channel, resources, [RECHARGES_READ])
    partner = client.with_credentials(ServiceAccountCredentials(service.email, service.password))
    with pytest.raises(MissingScope) as scope:
        await partner.recharge.quote_recharge(
            recharge_pb.QuoteRechargeRequest(plan_id=plan_id, user_id=1)
        )
    assert scope.value.metadata["scope"] == "recharges.write"
    with pytest.raises(NotFound):
        await partner.recharge.get_recharge(recharge_pb.GetRechargeRequest(txn_id=987654))

    user, me = await customer(client, channel, resources, "50")
    with pytest.raises(InvalidArgument) as bad:
        await me.recharge.recharge(recharge_pb.RechargeRequest(plan_id=plan_id, phone_number="12"))
    assert "phone_number" in bad.value.violations_by_field()
    assert bad.value.field_violations[0].description
    # An unknown reason falls back to its code's class.
    with pytest.raises(PermissionDenied) as other:
        await me.recharge.quote_recharge(
            recharge_pb.QuoteRechargeRequest(plan_id=plan_id, user_id=user.user_id + 1)
        )
    assert type(other.value) is PermissionDenied and other.value.reason == "NOT_OWNER"


async def test_a_deadline_too_short_for_any_attempt(client: AsyncClient) -> None:
    with pytest.raises(DeadlineExceeded) as late:
        await client.plan.list_plans(timeout=1e-6, retry=RetryPolicy(max_attempts=2))
    assert late.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
