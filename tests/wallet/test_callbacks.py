"""ConfirmPayment believes only the gateway: callbacks through the real server.

Every callback here is what the test server's sandbox gateway (or its published
secrets) signs, forwarded as a payments edge service would. Unsigned, forged, re-encoded
or mismatched callbacks change nothing; genuine ones settle once, however often they are
delivered.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from gencharge.v1 import common_pb2, transaction_pb2, wallet_service_pb2_grpc
from gencharge.v1 import wallet_service_pb2 as pb
from server.audit.scope import AuditScope, current_scope
from server.auth.principal import Principal
from server.auth.scopes import PAYMENTS_CONFIRM
from server.core.errors import Unavailable
from server.payments import signing
from server.payments.gateway import Callback, CheckoutCallback, GatewayError, VerifiedPayment
from server.payments.sandbox import SANDBOX_KEY_SECRET, SANDBOX_WEBHOOK_SECRET, SandboxGateway
from server.wallet import domain, flows
from tests.helpers.auth import Actor, create_service, register_user
from tests.helpers.clock import eventually
from tests.helpers.money import (
    assert_ledger_balances,
    balance,
    checkout_request,
    confirm,
    failed_request,
    sandbox_of,
    webhook_request,
)
from tests.helpers.rpc import ErrorDetails, details_of

TXN = transaction_pb2


def rid() -> str:
    return str(uuid.uuid4())


async def refused(call: Any, code: grpc.StatusCode, reason: str) -> ErrorDetails:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    details = details_of(caught.value)
    assert (details.code, details.reason) == (code, reason), details
    return details


@pytest.fixture
async def service(channel: grpc.aio.Channel, resources: Any) -> Actor:
    return await create_service(channel, resources, [PAYMENTS_CONFIRM])


@pytest.fixture
def gateway(grpc_server: Any) -> SandboxGateway:
    return sandbox_of(grpc_server)


async def pending_top_up(channel: grpc.aio.Channel, user: Actor, amount_minor: int = 25_000) -> Any:
    """A UPI top-up the sandbox leaves pending (the user must finish it at the gateway)."""
    reply = await wallet_service_pb2_grpc.WalletServiceStub(channel).TopUp(
        pb.TopUpRequest(
            request_id=rid(),
            amount=common_pb2.Money(units_minor=amount_minor, currency_code="INR"),
            payment_method=common_pb2.PAYMENT_METHOD_UPI,
            payment_details=common_pb2.PaymentDetails(
                upi=common_pb2.UpiPayment(vpa="pending@sandbox")
            ),
        ),
        metadata=user.metadata,
    )
    assert reply.transaction.status == TXN.TRANSACTION_STATUS_PENDING
    return reply.transaction


async def status_of(resources: Any, txn_id: int) -> str:
    async with resources.db.read_only() as conn:
        result = await conn.execute(
            text("SELECT status FROM transactions WHERE txn_id = :t"), {"t": txn_id}
        )
        return str(result.scalar_one())


async def assert_unchanged(resources: Any, user: Actor, txn: Any) -> None:
    """Nothing moved: the payment still pending, the wallet empty, no key left behind."""
    assert await status_of(resources, txn.txn_id) == "pending"
    assert await balance(resources, user.user_id) == Decimal("0.00")
    async with resources.db.read_only() as conn:
        keys = await conn.execute(
            text("SELECT count(*) FROM idempotency_keys WHERE rpc LIKE '%ConfirmPayment'")
        )
        assert keys.scalar_one() == 0
    await assert_ledger_balances(resources)


def signed_webhook(
    event: str,
    *,
    order_id: str,
    amount_minor: int,
    currency: str = "INR",
    secret: str = SANDBOX_WEBHOOK_SECRET,
) -> tuple[bytes, str]:
    """A webhook with any content, signed under ``secret`` (the sandbox's by default)."""
    body = signing.webhook_body(
        event,
        order_id=order_id,
        payment_id=f"sbxpay_{uuid.uuid4().hex[:16]}",
        amount_minor=amount_minor,
        currency=currency,
        status="failed" if event == "payment.failed" else "captured",
    )
    return body, signing.sign(secret, body)


# --- refused: nothing changes -------------------------------------------------------------


async def test_unsigned_requests_are_refused(
    channel: grpc.aio.Channel, resources: Any, service: Actor, gateway: SandboxGateway
) -> None:
    user = await register_user(channel)
    txn = await pending_top_up(channel, user)
    # The old shape: the caller's word only.
    legacy = pb.ConfirmPaymentRequest(
        request_id=rid(),
        txn_id=txn.txn_id,
        payment_transaction_id=txn.payment_transaction_id,
        outcome=pb.PAYMENT_OUTCOME_SUCCESS,
    )
    error = await refused(
        confirm(channel, service, legacy), grpc.StatusCode.INVALID_ARGUMENT, "CALLBACK_UNSIGNED"
    )
    assert set(error.field_violations) == {"callback"}
    # A checkout result or webhook without its signature.
    paid = checkout_request(gateway, txn.payment_transaction_id)
    paid.checkout.signature = ""
    error = await refused(
        confirm(channel, service, paid), grpc.StatusCode.INVALID_ARGUMENT, "CALLBACK_UNSIGNED"
    )
    assert set(error.field_violations) == {"callback.checkout.signature"}
    body, _ = gateway.webhook("payment.captured", txn.payment_transaction_id)
    error = await refused(
        confirm(channel, service, webhook_request(body, "")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "CALLBACK_UNSIGNED",
    )
    assert set(error.field_violations) == {"callback.webhook.signature"}
    await assert_unchanged(resources, user, txn)


async def test_forged_callbacks_are_refused_and_recorded_as_security_events(
    channel: grpc.aio.Channel, resources: Any, service: Actor, gateway: SandboxGateway
) -> None:
    user = await register_user(channel)
    txn = await pending_top_up(channel, user, 25_000)
    order = txn.payment_transaction_id

    tampered = checkout_request(gateway, order)
    flipped = "0" if tampered.checkout.signature[0] != "0" else "1"
    tampered.checkout.signature = flipped + tampered.checkout.signature[1:]
    another_payment = checkout_request(gateway, order)
    another_payment.checkout.payment_id = "sbxpay_someoneelse"
    wrong_secret = checkout_request(gateway, order)
    wrong_secret.checkout.signature = signing.sign(
        "not-the-secret", signing.checkout_message(order, wrong_secret.checkout.payment_id)
    )
    body, signature = gateway.webhook("payment.captured", order)
    # The payload changed after signing (a bigger amount), the signature kept.
    inflated = body.replace(b'"amount":25000', b'"amount":2500000')
    assert inflated != body
    # JSON re-serialised with spaces: the same event, other bytes.
    reencoded = json.dumps(json.loads(body)).encode()
    assert reencoded != body and json.loads(reencoded) == json.loads(body)
    # Signed with the checkout secret instead of the webhook secret.
    key_signed = signing.sign(SANDBOX_KEY_SECRET, body)
    # Not even ASCII (found by the sweep: the comparison once raised, answering INTERNAL).
    non_ascii = checkout_request(gateway, order)
    non_ascii.checkout.signature = "\u00c5" + non_ascii.checkout.signature[1:]
    forged = [
        tampered,
        another_payment,
        wrong_secret,
        webhook_request(inflated, signature),
        webhook_request(reencoded, signature),
        webhook_request(body, key_signed),
        webhook_request(body, "x" * 500),
        non_ascii,
        webhook_request(body, "\u00c5\U0003fa05r" + signature[3:]),
    ]
    for request in forged:
        await refused(
            confirm(channel, service, request),
            grpc.StatusCode.PERMISSION_DENIED,
            "CALLBACK_SIGNATURE_INVALID",
        )
    await assert_unchanged(resources, user, txn)

    async def security_events() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (
            await resources.mongo_db["AuditLog"]
            .find(
                {
                    "rpc": "/gencharge.v1.WalletService/ConfirmPayment",
                    "action_type": "SECURITY",
                }
            )
            .to_list(None)
        )
        return found if len(found) >= len(forged) else []

    events = await eventually(security_events, every=0.1)
    assert len(events) == len(forged), events
    for event in events:
        assert event["details"]["reason"] == "CALLBACK_SIGNATURE_INVALID", event
        assert event["details"]["status"] == "PERMISSION_DENIED", event
        assert str(event["user_id"]).startswith("service:"), event

    # The genuine callback still settles it.
    settled = await confirm(channel, service, checkout_request(gateway, order))
    assert settled.status == TXN.TRANSACTION_STATUS_SUCCESS
    assert await balance(resources, user.user_id) == Decimal("250.00")


async def test_amount_or_currency_mismatch_changes_nothing(
    channel: grpc.aio.Channel, resources: Any, service: Actor
) -> None:
    user = await register_user(channel)
    txn = await pending_top_up(channel, user, 25_000)
    for amount_minor, currency in ((2_500_000, "INR"), (24_999, "INR"), (25_000, "USD")):
        body, signature = signed_webhook(
            "payment.captured",
            order_id=txn.payment_transaction_id,
            amount_minor=amount_minor,
            currency=currency,
        )
        error = await refused(
            confirm(channel, service, webhook_request(body, signature)),
            grpc.StatusCode.FAILED_PRECONDITION,
            "PAYMENT_AMOUNT_MISMATCH",
        )
        assert error.metadata["expected_amount_minor"] == "25000"
        assert error.metadata["callback_amount_minor"] == str(amount_minor)
        assert error.metadata["callback_currency"] == currency
    await assert_unchanged(resources, user, txn)


async def test_unknown_or_unreadable_callbacks(
    channel: grpc.aio.Channel, resources: Any, service: Actor, gateway: SandboxGateway
) -> None:
    user = await register_user(channel)
    txn = await pending_top_up(channel, user)
    # A genuine webhook about a charge we never made.
    body, signature = signed_webhook("payment.captured", order_id="sbx_unknown", amount_minor=100)
    error = await refused(
        confirm(channel, service, webhook_request(body, signature)),
        grpc.StatusCode.NOT_FOUND,
        "PAYMENT_NOT_FOUND",
    )
    assert error.metadata["payment_transaction_id"] == "sbx_unknown"
    # A checkout result for a charge the gateway does not know.
    message = signing.checkout_message("sbx_unknown", "sbxpay_1")
    unknown = pb.ConfirmPaymentRequest(
        request_id=rid(),
        checkout=pb.PaymentCheckoutCallback(
            order_id="sbx_unknown",
            payment_id="sbxpay_1",
            signature=signing.sign(SANDBOX_KEY_SECRET, message),
        ),
    )
    await refused(
        confirm(channel, service, unknown), grpc.StatusCode.INVALID_ARGUMENT, "CALLBACK_MALFORMED"
    )
    # Genuine bytes that are not a payment event we act on.
    for raw in (b"not json", b'{"event": "refund.processed", "payload": {}}'):
        error = await refused(
            confirm(
                channel,
                service,
                webhook_request(raw, signing.sign(SANDBOX_WEBHOOK_SECRET, raw)),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "CALLBACK_MALFORMED",
        )
        assert "callback" in error.field_violations
    # Fields out of bounds are refused before any verification.
    oversized = webhook_request(b"x" * (domain.MAX_WEBHOOK_BODY + 1), "abc")
    error = await refused(
        confirm(channel, service, oversized),
        grpc.StatusCode.INVALID_ARGUMENT,
        "CALLBACK_MALFORMED",
    )
    assert set(error.field_violations) == {"callback.webhook.body"}
    await assert_unchanged(resources, user, txn)


# --- genuine callbacks --------------------------------------------------------------------


async def test_a_genuine_callback_settles_once_however_often_it_arrives(
    channel: grpc.aio.Channel, resources: Any, service: Actor, gateway: SandboxGateway
) -> None:
    user = await register_user(channel)
    txn = await pending_top_up(channel, user, 30_000)
    paid = checkout_request(gateway, txn.payment_transaction_id, request_id="evt_checkout_1")
    settled = await confirm(channel, service, paid)
    assert settled.status == TXN.TRANSACTION_STATUS_SUCCESS
    assert settled.balance_after.units_minor == 30_000
    # The same delivery again, the same callback under other keys, the webhook of the
    # same capture: the settled transaction, unchanged.
    replays = [paid]
    for key in ("evt_checkout_2", "evt_checkout_3"):
        again = pb.ConfirmPaymentRequest()
        again.CopyFrom(paid)
        again.request_id = key
        replays.append(again)
    body, signature = gateway.webhook("payment.captured", txn.payment_transaction_id)
    replays += [webhook_request(body, signature, request_id="evt_webhook_1")] * 2
    for request in replays:
        assert await confirm(channel, service, request) == settled
    assert await balance(resources, user.user_id) == Decimal("300.00")
    async with resources.db.read_only() as conn:
        credits = await conn.execute(
            text("SELECT count(*) FROM transactions WHERE user_id = :u"), {"u": user.user_id}
        )
        assert credits.scalar_one() == 1
    await assert_ledger_balances(resources)


async def test_a_failed_webhook_fails_the_payment(
    channel: grpc.aio.Channel, resources: Any, service: Actor, gateway: SandboxGateway
) -> None:
    user = await register_user(channel)
    txn = await pending_top_up(channel, user)
    failure = failed_request(gateway, txn.payment_transaction_id, reason="bank timeout")
    failed = await confirm(channel, service, failure)
    assert failed.status == TXN.TRANSACTION_STATUS_FAILED
    assert await confirm(channel, service, failure) == failed
    assert await balance(resources, user.user_id) == Decimal("0.00")
    await assert_ledger_balances(resources)


async def test_an_event_without_a_final_outcome_changes_nothing(
    channel: grpc.aio.Channel, resources: Any, service: Actor, gateway: SandboxGateway
) -> None:
    user = await register_user(channel)
    txn = await pending_top_up(channel, user)
    body, signature = gateway.webhook("payment.authorized", txn.payment_transaction_id)
    seen = await confirm(channel, service, webhook_request(body, signature))
    assert seen.txn_id == txn.txn_id
    assert seen.status == TXN.TRANSACTION_STATUS_PENDING
    await assert_unchanged(resources, user, txn)
    # Its amount is checked all the same.
    body, signature = signed_webhook(
        "payment.authorized", order_id=txn.payment_transaction_id, amount_minor=1
    )
    await refused(
        confirm(channel, service, webhook_request(body, signature)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "PAYMENT_AMOUNT_MISMATCH",
    )


async def test_a_success_after_the_payment_expired_is_refunded(
    channel: grpc.aio.Channel,
    resources: Any,
    service: Actor,
    gateway: SandboxGateway,
    grpc_server: Any,
) -> None:
    user = await register_user(channel)
    txn = await pending_top_up(channel, user, 12_300)
    async with resources.db.transaction() as conn:  # the 30 minutes went by
        await conn.execute(
            text(
                "UPDATE transactions SET created_at = now() - interval '1 hour' WHERE txn_id = :t"
            ),
            {"t": txn.txn_id},
        )
    report = await grpc_server.scheduler.run_once()
    assert report.expired_payments == 1
    # The user finished paying at the gateway after all: the money goes back.
    late = checkout_request(gateway, txn.payment_transaction_id)
    refunds = set()
    for _ in range(2):  # a redelivery gets the same refund
        error = await refused(
            confirm(channel, service, late),
            grpc.StatusCode.FAILED_PRECONDITION,
            "TRANSACTION_ALREADY_SETTLED",
        )
        assert error.metadata["status"] == "failed"
        assert error.metadata["refund_status"] == "processed"
        refunds.add(error.metadata["refund_id"])
        late.request_id = rid()
    assert len(refunds) == 1 and refunds.pop().startswith("sbxrfnd_")
    assert await status_of(resources, txn.txn_id) == "failed"
    assert await balance(resources, user.user_id) == Decimal("0.00")
    await assert_ledger_balances(resources)


class _Unreachable(SandboxGateway):
    async def verify_callback(self, callback: Callback) -> VerifiedPayment:
        raise GatewayError("connection refused")


async def test_gateway_unreachable_while_verifying_is_unavailable(resources: Any) -> None:
    """A callback the gateway must be asked about (Razorpay checkout) while it cannot be
    reached: UNAVAILABLE, nothing written; the edge service retries."""
    confirmation = domain.Confirmation(
        request_id=rid(),
        txn_id=0,
        payment_transaction_id="",
        outcome="",
        failure_reason="",
        callback=CheckoutCallback(
            "sbx_x",
            "sbxpay_x",
            signing.sign(SANDBOX_KEY_SECRET, signing.checkout_message("sbx_x", "sbxpay_x")),
        ),
        fingerprint="f",
    )
    scope = AuditScope(
        "service:edge", "/gencharge.v1.WalletService/ConfirmPayment", rid(), None, True
    )
    token = current_scope.set(scope)
    try:
        with pytest.raises(Unavailable) as caught:
            await flows.confirm_payment(
                resources.db,
                _Unreachable(),
                Principal("service", "edge"),
                confirmation,
                referral_reward=Decimal("0"),
            )
    finally:
        current_scope.reset(token)
    assert caught.value.reason == "GATEWAY_UNAVAILABLE"
