"""Payment gateways: the interface the wallet and recharge flows charge through
(gateway.py), the sandbox (sandbox.py), Razorpay (razorpay.py), the callback signing
scheme (signing.py), and :func:`create_gateway`, which picks one from the settings."""

from server.payments.gateway import ChargeResult, PaymentGateway
from server.payments.sandbox import SandboxGateway
from server.payments.select import create_gateway

__all__ = ["ChargeResult", "PaymentGateway", "SandboxGateway", "create_gateway"]
