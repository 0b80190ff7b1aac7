"""GenCharge client SDK: typed async and sync clients for the GenCharge gRPC API.

    from gencharge_client import AsyncClient

    async with AsyncClient("localhost:50051") as client:
        session = await client.login(email="asha@example.com", password="...")
        me = client.with_credentials(session)
        wallet = await me.wallet.get_wallet()

See the README and docs/clients/python.md. Messages live in ``gencharge_client.v1``
(``from gencharge_client.v1 import recharge_service_pb2``).
"""

from gencharge_client.batch import BatchOutcome, BatchProgress, BatchProtocolError
from gencharge_client.client import AsyncClient, Client
from gencharge_client.credentials import (
    Credentials,
    MfaRequired,
    ServiceAccountCredentials,
    SessionCredentials,
    StaticTokenCredentials,
)
from gencharge_client.errors import (
    AccountBlocked,
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    GenChargeError,
    IdempotencyKeyReused,
    InProgress,
    InsufficientFunds,
    Internal,
    InvalidArgument,
    InvalidCredentials,
    InvalidRefreshToken,
    InvalidToken,
    MissingScope,
    NotFound,
    PaymentDeclined,
    PermissionDenied,
    PlanInactive,
    PriceChanged,
    RateLimited,
    RefreshTokenReused,
    ResourceExhausted,
    SessionEnded,
    TokenExpired,
    Unauthenticated,
    Unavailable,
)
from gencharge_client.money import format_money, from_money, to_money
from gencharge_client.retry import RetryPolicy

__version__ = "0.1.0"

__all__ = [
    "AccountBlocked",
    "AlreadyExists",
    "AsyncClient",
    "BatchOutcome",
    "BatchProgress",
    "BatchProtocolError",
    "Client",
    "Credentials",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "GenChargeError",
    "IdempotencyKeyReused",
    "InProgress",
    "InsufficientFunds",
    "Internal",
    "InvalidArgument",
    "InvalidCredentials",
    "InvalidRefreshToken",
    "InvalidToken",
    "MfaRequired",
    "MissingScope",
    "NotFound",
    "PaymentDeclined",
    "PermissionDenied",
    "PlanInactive",
    "PriceChanged",
    "RateLimited",
    "RefreshTokenReused",
    "ResourceExhausted",
    "RetryPolicy",
    "ServiceAccountCredentials",
    "SessionCredentials",
    "SessionEnded",
    "StaticTokenCredentials",
    "TokenExpired",
    "Unauthenticated",
    "Unavailable",
    "format_money",
    "from_money",
    "to_money",
]
