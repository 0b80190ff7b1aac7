"""Payment gateways: the interface the wallet and recharge flows charge through."""

from server.payments.gateway import (
    ChargeResult,
    PaymentGateway,
    SandboxGateway,
    create_gateway,
)

__all__ = ["ChargeResult", "PaymentGateway", "SandboxGateway", "create_gateway"]
