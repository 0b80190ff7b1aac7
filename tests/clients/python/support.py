"""Helpers of the Python SDK's tests (fixtures are in conftest.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from gencharge_client import AsyncClient, RetryPolicy, ServiceAccountCredentials
from gencharge_client.v1 import common_pb2
from sqlalchemy import text

from server.auth.scopes import RECHARGES_WRITE
from server.auth.tokens import TokenService
from tests.helpers.auth import create_service, register_user
from tests.helpers.clock import HANG_SECONDS
from tests.helpers.money import fund

#: Retries without real waiting: the backoff is jittered over milliseconds; each attempt's
#: deadline only catches a hang.
FAST_RETRY = RetryPolicy(initial_backoff=0.01, max_backoff=0.05, timeout=HANG_SECONDS)


class WallClock:
    """Seconds since the epoch for the SDK's credentials, moved only by setting ``now``:
    the client believes its token is about to expire without anyone waiting for it."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


REPO_ROOT = Path(__file__).resolve().parents[3]
#: The SDK's guide: every code block in it is run by the tests.
DOC = REPO_ROOT / "docs" / "clients" / "python.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)


#: The package's own README: its examples are type-checked.
CLIENT_README = REPO_ROOT / "clients" / "python" / "README.md"


def doc_blocks(language: str | None = None, doc: Path = DOC) -> list[tuple[str, str]]:
    """The fenced code blocks of ``doc`` (the guide unless given) as (language, body), in
    order (one language if given)."""
    blocks = _FENCE.findall(doc.read_text(encoding="utf-8"))
    return [(lang, body) for lang, body in blocks if language in (None, lang)]


def expired_copy(grpc_server: Any, token: str) -> str:
    """The same principal and session as ``token``, signed with the server's key, but
    issued two hours ago (expired an hour and more ago)."""
    claims = jwt.decode(token, options={"verify_signature": False})
    service = grpc_server.security.tokens
    past = TokenService(
        service.keyring,
        issuer=service.issuer,
        audience=service.audience,
        ttl_seconds=service.ttl_seconds,
        clock=lambda: datetime.now(UTC) - timedelta(hours=2),
    )
    principal_type, _, principal_id = claims["sub"].partition(":")
    expired, _ = past.issue(
        principal_type=principal_type,
        principal_id=principal_id,
        role=claims["role"],
        session_id=claims.get("sid"),
    )
    return expired


async def debits(resources: Any, user_id: int) -> list[int]:
    """The ids of the customer's debit transactions (the ledger), oldest first."""
    async with resources.db.read_only() as conn:
        rows = await conn.execute(
            text(
                "SELECT txn_id FROM transactions WHERE user_id = :u AND txn_type = 'debit'"
                " ORDER BY txn_id"
            ),
            {"u": user_id},
        )
        return [row.txn_id for row in rows]


async def funded_user(channel: Any, resources: Any, rupees: str) -> Any:
    """A registered customer (``tests.helpers.auth.Actor``) with ``rupees`` in the wallet."""
    user = await register_user(channel)
    await fund(resources, user.user_id, rupees)
    return user


async def partner(client: AsyncClient, channel: Any, resources: Any) -> AsyncClient:
    """``client`` acting as a new service account holding recharges.write."""
    service = await create_service(channel, resources, [RECHARGES_WRITE])
    return client.with_credentials(ServiceAccountCredentials(service.email, service.password))


def upi(vpa: str) -> dict[str, Any]:
    """RechargeRequest fields paying by UPI from ``vpa`` (``decline@sandbox`` declines)."""
    return {
        "payment_method": common_pb2.PAYMENT_METHOD_UPI,
        "payment_details": common_pb2.PaymentDetails(upi=common_pb2.UpiPayment(vpa=vpa)),
    }
