"""WalletService through the real server: top-ups through every gateway outcome, the
gateway callback, idempotency, the ledger listing, ownership and bad input.

Every test that moves money ends with the ledger invariant: for each user,
wallet_balance = sum(success wallet credits) - sum(success wallet debits).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import insert, text

from gencharge.v1 import common_pb2, transaction_pb2, wallet_service_pb2_grpc
from gencharge.v1 import wallet_service_pb2 as pb
from server.audit.scope import AuditScope, current_scope
from server.auth.principal import Principal
from server.auth.scopes import PAYMENTS_CONFIRM, SCOPES
from server.core.config import Environment
from server.core.errors import Unavailable
from server.core.schema import referralrewards, transactions
from server.payments import signing
from server.payments.gateway import ChargeResult
from server.payments.sandbox import SANDBOX_WEBHOOK_SECRET, SandboxGateway
from server.payments.select import create_gateway
from server.wallet import domain, flows
from tests.helpers.auth import Actor, create_admin, create_service, register_user
from tests.helpers.clock import eventually
from tests.helpers.money import (
    checkout_request,
    confirm,
    failed_request,
    sandbox_of,
    webhook_request,
)
from tests.helpers.rpc import details_of

TXN = transaction_pb2


def stub(channel: grpc.aio.Channel) -> wallet_service_pb2_grpc.WalletServiceStub:
    return wallet_service_pb2_grpc.WalletServiceStub(channel)


def rid() -> str:
    return str(uuid.uuid4())


def inr(units_minor: int, currency: str = "INR") -> common_pb2.Money:
    return common_pb2.Money(units_minor=units_minor, currency_code=currency)


def upi(vpa: str = "someone@okbank") -> common_pb2.PaymentDetails:
    return common_pb2.PaymentDetails(upi=common_pb2.UpiPayment(vpa=vpa))


def card(value: str = "tok_visa_4242") -> common_pb2.PaymentDetails:
    return common_pb2.PaymentDetails(card=common_pb2.CardPayment(card_token=value))


def bank(code: str = "HDFC") -> common_pb2.PaymentDetails:
    return common_pb2.PaymentDetails(net_banking=common_pb2.NetBankingPayment(bank_code=code))


def top_up_request(
    amount_minor: int = 50_000,
    *,
    method: int = common_pb2.PAYMENT_METHOD_UPI,
    details: common_pb2.PaymentDetails | None = None,
    request_id: str | None = None,
) -> pb.TopUpRequest:
    return pb.TopUpRequest(
        request_id=request_id or rid(),
        amount=inr(amount_minor),
        payment_method=method,
        payment_details=details if details is not None else upi(),
    )


async def top_up(channel: grpc.aio.Channel, actor: Actor, request: pb.TopUpRequest) -> Any:
    return await stub(channel).TopUp(request, metadata=actor.metadata)


async def balance_minor(channel: grpc.aio.Channel, actor: Actor) -> int:
    wallet = await stub(channel).GetWallet(pb.GetWalletRequest(), metadata=actor.metadata)
    assert wallet.balance.currency_code == "INR"
    return wallet.balance.units_minor


async def expect_error(call: Any, code: grpc.StatusCode) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    details = details_of(caught.value)
    assert details.code == code, (details.code, details.message, details.reason)
    return details


async def count_rows(resources: Any, user_id: int) -> int:
    async with resources.db.read_only() as conn:
        result = await conn.execute(
            text("SELECT count(*) FROM transactions WHERE user_id = :u"), {"u": user_id}
        )
        return int(result.scalar_one())


async def assert_ledger_invariant(resources: Any) -> None:
    """For every user: balance = success wallet credits - success wallet debits, >= 0."""
    async with resources.db.read_only() as conn:
        rows = (
            await conn.execute(
                text(
                    """
                    SELECT u.user_id, u.wallet_balance,
                           COALESCE(SUM(CASE WHEN t.txn_type = 'credit' THEN t.amount
                                             WHEN t.txn_type = 'debit' THEN -t.amount END)
                                    FILTER (WHERE t.category = 'wallet'
                                              AND t.status = 'success'), 0) AS ledger
                    FROM users u LEFT JOIN transactions t ON t.user_id = u.user_id
                    GROUP BY u.user_id, u.wallet_balance
                    """
                )
            )
        ).all()
    for row in rows:
        assert row.wallet_balance >= 0, row
        assert row.wallet_balance == row.ledger, row


@pytest.fixture
async def service(channel: grpc.aio.Channel, resources: Any) -> Actor:
    return await create_service(channel, resources, [PAYMENTS_CONFIRM])


# --- the sandbox gateway --------------------------------------------------------------------


async def test_sandbox_outcomes_and_idempotency() -> None:
    gw = SandboxGateway()

    async def charge(method: str, key: str, value: str, amount: str = "10.00") -> ChargeResult:
        return await gw.charge(
            amount=Decimal(amount),
            currency="INR",
            method=method,
            details={key: value},
            reference=rid(),
        )

    assert (await charge("UPI", "vpa", "a@okbank")).status == "authorised"
    assert (await charge("UPI", "vpa", "decline@sandbox")).status == "declined"
    pending = await charge("UPI", "vpa", "pending@sandbox")
    assert pending.status == "pending" and pending.redirect_url
    assert (await charge("Card", "card_token", "tok_decline")).status == "declined"
    assert (await charge("Card", "card_token", "tok_pending")).status == "pending"
    assert (await charge("Card", "card_token", "tok_ok")).status == "authorised"
    assert (await charge("NetBanking", "bank_code", "DECLINE")).status == "declined"
    assert (await charge("NetBanking", "bank_code", "PENDING")).status == "pending"
    assert (await charge("NetBanking", "bank_code", "HDFC", "666.66")).status == "declined"
    ok = await charge("NetBanking", "bank_code", "HDFC")
    assert ok.status == "authorised" and ok.payment_id.startswith("sbx_")

    reference = rid()
    first = await gw.charge(
        amount=Decimal("5"),
        currency="INR",
        method="UPI",
        details={"vpa": "x@y"},
        reference=reference,
    )
    again = await gw.charge(
        amount=Decimal("5"),
        currency="INR",
        method="UPI",
        details={"vpa": "x@y"},
        reference=reference,
    )
    assert again == first


def test_create_gateway_refuses_sandbox_in_production(resources: Any) -> None:
    settings = resources.settings
    assert isinstance(create_gateway(settings), SandboxGateway)
    with pytest.raises(ValueError, match="production"):
        create_gateway(settings.model_copy(update={"environment": Environment.PRODUCTION}))
    with pytest.raises(ValueError, match="unknown"):
        create_gateway(settings.model_copy(update={"payment_gateway": "paypal"}))


class _BrokenGateway(SandboxGateway):
    async def charge(self, **kwargs: Any) -> ChargeResult:
        raise ConnectionError("gateway down")


async def test_gateway_failure_releases_the_key(channel: grpc.aio.Channel, resources: Any) -> None:
    user = await register_user(channel)
    who = Principal("user", str(user.user_id))
    order = domain.TopUpOrder(
        request_id=rid(),
        amount_minor=1_000,
        currency="INR",
        method="UPI",
        details_field="upi",
        details={"vpa": "someone@okbank"},
        fingerprint="f",
    )
    # The flow runs as TopUp would: inside the call's audit scope.
    scope = AuditScope(who.subject, "/gencharge.v1.WalletService/TopUp", rid(), None, True)
    token = current_scope.set(scope)
    try:
        with pytest.raises(Unavailable) as caught:
            await flows.top_up(resources.db, _BrokenGateway(), who, order)
        assert caught.value.reason == "GATEWAY_UNAVAILABLE"
        assert await count_rows(resources, user.user_id) == 0
        # The key was released: the same request_id succeeds once the gateway answers.
        result = await flows.top_up(resources.db, SandboxGateway(), who, order)
    finally:
        current_scope.reset(token)
    assert result.transaction.status == "success"
    assert await balance_minor(channel, user) == 1_000
    await assert_ledger_invariant(resources)


# --- GetWallet ----------------------------------------------------------------------------


async def test_get_wallet(channel: grpc.aio.Channel, resources: Any, service: Actor) -> None:
    user = await register_user(channel)
    wallet = await stub(channel).GetWallet(pb.GetWalletRequest(), metadata=user.metadata)
    assert wallet.user_id == user.user_id
    assert wallet.balance == inr(0)
    assert wallet.HasField("updated_at")

    admin = await create_admin(channel, resources)
    for who, reason in ((admin, "USER_ONLY"), (service, "SERVICE_NOT_ALLOWED")):
        details = await expect_error(
            stub(channel).GetWallet(pb.GetWalletRequest(), metadata=who.metadata),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        assert details.reason == reason
    await expect_error(
        stub(channel).GetWallet(pb.GetWalletRequest()), grpc.StatusCode.UNAUTHENTICATED
    )


# --- TopUp: each gateway outcome --------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "details"),
    [
        (common_pb2.PAYMENT_METHOD_UPI, upi()),
        (common_pb2.PAYMENT_METHOD_CARD, card()),
        (common_pb2.PAYMENT_METHOD_NET_BANKING, bank()),
    ],
)
async def test_top_up_authorised_credits_once(
    channel: grpc.aio.Channel, resources: Any, method: int, details: Any
) -> None:
    user = await register_user(channel)
    first = await top_up(channel, user, top_up_request(12_345, method=method, details=details))
    txn = first.transaction
    assert not first.HasField("pending_payment")
    assert txn.status == TXN.TRANSACTION_STATUS_SUCCESS
    assert txn.category == TXN.TRANSACTION_CATEGORY_WALLET
    assert txn.txn_type == TXN.TRANSACTION_TYPE_CREDIT
    assert txn.source == TXN.TRANSACTION_SOURCE_WALLET_TOPUP
    assert txn.payment_method == method
    assert txn.user_id == user.user_id
    assert txn.amount == inr(12_345)
    assert txn.balance_after == inr(12_345)
    assert txn.payment_transaction_id.startswith("sbx_")
    assert txn.HasField("created_at")

    second = await top_up(channel, user, top_up_request(100, method=method, details=details))
    assert second.transaction.balance_after == inr(12_445)
    assert await balance_minor(channel, user) == 12_445
    assert await count_rows(resources, user.user_id) == 2
    await assert_ledger_invariant(resources)


@pytest.mark.parametrize(
    ("method", "details", "amount"),
    [
        (common_pb2.PAYMENT_METHOD_UPI, upi("decline@sandbox"), 1_000),
        (common_pb2.PAYMENT_METHOD_CARD, card("tok_decline"), 1_000),
        (common_pb2.PAYMENT_METHOD_NET_BANKING, bank("DECLINE"), 1_000),
        (common_pb2.PAYMENT_METHOD_UPI, upi(), 66_666),
    ],
)
async def test_top_up_declined_leaves_nothing(
    channel: grpc.aio.Channel, resources: Any, method: int, details: Any, amount: int
) -> None:
    user = await register_user(channel)
    request = top_up_request(amount, method=method, details=details)
    for _ in range(2):  # the key was released: the same request runs (and declines) again
        error = await expect_error(
            top_up(channel, user, request), grpc.StatusCode.FAILED_PRECONDITION
        )
        assert error.reason == "PAYMENT_DECLINED"
    assert await count_rows(resources, user.user_id) == 0
    assert await balance_minor(channel, user) == 0
    async with resources.db.read_only() as conn:
        keys = await conn.execute(
            text("SELECT count(*) FROM idempotency_keys WHERE request_id = :r"),
            {"r": request.request_id},
        )
        assert keys.scalar_one() == 0

    # The same request_id may now carry a different, payable request.
    retry = top_up_request(5_000, request_id=request.request_id)
    reply = await top_up(channel, user, retry)
    assert reply.transaction.status == TXN.TRANSACTION_STATUS_SUCCESS
    assert await balance_minor(channel, user) == 5_000
    await assert_ledger_invariant(resources)


async def test_top_up_pending_then_confirm_success(
    channel: grpc.aio.Channel, resources: Any, service: Actor, grpc_server: Any
) -> None:
    gateway = sandbox_of(grpc_server)
    user = await register_user(channel)
    await top_up(channel, user, top_up_request(1_000))  # an existing balance of Rs 10
    pending_request = top_up_request(20_000, details=upi("pending@sandbox"))
    reply = await top_up(channel, user, pending_request)
    txn = reply.transaction
    assert txn.status == TXN.TRANSACTION_STATUS_PENDING
    assert not txn.HasField("balance_after")
    assert reply.pending_payment.redirect_url.endswith(txn.payment_transaction_id)
    assert reply.pending_payment.expires_at.ToDatetime(tzinfo=UTC) > datetime.now(UTC)
    assert await balance_minor(channel, user) == 1_000

    # The user pays at the gateway; the app's signed checkout result is forwarded.
    paid = checkout_request(gateway, txn.payment_transaction_id)
    settled = await confirm(channel, service, paid)
    assert settled.txn_id == txn.txn_id
    assert settled.status == TXN.TRANSACTION_STATUS_SUCCESS
    assert settled.balance_after == inr(21_000)
    assert await balance_minor(channel, user) == 21_000

    # Repeats: the same request, the same callback under a new key, the gateway's
    # payment.captured webhook, with the deprecated fields agreeing: the same row, no
    # new credit.
    same_key = await confirm(channel, service, paid)
    new_key = pb.ConfirmPaymentRequest()
    new_key.CopyFrom(paid)
    new_key.request_id = rid()
    again = await confirm(channel, service, new_key)
    body, signature = gateway.webhook("payment.captured", txn.payment_transaction_id)
    captured = webhook_request(body, signature)
    captured.txn_id = txn.txn_id
    captured.payment_transaction_id = txn.payment_transaction_id
    captured.outcome = pb.PAYMENT_OUTCOME_SUCCESS
    by_webhook = await confirm(channel, service, captured)
    assert same_key == settled == again == by_webhook
    assert await balance_minor(channel, user) == 21_000

    # A genuine failure report now conflicts.
    body, signature = gateway.webhook("payment.failed", txn.payment_transaction_id)
    error = await expect_error(
        confirm(channel, service, webhook_request(body, signature)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert error.reason == "TRANSACTION_ALREADY_SETTLED"
    assert error.metadata["status"] == "success"
    # The same key with a different request.
    error = await expect_error(
        confirm(channel, service, webhook_request(body, signature, request_id=paid.request_id)),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert error.reason == "IDEMPOTENCY_KEY_REUSED"

    # Replaying the TopUp returns the (now settled) transaction, no pending payment.
    replayed = await top_up(channel, user, pending_request)
    assert replayed.transaction == settled
    assert not replayed.HasField("pending_payment")
    assert await count_rows(resources, user.user_id) == 2
    assert await balance_minor(channel, user) == 21_000
    await assert_ledger_invariant(resources)


async def test_top_up_pending_then_confirm_failed(
    channel: grpc.aio.Channel, resources: Any, service: Actor, grpc_server: Any
) -> None:
    gateway = sandbox_of(grpc_server)
    user = await register_user(channel)
    reply = await top_up(
        channel,
        user,
        top_up_request(7_000, method=common_pb2.PAYMENT_METHOD_CARD, details=card("tok_pending")),
    )
    txn = reply.transaction
    failure = failed_request(gateway, txn.payment_transaction_id, reason="user abandoned")
    failed = await confirm(channel, service, failure)
    assert failed.status == TXN.TRANSACTION_STATUS_FAILED
    assert not failed.HasField("balance_after")
    again = pb.ConfirmPaymentRequest()
    again.CopyFrom(failure)
    again.request_id = rid()
    assert await confirm(channel, service, again) == failed
    assert await balance_minor(channel, user) == 0
    await assert_ledger_invariant(resources)


async def test_confirm_payment_errors(
    channel: grpc.aio.Channel, resources: Any, service: Actor, grpc_server: Any
) -> None:
    gateway = sandbox_of(grpc_server)
    user = await register_user(channel)
    pending = (
        await top_up(channel, user, top_up_request(3_000, details=upi("pending@sandbox")))
    ).transaction
    paid = (await top_up(channel, user, top_up_request(3_000))).transaction

    # The deprecated fields must name the callback's payment and outcome.
    body, signature = gateway.webhook("payment.captured", pending.payment_transaction_id)
    for field, value, code, reason in (
        ("txn_id", paid.txn_id, grpc.StatusCode.FAILED_PRECONDITION, "PAYMENT_ID_MISMATCH"),
        (
            "payment_transaction_id",
            paid.payment_transaction_id,
            grpc.StatusCode.FAILED_PRECONDITION,
            "PAYMENT_ID_MISMATCH",
        ),
        (
            "outcome",
            pb.PAYMENT_OUTCOME_FAILED,
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
        ),
    ):
        request = webhook_request(body, signature)
        setattr(request, field, value)
        error = await expect_error(confirm(channel, service, request), code)
        assert error.reason == reason, field
    # A payment that did not go through the gateway.
    async with resources.db.transaction() as conn:
        await conn.execute(
            text(
                "UPDATE transactions SET payment_method = 'Wallet', payment_transaction_id = 'w1'"
                " WHERE txn_id = :t"
            ),
            {"t": paid.txn_id},
        )
    error = await expect_error(
        confirm(
            channel,
            service,
            webhook_request(
                *_signed_webhook("payment.captured", order_id="w1", amount_minor=3_000)
            ),
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert error.reason == "NOT_AN_EXTERNAL_PAYMENT"

    # Input checks: all violations together; no callback is CALLBACK_UNSIGNED.
    error = await expect_error(
        stub(channel).ConfirmPayment(
            pb.ConfirmPaymentRequest(request_id="bad", txn_id=-1, outcome=7),
            metadata=service.metadata,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert set(error.field_violations) == {"request_id", "txn_id", "outcome", "callback"}
    assert error.reason == "CALLBACK_UNSIGNED"

    # Only service accounts may call it.
    admin = await create_admin(channel, resources)
    for who in (user, admin):
        await expect_error(
            confirm(channel, who, checkout_request(gateway, pending.payment_transaction_id)),
            grpc.StatusCode.PERMISSION_DENIED,
        )
    assert await balance_minor(channel, user) == 3_000
    await assert_ledger_invariant(resources)


def _signed_webhook(
    event: str, *, order_id: str, amount_minor: int, currency: str = "INR"
) -> tuple[bytes, str]:
    """A webhook the sandbox's published secret signs, with any content."""
    body = signing.webhook_body(
        event,
        order_id=order_id,
        payment_id="sbxpay_test",
        amount_minor=amount_minor,
        currency=currency,
        status="captured",
    )
    return body, signing.sign(SANDBOX_WEBHOOK_SECRET, body)


