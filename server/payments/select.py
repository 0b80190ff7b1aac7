"""Choosing the gateway from the settings."""

from __future__ import annotations

from server.core.config import Settings
from server.payments import razorpay
from server.payments.gateway import PaymentGateway
from server.payments.sandbox import SandboxGateway


def create_gateway(settings: Settings) -> PaymentGateway:
    """The gateway ``settings.payment_gateway`` names; ValueError for unusable settings
    (the message names the variable to set)."""
    kind = settings.payment_gateway.strip().lower()
    if kind == "sandbox":
        if settings.production:
            raise ValueError(
                "GENCHARGE_PAYMENT_GATEWAY=sandbox is for development and tests; "
                "configure a real payment gateway in production (razorpay)"
            )
        return SandboxGateway()
    if kind == "razorpay":
        return razorpay.from_settings(settings)
    raise ValueError(
        f"unknown GENCHARGE_PAYMENT_GATEWAY {settings.payment_gateway!r}; use sandbox or razorpay"
    )
