"""Callback signatures and the webhook format (Razorpay's public scheme, which the
sandbox shares so that development exercises the same verification code).

- Checkout callback: ``signature = hex(HMAC-SHA256(key_secret, order_id + "|" + payment_id))``.
- Webhook: ``X-Razorpay-Signature = hex(HMAC-SHA256(webhook_secret, raw_body))``, computed
  over the exact bytes delivered; the body is a JSON event such as
  ``{"event": "payment.captured", "payload": {"payment": {"entity": {...}}}}`` where the
  payment entity carries ``id``, ``order_id``, ``amount`` (in paise), ``currency``,
  ``status`` and, for failures, ``error_description``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal

from server.payments.gateway import CallbackOutcome, CallbackRejected, VerifiedPayment

#: Webhook events that settle a charge, and the outcome each reports.
WEBHOOK_OUTCOMES: dict[str, CallbackOutcome | None] = {
    "payment.captured": "success",
    "order.paid": "success",
    "payment.failed": "failed",
    "payment.authorized": None,
}
SIGNATURE_INVALID = "CALLBACK_SIGNATURE_INVALID"
MALFORMED = "CALLBACK_MALFORMED"
#: Longest signature we read (a hex SHA-256 is 64 characters).
MAX_SIGNATURE = 128


def sign(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def checkout_message(order_id: str, payment_id: str) -> bytes:
    return f"{order_id}|{payment_id}".encode()


def require_signature(secret: str, message: bytes, signature: str) -> None:
    """CallbackRejected unless ``signature`` is ``message``'s HMAC under ``secret``
    (compared in constant time)."""
    if not signature or len(signature) > MAX_SIGNATURE or not secret:
        raise CallbackRejected("the callback is not signed", reason=SIGNATURE_INVALID)
    candidate = signature.strip().lower()
    # compare_digest takes ASCII strings only; anything else cannot be a hex digest.
    if not candidate.isascii() or not hmac.compare_digest(sign(secret, message), candidate):
        raise CallbackRejected(
            "the callback's signature does not match its content", reason=SIGNATURE_INVALID
        )


def parse_webhook(body: bytes) -> VerifiedPayment:
    """What a (verified) webhook body reports; CallbackRejected when it is not a payment
    event we understand."""
    try:
        event = json.loads(body)
        name = event["event"]
        entity = event["payload"]["payment"]["entity"]
        order_id = entity.get("order_id") or ""
        payment_id = entity.get("id") or ""
        amount_minor = entity["amount"]
        currency = entity["currency"]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CallbackRejected("the webhook is not a payment event", reason=MALFORMED) from exc
    if name not in WEBHOOK_OUTCOMES:
        raise CallbackRejected(f"webhook event {name!r} is not handled", reason=MALFORMED)
    if (
        not isinstance(order_id, str)
        or not order_id
        or not isinstance(payment_id, str)
        or not isinstance(amount_minor, int)
        or isinstance(amount_minor, bool)
        or amount_minor < 0
        or not isinstance(currency, str)
    ):
        raise CallbackRejected("the webhook's payment is incomplete", reason=MALFORMED)
    reason = entity.get("error_description") or entity.get("error_reason") or ""
    return VerifiedPayment(
        payment_id=order_id,
        gateway_payment_id=payment_id,
        outcome=WEBHOOK_OUTCOMES[name],
        amount=Decimal(amount_minor) / 100,
        currency=currency,
        failure_reason=str(reason)[:500],
    )


def webhook_body(
    event: str,
    *,
    order_id: str,
    payment_id: str,
    amount_minor: int,
    currency: str,
    status: str,
    error_description: str = "",
) -> bytes:
    """A webhook body in the gateway's shape (the sandbox sends these; tests build them)."""
    entity: dict[str, object] = {
        "id": payment_id,
        "entity": "payment",
        "amount": amount_minor,
        "currency": currency,
        "status": status,
        "order_id": order_id,
    }
    if error_description:
        entity["error_description"] = error_description
    return json.dumps(
        {"entity": "event", "event": event, "payload": {"payment": {"entity": entity}}},
        separators=(",", ":"),
    ).encode()
