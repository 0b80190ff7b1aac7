"""The payment-gateway interface (docs/payments.md).

A gateway charges an amount by UPI, card or net banking and answers one of three
outcomes (:class:`ChargeResult`): ``authorised`` (money captured), ``declined``
(nothing captured) or ``pending`` (the user must finish at ``redirect_url``; the gateway
reports the outcome later in a signed callback, which a payments edge service forwards
through ``WalletService.ConfirmPayment``).

``reference`` is our idempotency reference for the charge: charging twice with the same
reference must return the first (authorised or pending) result and capture at most
once (real gateways call it an idempotency key, receipt or merchant order id); a
declined attempt captured nothing and may be retried with the same reference. Callers
pass a reference derived from the caller and the request's ``request_id``; the same
reference finds the charge again (:meth:`PaymentGateway.lookup`) when the service lost
track of it (a crash between the charge and its record: the recovery job, server/recovery).

``ChargeResult.payment_id`` is the id the gateway gave the charge when it was made (for
Razorpay the order id); it is stored as ``transactions.payment_transaction_id`` and is
what a verified callback names (:attr:`VerifiedPayment.payment_id`).

Two implementations ship: the deterministic :class:`server.payments.sandbox.SandboxGateway`
(development and tests; refused in production) and
:class:`server.payments.razorpay.RazorpayGateway`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol

ChargeStatus = Literal["authorised", "declined", "pending"]
CallbackOutcome = Literal["success", "failed"]

#: Method names, as in the database enum ``payment_method_enum``.
METHOD_UPI = "UPI"
METHOD_CARD = "Card"
METHOD_NET_BANKING = "NetBanking"
EXTERNAL_METHODS = frozenset({METHOD_UPI, METHOD_CARD, METHOD_NET_BANKING})


@dataclass(frozen=True)
class ChargeResult:
    status: ChargeStatus
    #: The gateway's id of the charge (stored as ``transactions.payment_transaction_id``).
    payment_id: str
    #: For ``pending``: where the user completes the payment.
    redirect_url: str | None = None
    #: For ``declined``: the gateway's reason.
    decline_reason: str | None = None


@dataclass(frozen=True)
class CheckoutCallback:
    """What the gateway's checkout hands the app when the user finishes paying: the
    charge (order) id, the gateway's payment id and the signature over both."""

    order_id: str
    payment_id: str
    signature: str


@dataclass(frozen=True)
class WebhookCallback:
    """A webhook exactly as the gateway delivered it: the raw request body (the
    signature covers these bytes, so they must not be re-encoded) and the value of the
    signature header."""

    body: bytes
    signature: str


Callback = CheckoutCallback | WebhookCallback


@dataclass(frozen=True)
class VerifiedPayment:
    """What a genuine callback says about one charge."""

    #: The charge's id as :attr:`ChargeResult.payment_id` gave it (the order id).
    payment_id: str
    #: The gateway's id of the payment that settled the charge (``pay_...``); empty for a
    #: failure that names none.
    gateway_payment_id: str
    #: ``success`` (captured), ``failed``, or None: the callback is genuine but reports
    #: no final outcome (an event we do not act on, e.g. ``payment.authorized``).
    outcome: CallbackOutcome | None
    #: Amount and currency the gateway settled, to check against our record.
    amount: Decimal
    currency: str
    failure_reason: str = ""


@dataclass(frozen=True)
class RefundResult:
    refund_id: str
    #: ``processed`` (money on its way back), ``pending`` or ``failed``.
    status: Literal["processed", "pending", "failed"]
    amount: Decimal


class CallbackRejected(Exception):
    """A callback that is not genuine (bad or missing signature) or cannot be read.

    ``reason`` is an ErrorInfo reason: ``CALLBACK_SIGNATURE_INVALID`` (the signature does
    not match the bytes) or ``CALLBACK_MALFORMED`` (genuine bytes that do not describe a
    payment we can act on, or an unknown charge)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class GatewayError(Exception):
    """The gateway could not be reached or answered with an error after the retries;
    nothing is known about the outcome (the reference makes a retry safe)."""


class GatewayRefused(ValueError):
    """The gateway definitely refused the request and did nothing (e.g. a refund of more
    than was captured, of a payment not captured, or one the bank no longer accepts):
    unlike :class:`GatewayError`, the outcome is known. A ``ValueError``, as the adapters'
    own refusals of a request they cannot make."""


class PaymentGateway(Protocol):
    #: ``sandbox`` or ``razorpay``: stored nowhere, shown in logs and health.
    name: str

    async def charge(
        self,
        *,
        amount: Decimal,
        currency: str,
        method: str,
        details: Mapping[str, str],
        reference: str,
    ) -> ChargeResult:
        """Charge ``amount``.

        The same ``reference`` again returns the first authorised or pending result
        without charging twice; a declined charge captured nothing, so its reference
        may be charged again (a new attempt). Raises :class:`GatewayError` when the
        outcome is unknown.
        """
        ...

    async def lookup(self, *, reference: str) -> ChargeResult | None:
        """The charge made under ``reference`` as the gateway knows it now: authorised
        (captured), pending (waiting for the user) or declined (nothing captured); None
        when the gateway has no charge under it. Raises :class:`GatewayError`."""
        ...

    async def verify_callback(self, callback: Callback) -> VerifiedPayment:
        """Check the callback's signature over its exact bytes and say what it reports;
        raises :class:`CallbackRejected` for anything not genuine, and
        :class:`GatewayError` when the gateway must be asked and cannot be."""
        ...

    async def refund(
        self, *, payment_id: str, amount: Decimal, currency: str, reference: str
    ) -> RefundResult:
        """Refund ``amount`` of the charge ``payment_id`` (a :attr:`ChargeResult.payment_id`);
        ``reference`` makes a retried refund return the first one. Raises
        :class:`GatewayRefused` (or another ``ValueError``) when the refund was refused and
        nothing was refunded, :class:`GatewayError` when the outcome is unknown."""
        ...

    async def aclose(self) -> None:
        """Release connections (called at shutdown)."""
        ...