async def test_concurrent_confirmations_credit_once(
    channel: grpc.aio.Channel, resources: Any, service: Actor, grpc_server: Any
) -> None:
    user = await register_user(channel)
    txn = (
        await top_up(
            channel,
            user,
            top_up_request(
                4_200, details=bank("PENDING"), method=common_pb2.PAYMENT_METHOD_NET_BANKING
            ),
        )
    ).transaction
    paid = checkout_request(sandbox_of(grpc_server), txn.payment_transaction_id)

    def delivery() -> pb.ConfirmPaymentRequest:  # the same callback, under its own key
        request = pb.ConfirmPaymentRequest()
        request.CopyFrom(paid)
        request.request_id = rid()
        return request

    replies = await asyncio.gather(*(confirm(channel, service, delivery()) for _ in range(10)))
    assert {r.SerializeToString(deterministic=True) for r in replies} == {
        replies[0].SerializeToString(deterministic=True)
    }
    assert replies[0].balance_after == inr(4_200)
    assert await balance_minor(channel, user) == 4_200
    await assert_ledger_invariant(resources)


# --- TopUp idempotency --------------------------------------------------------------------------


async def test_top_up_replay_and_mismatch(channel: grpc.aio.Channel, resources: Any) -> None:
    user = await register_user(channel)
    request = top_up_request(2_500)
    first = await top_up(channel, user, request)
    replay = await top_up(channel, user, request)
    assert replay == first
    assert await balance_minor(channel, user) == 2_500

    changed = pb.TopUpRequest()
    changed.CopyFrom(request)
    changed.amount.units_minor = 2_600
    error = await expect_error(top_up(channel, user, changed), grpc.StatusCode.ALREADY_EXISTS)
    assert error.reason == "IDEMPOTENCY_KEY_REUSED"

    # Keys are per caller: another user may use the same request_id.
    other = await register_user(channel)
    theirs = await top_up(channel, other, request)
    assert theirs.transaction.txn_id != first.transaction.txn_id

    # A pending top-up replays with its pending payment.
    pending_request = top_up_request(1_000, details=upi("pending@sandbox"))
    pending = await top_up(channel, user, pending_request)
    assert await top_up(channel, user, pending_request) == pending
    assert await balance_minor(channel, user) == 2_500
    await assert_ledger_invariant(resources)


