"""The sandbox gateway: deterministic, in-process, for development and tests (refused in
production). See docs/payments.md for its test inputs.

It signs and verifies callbacks exactly like the real gateway (server/payments/signing.py)
under two published secrets, :data:`SANDBOX_KEY_SECRET` (checkout callbacks) and
:data:`SANDBOX_WEBHOOK_SECRET` (webhooks), so that development exercises the same
verification path; :meth:`SandboxGateway.pay` and :meth:`SandboxGateway.fail` play the
user finishing a pending payment and hand back the callback the gateway would send.

Its charges live in the process's memory: after a restart it knows none of them
(:meth:`~SandboxGateway.lookup` answers None, so the recovery job releases the keys of
charges it cannot find, and a retry charges the sandbox again).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal

from server.payments import signing
from server.payments.gateway import (
    EXTERNAL_METHODS,
    METHOD_CARD,
    METHOD_NET_BANKING,
    METHOD_UPI,
    Callback,
    CallbackRejected,
    ChargeResult,
    CheckoutCallback,
    GatewayRefused,
    RefundResult,
    VerifiedPayment,
)

#: Any method: exactly this amount (Rs 666.66) is declined.
SANDBOX_DECLINE_AMOUNT = Decimal("666.66")
#: UPI virtual payment addresses with a fixed outcome.
SANDBOX_UPI_DECLINE = "decline@sandbox"
SANDBOX_UPI_PENDING = "pending@sandbox"
#: Card tokens with a fixed outcome.
SANDBOX_CARD_DECLINE = "tok_decline"
SANDBOX_CARD_PENDING = "tok_pending"
#: Net-banking bank codes with a fixed outcome.
SANDBOX_BANK_DECLINE = "DECLINE"
SANDBOX_BANK_PENDING = "PENDING"

SANDBOX_REDIRECT_BASE = "https://sandbox.gencharge.invalid/pay/"
#: The sandbox's published signing secrets (it is never used with real money).
SANDBOX_KEY_SECRET = "sandbox-key-secret"  # noqa: S105 - published test secret
SANDBOX_WEBHOOK_SECRET = "sandbox-webhook-secret"  # noqa: S105 - published test secret

_DETAIL_KEY = {METHOD_UPI: "vpa", METHOD_CARD: "card_token", METHOD_NET_BANKING: "bank_code"}
_DECLINE = {
    METHOD_UPI: SANDBOX_UPI_DECLINE,
    METHOD_CARD: SANDBOX_CARD_DECLINE,
    METHOD_NET_BANKING: SANDBOX_BANK_DECLINE,
}
_PENDING = {
    METHOD_UPI: SANDBOX_UPI_PENDING,
    METHOD_CARD: SANDBOX_CARD_PENDING,
    METHOD_NET_BANKING: SANDBOX_BANK_PENDING,
}


@dataclass(frozen=True)
class _Charge:
    reference: str
    result: ChargeResult
    amount: Decimal
    currency: str
    #: The gateway payment id that settled it (``sbxpay_...``), once paid.
    paid_by: str = ""


class SandboxGateway:
    """A deterministic in-process gateway for development and tests.

    Outcome, by the first rule that matches:

    1. amount exactly Rs 666.66 (any method): declined (``decline_reason`` "test amount");
    2. the method's decline input (UPI vpa ``decline@sandbox``, card token
       ``tok_decline``, bank code ``DECLINE``): declined;
    3. the method's pending input (``pending@sandbox``, ``tok_pending``, ``PENDING``):
       pending, with a redirect URL;
    4. anything else: authorised.

    Charge ids are ``sbx_<random hex>``. Charges are idempotent per ``reference`` within
    the process: the same reference returns the first authorised or pending result (a
    declined attempt may be retried and decides anew).
    """

    name = "sandbox"

    def __init__(self) -> None:
        self._by_reference: dict[str, _Charge] = {}
        self._by_id: dict[str, str] = {}
        self._refunds: dict[str, RefundResult] = {}
        self._refunded: dict[str, Decimal] = {}
        self._lock = asyncio.Lock()

    async def charge(
        self,
        *,
        amount: Decimal,
        currency: str,
        method: str,
        details: Mapping[str, str],
        reference: str,
    ) -> ChargeResult:
        if method not in EXTERNAL_METHODS:
            raise ValueError(f"the sandbox gateway cannot charge by {method!r}")
        if not reference:
            raise ValueError("a charge needs a reference")
        async with self._lock:
            earlier = self._by_reference.get(reference)
            if earlier is not None and earlier.result.status != "declined":
                return earlier.result
            result = self._decide(amount, method, details)
            self._by_reference[reference] = _Charge(reference, result, amount, currency)
            self._by_id[result.payment_id] = reference
            return result

    async def lookup(self, *, reference: str) -> ChargeResult | None:
        found = self._by_reference.get(reference)
        return None if found is None else found.result

    async def verify_callback(self, callback: Callback) -> VerifiedPayment:
        if isinstance(callback, CheckoutCallback):
            signing.require_signature(
                SANDBOX_KEY_SECRET,
                signing.checkout_message(callback.order_id, callback.payment_id),
                callback.signature,
            )
            found = self._charge_by_id(callback.order_id)
            return VerifiedPayment(
                payment_id=callback.order_id,
                gateway_payment_id=callback.payment_id,
                outcome="success",
                amount=found.amount,
                currency=found.currency,
            )
        signing.require_signature(SANDBOX_WEBHOOK_SECRET, callback.body, callback.signature)
        return signing.parse_webhook(callback.body)

    async def refund(
        self, *, payment_id: str, amount: Decimal, currency: str, reference: str
    ) -> RefundResult:
        async with self._lock:
            earlier = self._refunds.get(reference)
            if earlier is not None:
                return earlier
            found = self._charge_by_id(payment_id, error=GatewayRefused)
            if found.result.status != "authorised":
                raise GatewayRefused(f"charge {payment_id} was not captured")
            refunded = self._refunded.get(payment_id, Decimal(0))
            if amount <= 0 or refunded + amount > found.amount:
                raise GatewayRefused("a refund cannot exceed what was captured")
            self._refunded[payment_id] = refunded + amount
            result = RefundResult(f"sbxrfnd_{secrets.token_hex(8)}", "processed", amount)
            self._refunds[reference] = result
            return result

    async def aclose(self) -> None:
        return None

    # --- playing the user at the gateway (development and tests) -------------------------

    def pay(self, payment_id: str) -> CheckoutCallback:
        """The user finishes the pending charge ``payment_id``: it is captured, and this is
        the signed checkout callback the app receives."""
        found = self._charge_by_id(payment_id, error=KeyError)
        paid_by = found.paid_by or f"sbxpay_{secrets.token_hex(8)}"
        self._settle(found, replace(found.result, status="authorised"), paid_by)
        message = signing.checkout_message(payment_id, paid_by)
        return CheckoutCallback(payment_id, paid_by, signing.sign(SANDBOX_KEY_SECRET, message))

    def fail(self, payment_id: str, reason: str = "payment abandoned") -> tuple[bytes, str]:
        """The pending charge ``payment_id`` fails: the ``payment.failed`` webhook (body,
        signature) the gateway sends."""
        found = self._charge_by_id(payment_id, error=KeyError)
        self._settle(found, replace(found.result, status="declined", decline_reason=reason), "")
        return self.webhook("payment.failed", payment_id, error_description=reason)

    def webhook(
        self, event: str, payment_id: str, *, error_description: str = ""
    ) -> tuple[bytes, str]:
        """A signed webhook about the charge ``payment_id`` (body, signature header)."""
        found = self._charge_by_id(payment_id, error=KeyError)
        status = {"payment.failed": "failed", "payment.authorized": "authorized"}.get(
            event, "captured"
        )
        body = signing.webhook_body(
            event,
            order_id=payment_id,
            payment_id=found.paid_by or f"sbxpay_{secrets.token_hex(8)}",
            amount_minor=int(found.amount * 100),
            currency=found.currency,
            status=status,
            error_description=error_description,
        )
        return body, signing.sign(SANDBOX_WEBHOOK_SECRET, body)

    def _settle(self, found: _Charge, result: ChargeResult, paid_by: str) -> None:
        self._by_reference[found.reference] = replace(found, result=result, paid_by=paid_by)

    def _charge_by_id(
        self, payment_id: str, *, error: type[Exception] = CallbackRejected
    ) -> _Charge:
        reference = self._by_id.get(payment_id)
        if reference is None:
            if error is CallbackRejected:
                raise CallbackRejected("the sandbox has no such charge", reason=signing.MALFORMED)
            raise error(f"the sandbox has no charge {payment_id!r}")
        return self._by_reference[reference]

    @staticmethod
    def _decide(amount: Decimal, method: str, details: Mapping[str, str]) -> ChargeResult:
        payment_id = f"sbx_{secrets.token_hex(12)}"
        value = details.get(_DETAIL_KEY[method], "")
        if method == METHOD_UPI:
            value = value.lower()
        if amount == SANDBOX_DECLINE_AMOUNT:
            return ChargeResult("declined", payment_id, decline_reason="test amount declined")
        if value == _DECLINE[method]:
            return ChargeResult("declined", payment_id, decline_reason="test input declined")
        if value == _PENDING[method]:
            return ChargeResult(
                "pending", payment_id, redirect_url=SANDBOX_REDIRECT_BASE + payment_id
            )
        return ChargeResult("authorised", payment_id)
