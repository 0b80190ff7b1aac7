"""The payment-gateway interface and the sandbox gateway that ships.

A gateway charges an amount by UPI, card or net banking and answers one of three
outcomes (:class:`ChargeResult`): ``authorised`` (money captured), ``declined``
(nothing captured) or ``pending`` (the user must finish at ``redirect_url``; the gateway
reports the outcome later through ``WalletService.ConfirmPayment``).

``reference`` is our idempotency reference for the charge: charging twice with the same
reference must return the first (authorised or pending) result and capture at most
once (real gateways call it an idempotency key or merchant order id); a declined
attempt captured nothing and may be retried with the same reference. Callers pass a
reference derived from the caller and the request's ``request_id``, which also serves
for reconciliation.

The sandbox (:class:`SandboxGateway`) is deterministic; see docs/payments.md for its
test inputs. It is refused in production.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol

from server.core.config import Settings

ChargeStatus = Literal["authorised", "declined", "pending"]

#: Method names, as in the database enum ``payment_method_enum``.
METHOD_UPI = "UPI"
METHOD_CARD = "Card"
METHOD_NET_BANKING = "NetBanking"
EXTERNAL_METHODS = frozenset({METHOD_UPI, METHOD_CARD, METHOD_NET_BANKING})


@dataclass(frozen=True)
class ChargeResult:
    status: ChargeStatus
    #: The gateway's own payment id (stored as ``transactions.payment_transaction_id``).
    payment_id: str
    #: For ``pending``: where the user completes the payment.
    redirect_url: str | None = None
    #: For ``declined``: the gateway's reason.
    decline_reason: str | None = None


class PaymentGateway(Protocol):
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
        may be charged again (a new attempt).
        """
        ...


# --- the sandbox ---------------------------------------------------------------------------

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


class SandboxGateway:
    """A deterministic in-process gateway for development and tests.

    Outcome, by the first rule that matches:

    1. amount exactly Rs 666.66 (any method): declined (``decline_reason`` "test amount");
    2. the method's decline input (UPI vpa ``decline@sandbox``, card token
       ``tok_decline``, bank code ``DECLINE``): declined;
    3. the method's pending input (``pending@sandbox``, ``tok_pending``, ``PENDING``):
       pending, with a redirect URL;
    4. anything else: authorised.

    Payment ids are ``sbx_<random hex>``. Charges are idempotent per ``reference``
    within the process: the same reference returns the first authorised or pending
    result (declined attempts are not remembered, so a reference may be retried).
    """

    def __init__(self) -> None:
        self._results: dict[str, ChargeResult] = {}
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
            earlier = self._results.get(reference)
            if earlier is not None:
                return earlier
            result = self._decide(amount, method, details)
            if result.status != "declined":
                self._results[reference] = result
            return result

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


def create_gateway(settings: Settings) -> PaymentGateway:
    """The gateway ``settings.payment_gateway`` names; ValueError for unusable settings."""
    kind = settings.payment_gateway.strip().lower()
    if kind == "sandbox":
        if settings.production:
            raise ValueError(
                "GENCHARGE_PAYMENT_GATEWAY=sandbox is for development and tests; "
                "configure a real payment gateway in production"
            )
        return SandboxGateway()
    raise ValueError(f"unknown GENCHARGE_PAYMENT_GATEWAY {settings.payment_gateway!r}; use sandbox")