async def test_concurrent_identical_top_ups_credit_once(
    channel: grpc.aio.Channel, resources: Any
) -> None:
    user = await register_user(channel)
    request = top_up_request(9_900)
    results = await asyncio.gather(
        *(top_up(channel, user, request) for _ in range(10)), return_exceptions=True
    )
    successes = [r for r in results if isinstance(r, pb.TopUpResponse)]
    failures = [r for r in results if not isinstance(r, pb.TopUpResponse)]
    assert successes
    assert len({r.transaction.txn_id for r in successes}) == 1
    for failure in failures:
        assert isinstance(failure, grpc.aio.AioRpcError), failure
        details = details_of(failure)
        assert details.code == grpc.StatusCode.FAILED_PRECONDITION
        assert details.reason == "IN_PROGRESS"
    assert await count_rows(resources, user.user_id) == 1
    assert await balance_minor(channel, user) == 9_900
    # Once finished, every retry gets the original response.
    assert (await top_up(channel, user, request)) == successes[0]
    await assert_ledger_invariant(resources)


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        (top_up_request(0), {"amount.units_minor"}),
        (top_up_request(-100), {"amount.units_minor"}),
        (top_up_request(99), {"amount.units_minor"}),
        (top_up_request(10_000_001), {"amount.units_minor"}),
        (
            pb.TopUpRequest(
                request_id=rid(),
                amount=inr(1_000, "USD"),
                payment_method=common_pb2.PAYMENT_METHOD_UPI,
                payment_details=upi(),
            ),
            {"amount.currency_code"},
        ),
        (
            pb.TopUpRequest(
                request_id=rid(),
                payment_method=common_pb2.PAYMENT_METHOD_UPI,
                payment_details=upi(),
            ),
            {"amount"},
        ),
        (top_up_request(request_id="short"), {"request_id"}),
        (top_up_request(request_id="has spaces in it"), {"request_id"}),
        (top_up_request(method=common_pb2.PAYMENT_METHOD_UNSPECIFIED), {"payment_method"}),
        (top_up_request(method=common_pb2.PAYMENT_METHOD_WALLET), {"payment_method"}),
        (top_up_request(method=42), {"payment_method"}),
        (
            top_up_request(details=common_pb2.PaymentDetails()),
            {"payment_details"},
        ),
        (top_up_request(details=card()), {"payment_details"}),
        (top_up_request(details=upi("")), {"payment_details.upi.vpa"}),
        (top_up_request(details=upi("not-a-vpa")), {"payment_details.upi.vpa"}),
        (
            top_up_request(method=common_pb2.PAYMENT_METHOD_CARD, details=card("")),
            {"payment_details.card.card_token"},
        ),
        (
            top_up_request(method=common_pb2.PAYMENT_METHOD_NET_BANKING, details=bank("hdfc bank")),
            {"payment_details.net_banking.bank_code"},
        ),
        (
            pb.TopUpRequest(request_id="x", amount=inr(0, "EUR")),
            {"request_id", "amount.units_minor", "amount.currency_code", "payment_method"},
        ),
    ],
)
async def test_top_up_bad_input(
    channel: grpc.aio.Channel, resources: Any, request_: pb.TopUpRequest, fields: set[str]
) -> None:
    user = await register_user(channel)
    error = await expect_error(top_up(channel, user, request_), grpc.StatusCode.INVALID_ARGUMENT)
    assert set(error.field_violations) == fields, error.field_violations
    assert await count_rows(resources, user.user_id) == 0


