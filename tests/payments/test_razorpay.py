"""The Razorpay adapter against the Razorpay stand-in (tests/payments/razorpay_standin.py,
a local HTTP server speaking Razorpay's documented API: the real one cannot be reached
from these machines).

Charges, lookups, verified callbacks and refunds end to end over HTTP; every rejection of
a callback; retries bounded and counted at the stand-in; a request that creates something
is never repeated blindly; timeouts and refused connections end in GatewayError; no
secret ever reaches a log; the settings that build it or name what is missing; and the
real server configured with it (a TopUp makes one order; the gateway is closed at stop;
a refund Razorpay refuses answers REFUND_REFUSED and leaves nothing reserved).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from pydantic import SecretStr

from gencharge.v1 import admin_service_pb2 as admin_pb
from gencharge.v1 import admin_service_pb2_grpc, common_pb2, wallet_service_pb2_grpc
from gencharge.v1 import wallet_service_pb2 as wallet_pb
from server.core.config import Environment, Settings
from server.core.logs import JsonFormatter
from server.ops.embedded import free_port
from server.payments import signing
from server.payments.gateway import (
    CallbackRejected,
    ChargeResult,
    CheckoutCallback,
    GatewayError,
    GatewayRefused,
    WebhookCallback,
)
from server.payments.razorpay import (
    MAX_RECEIPT,
    RazorpayGateway,
    order_receipt,
    refund_receipt,
)
from server.payments.select import create_gateway
from tests.helpers.auth import register_user
from tests.helpers.clock import HANG_SECONDS
from tests.payments.razorpay_standin import (
    KEY_ID,
    KEY_SECRET,
    WEBHOOK_SECRET,
    RazorpayStandIn,
    sign,
)

CHECKOUT = "https://pay.example.com/checkout?order_id={order_id}&key={key_id}"
REFERENCE = "topup:user:12:6f1c2e9a-8d55-4d7e-9a51-0c3b1f6e2a44"
RETRIES = 2


@pytest.fixture
def standin() -> Iterator[RazorpayStandIn]:
    with RazorpayStandIn() as server:
        yield server


def make_gateway(url: str, **overrides: object) -> RazorpayGateway:
    options: dict[str, object] = {
        "key_id": KEY_ID,
        "key_secret": KEY_SECRET,
        "webhook_secret": WEBHOOK_SECRET,
        "checkout_url": CHECKOUT,
        "api_url": url,
        # A bound on a hang only: the stand-in answers at once unless told to hang.
        "timeout": HANG_SECONDS,
        "max_retries": RETRIES,
        "backoff": 0,
    }
    options.update(overrides)
    return RazorpayGateway(**options)  # type: ignore[arg-type]


@pytest.fixture
async def gateway(standin: RazorpayStandIn) -> AsyncIterator[RazorpayGateway]:
    gw = make_gateway(standin.url)
    yield gw
    await gw.aclose()


async def charge(gateway: RazorpayGateway, reference: str = REFERENCE, rupees: str = "500.00"):
    return await gateway.charge(
        amount=Decimal(rupees),
        currency="INR",
        method="UPI",
        details={"vpa": "someone@okbank"},
        reference=reference,
    )


def checkout_url(order_id: str) -> str:
    return f"https://pay.example.com/checkout?order_id={order_id}&key={KEY_ID}"


# --- charge and lookup ---------------------------------------------------------------------


async def test_charge_creates_one_order_per_reference(
    gateway: RazorpayGateway, standin: RazorpayStandIn
) -> None:
    first = await charge(gateway)
    assert first.status == "pending"
    assert first.payment_id.startswith("order_")
    assert first.redirect_url == checkout_url(first.payment_id)
    (order,) = standin.orders
    assert order["id"] == first.payment_id
    assert order["amount"] == 50_000 and order["currency"] == "INR"
    assert order["receipt"] == order_receipt(REFERENCE)
    assert len(order["receipt"]) <= MAX_RECEIPT < len(REFERENCE)
    assert order["notes"] == {"reference": REFERENCE, "method": "UPI"}
    # The same reference again: the same order, nothing created.
    assert await charge(gateway) == first
    assert len(standin.orders) == 1
    assert standin.count("POST", "/v1/orders") == 1
    # Another reference: another order.
    other = await charge(gateway, reference=REFERENCE + "-2")
    assert other.payment_id != first.payment_id
    assert len(standin.orders) == 2


async def test_charge_refuses_what_it_cannot_do(
    gateway: RazorpayGateway, standin: RazorpayStandIn
) -> None:
    with pytest.raises(ValueError, match="Wallet"):
        await gateway.charge(
            amount=Decimal(5), currency="INR", method="Wallet", details={}, reference="r-1"
        )
    with pytest.raises(ValueError, match="reference"):
        await charge(gateway, reference="")
    # An order under this reference for another amount: never a second order.
    await charge(gateway)
    with pytest.raises(GatewayError, match="another amount"):
        await charge(gateway, rupees="600.00")
    assert len(standin.orders) == 1
    # Razorpay's own refusal (an amount under Rs 1) is a GatewayError, not retried.
    with pytest.raises(GatewayError, match="BAD_REQUEST_ERROR"):
        await charge(gateway, reference="tiny", rupees="0.50")
    assert standin.count("POST", "/v1/orders") == 2


async def test_lookup_follows_the_order(gateway: RazorpayGateway, standin: RazorpayStandIn) -> None:
    assert await gateway.lookup(reference=REFERENCE) is None
    pending = await charge(gateway)
    assert await gateway.lookup(reference=REFERENCE) == pending
    # A failed attempt does not end the order: the user may pay again at checkout.
    standin.fail_payment(pending.payment_id)
    assert await gateway.lookup(reference=REFERENCE) == pending
    standin.pay(pending.payment_id)
    assert await gateway.lookup(reference=REFERENCE) == ChargeResult(
        "authorised", pending.payment_id
    )
    # Charging the same reference again answers the capture, creates nothing.
    assert await charge(gateway) == ChargeResult("authorised", pending.payment_id)
    assert len(standin.orders) == 1


async def test_lookup_captures_an_authorised_payment_once(
    gateway: RazorpayGateway, standin: RazorpayStandIn
) -> None:
    pending = await charge(gateway)
    paid = standin.pay(pending.payment_id, capture=False)
    assert standin.payment(paid.payment_id)["status"] == "authorized"
    assert await gateway.lookup(reference=REFERENCE) == ChargeResult(
        "authorised", pending.payment_id
    )
    assert standin.payment(paid.payment_id)["status"] == "captured"
    assert standin.order(pending.payment_id)["status"] == "paid"
    assert await gateway.lookup(reference=REFERENCE) == ChargeResult(
        "authorised", pending.payment_id
    )
    assert standin.count("POST", f"/v1/payments/{paid.payment_id}/capture") == 1


# --- callbacks -----------------------------------------------------------------------------


async def test_checkout_callback_verified_with_the_payment_at_razorpay(
    gateway: RazorpayGateway, standin: RazorpayStandIn
) -> None:
    order_id = (await charge(gateway)).payment_id
    paid = standin.pay(order_id)
    verified = await gateway.verify_callback(
        CheckoutCallback(order_id, paid.payment_id, paid.checkout_signature)
    )
    assert verified.payment_id == order_id
    assert verified.gateway_payment_id == paid.payment_id
    assert verified.outcome == "success"
    assert (verified.amount, verified.currency) == (Decimal("500.00"), "INR")
    assert standin.count("GET", f"/v1/payments/{paid.payment_id}") == 1


async def test_checkout_callback_of_an_authorised_payment_captures_it(
    gateway: RazorpayGateway, standin: RazorpayStandIn
) -> None:
    order_id = (await charge(gateway)).payment_id
    paid = standin.pay(order_id, capture=False)
    verified = await gateway.verify_callback(
        CheckoutCallback(order_id, paid.payment_id, paid.checkout_signature)
    )
    assert verified.outcome == "success"
    assert standin.payment(paid.payment_id)["status"] == "captured"


async def test_checkout_callback_of_a_failed_payment(
    gateway: RazorpayGateway, standin: RazorpayStandIn
) -> None:
    order_id = (await charge(gateway)).payment_id
    payment_id, _, _ = standin.fail_payment(order_id, "bank declined")
    verified = await gateway.verify_callback(
        CheckoutCallback(order_id, payment_id, standin.checkout_signature(order_id, payment_id))
    )
    assert verified.outcome == "failed"
    assert verified.failure_reason == "bank declined"


async def test_webhooks_verified_over_their_raw_bytes(
    gateway: RazorpayGateway, standin: RazorpayStandIn
) -> None:
    order_id = (await charge(gateway)).payment_id
    failed_id, failed_body, failed_signature = standin.fail_payment(order_id, "timed out")
    failed = await gateway.verify_callback(WebhookCallback(failed_body, failed_signature))
    assert (failed.payment_id, failed.gateway_payment_id) == (order_id, failed_id)
    assert (failed.outcome, failed.failure_reason) == ("failed", "timed out")
    authorised = standin.pay(order_id, capture=False)
    event = await gateway.verify_callback(
        WebhookCallback(authorised.webhook_body, authorised.webhook_signature)
    )
    assert event.outcome is None  # genuine, but no final outcome
    other = (await charge(gateway, reference="second")).payment_id
    paid = standin.pay(other)
    captured = await gateway.verify_callback(
        WebhookCallback(paid.webhook_body, paid.webhook_signature)
    )
    assert (captured.payment_id, captured.outcome) == (other, "success")
    assert (captured.amount, captured.currency) == (Decimal("500.00"), "INR")
    # A webhook is verified without asking Razorpay.
    assert standin.count("GET", "/v1/payments") == 0


async def test_every_forged_callback_is_rejected(
    gateway: RazorpayGateway, standin: RazorpayStandIn
) -> None:
    order_id = (await charge(gateway)).payment_id
    paid = standin.pay(order_id)
    other_order = (await charge(gateway, reference="other")).payment_id

    def tampered(signature: str) -> str:
        return ("0" if signature[0] != "0" else "1") + signature[1:]

    message = f"{order_id}|{paid.payment_id}".encode()
    richer = paid.webhook_body.replace(b'"amount": 50000', b'"amount": 5000000')
    assert richer != paid.webhook_body
    invalid = [
        # checkout: tampered, signed with a wrong secret, with the webhook secret, empty,
        # or the signature of another order
        CheckoutCallback(order_id, paid.payment_id, tampered(paid.checkout_signature)),
        CheckoutCallback(order_id, paid.payment_id, sign("not-the-secret", message)),
        CheckoutCallback(order_id, paid.payment_id, sign(WEBHOOK_SECRET, message)),
        CheckoutCallback(order_id, paid.payment_id, ""),
        CheckoutCallback(other_order, paid.payment_id, paid.checkout_signature),
        # webhook: tampered, signed with the key secret, body re-encoded, body changed
        WebhookCallback(paid.webhook_body, tampered(paid.webhook_signature)),
        WebhookCallback(paid.webhook_body, sign(KEY_SECRET, paid.webhook_body)),
        WebhookCallback(
            json.dumps(json.loads(paid.webhook_body), separators=(",", ":")).encode(),
            paid.webhook_signature,
        ),
        WebhookCallback(richer, paid.webhook_signature),
        WebhookCallback(paid.webhook_body, "x" * 500),
    ]
    for callback in invalid:
        with pytest.raises(CallbackRejected) as caught:
            await gateway.verify_callback(callback)
        assert caught.value.reason == signing.SIGNATURE_INVALID, callback
    # None of them made Razorpay be asked anything.
    assert standin.count("GET", "/v1/payments") == 0

    # Genuinely signed, but naming a payment Razorpay does not have, or another order's.
    unknown = "pay_Unknown0000001"
    mismatch = [
        CheckoutCallback(order_id, unknown, standin.checkout_signature(order_id, unknown)),
        CheckoutCallback(
            other_order, paid.payment_id, standin.checkout_signature(other_order, paid.payment_id)
        ),
        CheckoutCallback(
            "order_../x",
            paid.payment_id,
            standin.checkout_signature("order_../x", paid.payment_id),
        ),
    ]
    for callback in mismatch:
        with pytest.raises(CallbackRejected) as caught:
            await gateway.verify_callback(callback)
        assert caught.value.reason == signing.MALFORMED, callback
    # A genuine webhook that is not a payment event.
    body = json.dumps({"entity": "event", "event": "refund.processed", "payload": {}}).encode()
    with pytest.raises(CallbackRejected) as caught:
        await gateway.verify_callback(WebhookCallback(body, sign(WEBHOOK_SECRET, body)))
    assert caught.value.reason == signing.MALFORMED


# --- refunds -------------------------------------------------------------------------------


async def test_refunds_once_per_reference(
    gateway: RazorpayGateway, standin: RazorpayStandIn
) -> None:
    order_id = (await charge(gateway)).payment_id
    paid = standin.pay(order_id)
    first = await gateway.refund(
        payment_id=order_id, amount=Decimal("100.00"), currency="INR", reference="refund:1"
    )
    assert first.refund_id.startswith("rfnd_")
    assert (first.status, first.amount) == ("processed", Decimal("100.00"))
    (refund,) = standin.refunds
    assert refund["payment_id"] == paid.payment_id and refund["amount"] == 10_000
    assert refund["receipt"] == refund_receipt("refund:1")
    # Retried with the same reference: the first refund, nothing new.
    again = await gateway.refund(
        payment_id=order_id, amount=Decimal("100.00"), currency="INR", reference="refund:1"
    )
    assert again == first
    assert len(standin.refunds) == 1
    # More than is left is refused, definitely (nothing refunded; not retried).
    before = standin.count("POST")
    with pytest.raises(GatewayRefused, match="greater than amount captured"):
        await gateway.refund(
            payment_id=order_id, amount=Decimal("400.01"), currency="INR", reference="refund:big"
        )
    assert standin.count("POST") == before + 1
    # The rest under another reference; then nothing is left: refused.
    standin.refund_status = "pending"
    rest = await gateway.refund(
        payment_id=order_id, amount=Decimal("400.00"), currency="INR", reference="refund:2"
    )
    assert (rest.status, rest.amount) == ("pending", Decimal("400.00"))
    assert standin.payment(paid.payment_id)["status"] == "refunded"
    with pytest.raises(GatewayRefused, match="fully refunded already"):
        await gateway.refund(
            payment_id=order_id, amount=Decimal("1.00"), currency="INR", reference="refund:3"
        )
    assert len(standin.refunds) == 2


async def test_refund_needs_a_captured_payment(
    gateway: RazorpayGateway, standin: RazorpayStandIn
) -> None:
    order_id = (await charge(gateway)).payment_id
    with pytest.raises(GatewayRefused, match="no captured payment"):
        await gateway.refund(
            payment_id=order_id, amount=Decimal(1), currency="INR", reference="refund:x"
        )
    with pytest.raises(GatewayRefused, match="does not exist"):
        await gateway.refund(
            payment_id="order_Unknown000001", amount=Decimal(1), currency="INR", reference="r"
        )
    with pytest.raises(ValueError, match="Razorpay id"):
        await gateway.refund(payment_id="../x", amount=Decimal(1), currency="INR", reference="r")
    standin.refund_status = "failed"
    standin.pay(order_id)
    failed = await gateway.refund(
        payment_id=order_id, amount=Decimal(10), currency="INR", reference="refund:y"
    )
    assert failed.status == "failed"


# --- retries, timeouts, errors -------------------------------------------------------------


async def test_reads_are_retried_a_bounded_number_of_times(
    gateway: RazorpayGateway, standin: RazorpayStandIn
) -> None:
    await charge(gateway)
    standin.requests.clear()
    standin.fail_next(RETRIES, status=503)
    assert (await gateway.lookup(reference=REFERENCE)) is not None
    assert standin.count("GET", "/v1/orders") == RETRIES + 1
    standin.requests.clear()
    standin.fail_next(1, status=429)
    standin.fail_next(RETRIES, status=500)
    with pytest.raises(GatewayError, match=f"after {RETRIES + 1} attempts"):
        await gateway.lookup(reference=REFERENCE)
    assert standin.count() == RETRIES + 1
    # A refusal (4xx) is final at once: an unknown order's payments.
    standin.requests.clear()
    with pytest.raises(GatewayRefused):
        await gateway.refund(
            payment_id="order_Unknown000001", amount=Decimal(1), currency="INR", reference="r"
        )
    assert standin.count() == 1


async def test_an_order_is_created_again_only_after_checking(
    gateway: RazorpayGateway, standin: RazorpayStandIn
) -> None:
    # The POST fails before creating anything: looked up, then created once.
    standin.fail_next(1, status=500, method="POST", path_prefix="/v1/orders")
    first = await charge(gateway)
    assert len(standin.orders) == 1
    assert [(r.method, r.status) for r in standin.requests] == [
        ("GET", 200),
        ("POST", 500),
        ("GET", 200),
        ("POST", 200),
    ]
    # The POST creates the order but its answer is lost: found, not created twice.
    standin.fail_next(1, status=502, method="POST", path_prefix="/v1/orders", after_processing=True)
    second = await charge(gateway, reference="lost-answer")
    assert len(standin.orders) == 2
    assert second.payment_id in {o["id"] for o in standin.orders} - {first.payment_id}
    assert standin.count("POST", "/v1/orders") == 3
    # Failing every time: at most max_retries + 1 POSTs, then GatewayError.
    standin.requests.clear()
    standin.fail_next(100, status=500, method="POST")
    with pytest.raises(GatewayError):
        await charge(gateway, reference="never")
    assert standin.count("POST") == RETRIES + 1
    assert standin.count("GET") == RETRIES + 2  # before each POST, and after the last
    assert len(standin.orders) == 2


async def test_a_refund_answer_lost_is_found_not_repeated(
    gateway: RazorpayGateway, standin: RazorpayStandIn
) -> None:
    order_id = (await charge(gateway)).payment_id
    standin.pay(order_id)
    standin.fail_next(1, status=504, method="POST", after_processing=True)
    refund = await gateway.refund(
        payment_id=order_id, amount=Decimal(50), currency="INR", reference="refund:lost"
    )
    (made,) = standin.refunds
    assert refund.refund_id == made["id"]


async def test_a_refund_razorpay_refuses_is_definite_an_unanswered_one_is_not(
    standin: RazorpayStandIn,
) -> None:
    """Razorpay's refusal (HTTP 400 BAD_REQUEST_ERROR) says nothing was refunded:
    GatewayRefused, a ValueError, never a GatewayError; 5xx, timeouts, unreachable and
    our credentials refused say nothing about the outcome: GatewayError."""
    gateway = make_gateway(standin.url, timeout=0.5)
    wrong_key = make_gateway(standin.url, key_secret="not-the-key-secret")
    try:
        order_id = (await charge(gateway)).payment_id
        standin.pay(order_id)
        standin.refuse_refunds = True
        with pytest.raises(GatewayRefused, match="more than 6 months old") as refused:
            await gateway.refund(
                payment_id=order_id, amount=Decimal(10), currency="INR", reference="refund:old"
            )
        assert isinstance(refused.value, ValueError)
        assert not isinstance(refused.value, GatewayError)
        assert standin.refunds == []
        standin.refuse_refunds = False

        standin.requests.clear()
        standin.fail_next(RETRIES + 1, status=503, method="POST")
        with pytest.raises(GatewayError) as unknown:
            await gateway.refund(
                payment_id=order_id, amount=Decimal(10), currency="INR", reference="refund:5xx"
            )
        assert not isinstance(unknown.value, ValueError)
        assert standin.count("POST") == RETRIES + 1 and standin.refunds == []

        standin.hang_next(RETRIES + 1)
        with pytest.raises(GatewayError, match="no answer within") as unanswered:
            await gateway.refund(
                payment_id=order_id, amount=Decimal(10), currency="INR", reference="refund:hang"
            )
        assert not isinstance(unanswered.value, ValueError)
        assert standin.refunds == []

        with pytest.raises(GatewayError, match="Authentication failed") as denied:
            await wrong_key.refund(
                payment_id=order_id, amount=Decimal(10), currency="INR", reference="refund:key"
            )
        assert not isinstance(denied.value, ValueError)
    finally:
        await gateway.aclose()
        await wrong_key.aclose()


async def test_timeouts_end_in_gateway_error(standin: RazorpayStandIn) -> None:
    # The stand-in never answers (no timer of its own); the client's timeout ends each try.
    gateway = make_gateway(standin.url, timeout=0.2)
    try:
        standin.hang_next(100)
        with pytest.raises(GatewayError, match="no answer within"):
            await gateway.lookup(reference=REFERENCE)
        assert standin.count() == RETRIES + 1
        assert all(r.status is None for r in standin.requests)
    finally:
        await gateway.aclose()


async def test_unreachable_and_unauthorised_end_in_gateway_error(
    standin: RazorpayStandIn,
) -> None:
    closed = make_gateway(f"http://127.0.0.1:{free_port()}")
    wrong_key = make_gateway(standin.url, key_secret="not-the-key-secret")
    try:
        with pytest.raises(GatewayError, match="ConnectError"):
            await closed.lookup(reference=REFERENCE)
        with pytest.raises(GatewayError, match="Authentication failed"):
            await wrong_key.lookup(reference=REFERENCE)
        assert standin.count() == 1  # a 401 is not retried
        assert not standin.requests[0].authenticated
    finally:
        await closed.aclose()
        await wrong_key.aclose()


async def test_secrets_never_reach_the_logs(
    standin: RazorpayStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    gateway = make_gateway(standin.url)
    try:
        order_id = (await charge(gateway)).payment_id
        paid = standin.pay(order_id, capture=False)
        await gateway.verify_callback(
            CheckoutCallback(order_id, paid.payment_id, paid.checkout_signature)
        )
        await gateway.verify_callback(WebhookCallback(paid.webhook_body, paid.webhook_signature))
        with pytest.raises(CallbackRejected):
            await gateway.verify_callback(WebhookCallback(paid.webhook_body, "0" * 64))
        standin.fail_next(RETRIES + 1, status=500)
        with pytest.raises(GatewayError) as caught:
            await gateway.lookup(reference=REFERENCE)
        await gateway.refund(payment_id=order_id, amount=Decimal(1), currency="INR", reference="r")
    finally:
        await gateway.aclose()
    calls = [r for r in caplog.records if r.getMessage() == "razorpay call"]
    assert calls and {"method", "path", "status", "attempt"} <= set(vars(calls[0]))
    formatter = JsonFormatter()
    text = "\n".join(formatter.format(r) for r in caplog.records)
    text += "\n" + repr(gateway) + "\n" + str(caught.value)
    basic = base64.b64encode(f"{KEY_ID}:{KEY_SECRET}".encode()).decode()
    for secret in (KEY_SECRET, WEBHOOK_SECRET, basic, "Basic ", "authorization"):
        assert secret.lower() not in text.lower(), secret


# --- settings and the stand-in's own protocol -----------------------------------------------


def _settings(**values: object) -> Settings:
    base: dict[str, object] = {
        "payment_gateway": "razorpay",
        "razorpay_key_id": KEY_ID,
        "razorpay_key_secret": KEY_SECRET,
        "razorpay_webhook_secret": WEBHOOK_SECRET,
        "razorpay_checkout_url": CHECKOUT,
        "data_dir": Path("/nonexistent"),
    }
    base.update(values)
    return Settings(**base)  # type: ignore[arg-type]


async def test_create_gateway_builds_razorpay_or_names_the_missing_setting() -> None:
    built = create_gateway(_settings(environment=Environment.PRODUCTION))
    assert isinstance(built, RazorpayGateway) and built.name == "razorpay"
    assert KEY_SECRET not in repr(built)
    await built.aclose()
    refused = {
        "GENCHARGE_RAZORPAY_KEY_ID": {"razorpay_key_id": ""},
        "GENCHARGE_RAZORPAY_KEY_SECRET": {"razorpay_key_secret": ""},
        "GENCHARGE_RAZORPAY_WEBHOOK_SECRET": {"razorpay_webhook_secret": " "},
        "must differ": {"razorpay_webhook_secret": KEY_SECRET},
        "GENCHARGE_RAZORPAY_CHECKOUT_URL": {"razorpay_checkout_url": ""},
        "with {order_id}": {"razorpay_checkout_url": "https://pay.example.com/checkout"},
        "only {order_id} and {key_id}": {
            "razorpay_checkout_url": "https://pay.example.com/{order_id}/{secret}"
        },
        "GENCHARGE_RAZORPAY_API_URL must be": {"razorpay_api_url": "ftp://api.example.com"},
    }
    for message, values in refused.items():
        with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
            create_gateway(_settings(**values))
    production = {"environment": Environment.PRODUCTION}
    with pytest.raises(ValueError, match="CHECKOUT_URL must be https"):
        create_gateway(
            _settings(**production, razorpay_checkout_url="http://pay.example.com/{order_id}")
        )
    with pytest.raises(ValueError, match="API_URL must be https"):
        create_gateway(_settings(**production, razorpay_api_url="http://api.example.com"))
    loopback = create_gateway(_settings(**production, razorpay_api_url="http://127.0.0.1:9"))
    await loopback.aclose()
    with pytest.raises(ValueError, match="sandbox is for development"):
        create_gateway(_settings(**production, payment_gateway="sandbox"))


async def test_the_standin_speaks_razorpays_protocol(standin: RazorpayStandIn) -> None:
    async with httpx.AsyncClient(base_url=standin.url) as client:
        anonymous = await client.get("/v1/orders")
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "BAD_REQUEST_ERROR"
        auth = (KEY_ID, KEY_SECRET)
        missing = await client.get("/v1/nothing", auth=auth)
        assert missing.status_code == 404
        created = await client.post(
            "/v1/orders", auth=auth, json={"amount": 100, "currency": "INR", "receipt": "r#1"}
        )
        assert created.status_code == 200
        order = created.json()
        assert order["entity"] == "order" and order["status"] == "created"
        assert order["amount_due"] == 100 and order["notes"] == []
        listed = (await client.get("/v1/orders", params={"receipt": "r#1"}, auth=auth)).json()
        assert listed["entity"] == "collection" and listed["items"] == [order]
        unknown = await client.get("/v1/payments/pay_Unknown0000001", auth=auth)
        assert unknown.status_code == 400
        assert unknown.json()["error"]["description"] == "The id provided does not exist"


# --- the server with Razorpay configured ------------------------------------------------------


async def test_the_server_tops_up_through_razorpay_and_closes_it(
    resources: Any, standin: RazorpayStandIn
) -> None:
    from server.rpc.app import start_server

    settings = resources.settings.model_copy(
        update={
            "payment_gateway": "razorpay",
            "razorpay_key_id": KEY_ID,
            "razorpay_key_secret": SecretStr(KEY_SECRET),
            "razorpay_webhook_secret": SecretStr(WEBHOOK_SECRET),
            "razorpay_checkout_url": CHECKOUT,
            "razorpay_api_url": standin.url,
        }
    )
    running = await start_server(
        dataclasses.replace(resources, settings=settings), "127.0.0.1:0", health_interval=0.2
    )
    try:
        built = running.owned_gateway
        assert isinstance(built, RazorpayGateway)
        assert running.app is not None and running.app.gateway is built
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            user = await register_user(channel)
            reply = await wallet_service_pb2_grpc.WalletServiceStub(channel).TopUp(
                wallet_pb.TopUpRequest(
                    request_id="razorpay-topup-1",
                    amount=common_pb2.Money(units_minor=25_000, currency_code="INR"),
                    payment_method=common_pb2.PAYMENT_METHOD_NET_BANKING,
                    payment_details=common_pb2.PaymentDetails(
                        net_banking=common_pb2.NetBankingPayment(bank_code="HDFC")
                    ),
                ),
                metadata=user.metadata,
            )
        (order,) = standin.orders
        assert order["notes"] == {
            "reference": f"topup:user:{user.user_id}:razorpay-topup-1",
            "method": "NetBanking",
        }
        assert reply.transaction.payment_transaction_id == order["id"]
        assert reply.pending_payment.redirect_url == checkout_url(order["id"])
    finally:
        await running.stop(0)
    assert built._client.is_closed  # the server closed the gateway it built


async def test_a_refund_razorpay_refuses_is_refused_through_the_server(
    resources: Any, standin: RazorpayStandIn
) -> None:
    """RefundTransaction of a top-up paid through Razorpay: Razorpay's refusal answers
    REFUND_REFUSED and releases the reservation (no GATEWAY_UNAVAILABLE, nothing left
    reserved); once Razorpay accepts, the refund carries its refund id."""
    from server.auth.scopes import PAYMENTS_CONFIRM
    from server.rpc.app import start_server
    from tests.helpers.auth import create_admin, create_service
    from tests.helpers.money import assert_ledger_balances, balance
    from tests.helpers.rpc import details_of

    settings = resources.settings.model_copy(
        update={
            "payment_gateway": "razorpay",
            "razorpay_key_id": KEY_ID,
            "razorpay_key_secret": SecretStr(KEY_SECRET),
            "razorpay_webhook_secret": SecretStr(WEBHOOK_SECRET),
            "razorpay_checkout_url": CHECKOUT,
            "razorpay_api_url": standin.url,
        }
    )
    running = await start_server(
        dataclasses.replace(resources, settings=settings), "127.0.0.1:0", health_interval=0.2
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            user = await register_user(channel)
            wallet = wallet_service_pb2_grpc.WalletServiceStub(channel)
            pending = await wallet.TopUp(
                wallet_pb.TopUpRequest(
                    request_id="razorpay-refund-topup",
                    amount=common_pb2.Money(units_minor=25_000, currency_code="INR"),
                    payment_method=common_pb2.PAYMENT_METHOD_UPI,
                    payment_details=common_pb2.PaymentDetails(
                        upi=common_pb2.UpiPayment(vpa="someone@okbank")
                    ),
                ),
                metadata=user.metadata,
            )
            paid = standin.pay(pending.transaction.payment_transaction_id)
            service = await create_service(channel, resources, scopes=[PAYMENTS_CONFIRM])
            await wallet.ConfirmPayment(
                wallet_pb.ConfirmPaymentRequest(
                    request_id="razorpay-refund-confirm",
                    checkout=wallet_pb.PaymentCheckoutCallback(
                        order_id=paid.order_id,
                        payment_id=paid.payment_id,
                        signature=paid.checkout_signature,
                    ),
                ),
                metadata=service.metadata,
            )
            assert await balance(resources, user.user_id) == Decimal("250.00")
            admin = await create_admin(channel, resources)
            admin_stub = admin_service_pb2_grpc.AdminServiceStub(channel)

            def refund(request_id: str) -> Any:
                return admin_stub.RefundTransaction(
                    admin_pb.RefundTransactionRequest(
                        request_id=request_id,
                        txn_id=pending.transaction.txn_id,
                        amount=common_pb2.Money(units_minor=10_000, currency_code="INR"),
                        reason="customer asked",
                    ),
                    metadata=admin.metadata,
                )

            standin.refuse_refunds = True
            for _ in range(2):  # the retry answers the same, without asking Razorpay
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await refund("razorpay-refund-1")
                error = details_of(refused.value)
                assert (error.code, error.reason) == (
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "REFUND_REFUSED",
                )
            assert standin.count("POST", f"/v1/payments/{paid.payment_id}/refund") == 1
            assert standin.refunds == []
            assert await balance(resources, user.user_id) == Decimal("250.00")  # reversed

            standin.refuse_refunds = False
            reply = await refund("razorpay-refund-2")
            (made,) = standin.refunds
            assert reply.refund_transaction.payment_transaction_id == made["id"]
            assert await balance(resources, user.user_id) == Decimal("150.00")
            await assert_ledger_balances(resources)
    finally:
        await running.stop(0)