async def test_top_up_only_for_users(
    channel: grpc.aio.Channel, resources: Any, service: Actor
) -> None:
    admin = await create_admin(channel, resources)
    for who, reason in ((admin, "USER_ONLY"), (service, "SERVICE_NOT_ALLOWED")):
        error = await expect_error(
            top_up(channel, who, top_up_request()), grpc.StatusCode.PERMISSION_DENIED
        )
        assert error.reason == reason


# --- ListTransactions / GetTransaction ------------------------------------------------------


async def _insert_debit(resources: Any, user_id: int, rupees: str) -> None:
    async with resources.db.transaction() as conn:
        await conn.execute(
            insert(transactions).values(
                user_id=user_id,
                category="wallet",
                txn_type="debit",
                amount=Decimal(rupees),
                source="recharge",
                status="success",
                payment_method="Wallet",
            )
        )


def _ts(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


async def test_list_transactions(channel: grpc.aio.Channel, resources: Any) -> None:
    user = await register_user(channel)
    other = await register_user(channel)
    await top_up(channel, other, top_up_request(1_000))
    ids = []
    for amount in (1_000, 2_000, 3_000, 4_000):
        ids.append((await top_up(channel, user, top_up_request(amount))).transaction.txn_id)
    pending = await top_up(channel, user, top_up_request(500, details=upi("pending@sandbox")))
    ids.append(pending.transaction.txn_id)
    await _insert_debit(resources, user.user_id, "15.00")
    list_ = stub(channel).ListTransactions

    everything = await list_(pb.ListTransactionsRequest(), metadata=user.metadata)
    rows = everything.transactions
    assert len(rows) == 6 and not everything.next_page_token
    assert all(r.user_id == user.user_id for r in rows)
    keys = [(r.created_at.ToDatetime(), r.txn_id) for r in rows]
    assert keys == sorted(keys, reverse=True)  # newest first
    assert rows[0].txn_type == TXN.TRANSACTION_TYPE_DEBIT
    assert rows[0].balance_after == inr(10_000 - 1_500)

    # Pagination: pages of 2, no overlap, same order as one page.
    seen: list[int] = []
    token = ""
    while True:
        page = await list_(
            pb.ListTransactionsRequest(page_size=2, page_token=token), metadata=user.metadata
        )
        assert len(page.transactions) <= 2
        seen.extend(t.txn_id for t in page.transactions)
        token = page.next_page_token
        if not token:
            break
    assert seen == [r.txn_id for r in rows]

    # Filters.
    async def ids_for(**filters: Any) -> list[int]:
        reply = await list_(pb.ListTransactionsRequest(**filters), metadata=user.metadata)
        return [t.txn_id for t in reply.transactions]

    assert await ids_for(status=TXN.TRANSACTION_STATUS_PENDING) == [pending.transaction.txn_id]
    assert len(await ids_for(txn_type=TXN.TRANSACTION_TYPE_DEBIT)) == 1
    assert len(await ids_for(txn_type=TXN.TRANSACTION_TYPE_CREDIT)) == 5
    assert len(await ids_for(source=TXN.TRANSACTION_SOURCE_WALLET_TOPUP)) == 5
    assert len(await ids_for(source=TXN.TRANSACTION_SOURCE_RECHARGE)) == 1
    assert await ids_for(source=TXN.TRANSACTION_SOURCE_CASHBACK) == []
    assert len(await ids_for(category=TXN.TRANSACTION_CATEGORY_WALLET)) == 6
    assert await ids_for(category=TXN.TRANSACTION_CATEGORY_SERVICE) == []
    assert (
        len(
            await ids_for(
                category=TXN.TRANSACTION_CATEGORY_WALLET,
                status=TXN.TRANSACTION_STATUS_SUCCESS,
                txn_type=TXN.TRANSACTION_TYPE_CREDIT,
            )
        )
        == 4
    )
    now = datetime.now(UTC)
    assert len(await ids_for(created_after=_ts(now - timedelta(hours=1)))) == 6
    assert await ids_for(created_after=_ts(now + timedelta(hours=1))) == []
    assert await ids_for(created_before=_ts(now - timedelta(hours=1))) == []
    middle = rows[2].created_at
    after_middle = await ids_for(created_after=middle)
    assert after_middle == [r.txn_id for r in rows[:3]]  # created_after is inclusive

    # Bad requests.
    first_page = await list_(pb.ListTransactionsRequest(page_size=2), metadata=user.metadata)
    error = await expect_error(
        list_(
            pb.ListTransactionsRequest(
                page_size=2,
                page_token=first_page.next_page_token,
                status=TXN.TRANSACTION_STATUS_SUCCESS,
            ),
            metadata=user.metadata,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "page_token" in error.field_violations
    for bad in (
        pb.ListTransactionsRequest(page_token="garbage!"),
        pb.ListTransactionsRequest(page_size=-1),
        pb.ListTransactionsRequest(status=99),
        pb.ListTransactionsRequest(
            created_after=_ts(now), created_before=_ts(now - timedelta(days=1))
        ),
    ):
        await expect_error(list_(bad, metadata=user.metadata), grpc.StatusCode.INVALID_ARGUMENT)
    # Another user's token is not valid for this user.
    other_page = await list_(pb.ListTransactionsRequest(page_size=1), metadata=user.metadata)
    error = await expect_error(
        list_(
            pb.ListTransactionsRequest(page_size=1, page_token=other_page.next_page_token),
            metadata=other.metadata,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "page_token" in error.field_violations
    await assert_ledger_invariant(resources)


async def test_ownership(channel: grpc.aio.Channel, resources: Any) -> None:
    alice = await register_user(channel)
    bob = await register_user(channel)
    alice_txn = (await top_up(channel, alice, top_up_request(1_000))).transaction
    bob_txn = (await top_up(channel, bob, top_up_request(2_000))).transaction

    got = await stub(channel).GetTransaction(
        pb.GetTransactionRequest(txn_id=alice_txn.txn_id), metadata=alice.metadata
    )
    assert got == alice_txn
    error = await expect_error(
        stub(channel).GetTransaction(
            pb.GetTransactionRequest(txn_id=alice_txn.txn_id), metadata=bob.metadata
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    missing = await expect_error(
        stub(channel).GetTransaction(
            pb.GetTransactionRequest(txn_id=999_999), metadata=bob.metadata
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert error.reason == missing.reason  # indistinguishable from a missing row
    error = await expect_error(
        stub(channel).GetTransaction(pb.GetTransactionRequest(txn_id=0), metadata=bob.metadata),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "txn_id" in error.field_violations

    listed = await stub(channel).ListTransactions(
        pb.ListTransactionsRequest(), metadata=bob.metadata
    )
    assert [t.txn_id for t in listed.transactions] == [bob_txn.txn_id]

    # Admin and Support (Transactions/read) may read any transaction; they list none.
    for role in ("Admin", "Support"):
        staff = await create_admin(channel, resources, role_name=role)
        seen = await stub(channel).GetTransaction(
            pb.GetTransactionRequest(txn_id=alice_txn.txn_id), metadata=staff.metadata
        )
        assert seen == alice_txn
        own = await stub(channel).ListTransactions(
            pb.ListTransactionsRequest(), metadata=staff.metadata
        )
        assert list(own.transactions) == []
    # Service accounts may not read the ledger, whatever their scopes.
    service = await create_service(channel, resources, list(SCOPES))
    refused = await expect_error(
        stub(channel).GetTransaction(
            pb.GetTransactionRequest(txn_id=alice_txn.txn_id), metadata=service.metadata
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert refused.reason == "SERVICE_NOT_ALLOWED"
    await assert_ledger_invariant(resources)


# --- ListReferralRewards --------------------------------------------------------------------------


async def test_list_referral_rewards(channel: grpc.aio.Channel, resources: Any) -> None:
    referrer = await register_user(channel)
    others = [await register_user(channel) for _ in range(3)]
    stranger = await register_user(channel)
    async with resources.db.transaction() as conn:
        for index, referred in enumerate(others):
            await conn.execute(
                insert(referralrewards).values(
                    referrer_id=referrer.user_id,
                    referred_id=referred.user_id,
                    reward_amount=Decimal("50.00") + index,
                )
            )
        await conn.execute(
            text("UPDATE referralrewards SET status = 'paid' WHERE referred_id = :r"),
            {"r": others[0].user_id},
        )
    list_ = stub(channel).ListReferralRewards
    everything = await list_(pb.ListReferralRewardsRequest(), metadata=referrer.metadata)
    rewards = everything.referral_rewards
    assert [r.referred_id for r in rewards] == [u.user_id for u in reversed(others)]
    assert rewards[-1].reward_amount == inr(5_000)
    assert rewards[-1].status == pb.REFERRAL_REWARD_STATUS_PAID
    assert {r.status for r in rewards[:2]} == {pb.REFERRAL_REWARD_STATUS_EARNED}

    paged: list[int] = []
    token = ""
    while True:
        page = await list_(
            pb.ListReferralRewardsRequest(page_size=1, page_token=token),
            metadata=referrer.metadata,
        )
        paged.extend(r.reward_id for r in page.referral_rewards)
        token = page.next_page_token
        if not token:
            break
    assert paged == [r.reward_id for r in rewards]

    paid = await list_(
        pb.ListReferralRewardsRequest(status=pb.REFERRAL_REWARD_STATUS_PAID),
        metadata=referrer.metadata,
    )
    assert [r.referred_id for r in paid.referral_rewards] == [others[0].user_id]
    none = await list_(pb.ListReferralRewardsRequest(), metadata=stranger.metadata)
    assert list(none.referral_rewards) == []
    await expect_error(
        list_(pb.ListReferralRewardsRequest(page_token="nope"), metadata=referrer.metadata),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


# --- audit -----------------------------------------------------------------------------


async def test_money_changes_are_audited(
    channel: grpc.aio.Channel, resources: Any, service: Actor, grpc_server: Any
) -> None:
    user = await register_user(channel)
    txn = (
        await top_up(channel, user, top_up_request(1_000, details=upi("pending@sandbox")))
    ).transaction
    await confirm(
        channel, service, checkout_request(sandbox_of(grpc_server), txn.payment_transaction_id)
    )
    expected = {
        "/gencharge.v1.WalletService/TopUp": "INSERT",
        "/gencharge.v1.WalletService/ConfirmPayment": "UPDATE",
    }
    for rpc, action in expected.items():

        async def shipped(rpc: str = rpc) -> bool:  # the deadline only catches a hang
            return bool(await resources.mongo_db["AuditLog"].find_one({"rpc": rpc}))

        await eventually(shipped, every=0.1)
        await asyncio.sleep(0.3)  # would a duplicate follow?
        docs = await resources.mongo_db["AuditLog"].find({"rpc": rpc}).to_list(None)
        assert len(docs) == 1, (rpc, docs)
        assert (docs[0]["table_name"], docs[0]["action_type"]) == ("Transactions", action)
