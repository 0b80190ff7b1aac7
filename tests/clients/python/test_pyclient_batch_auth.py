"""batch_recharge and an expired access token, through the real server: a stream refused
because the service token expired renews the credentials once (one new token for every
batch that saw the old one) and reopens, resending the unanswered items with their same
request ids; refused again before any answer, the batch fails with ``TokenExpired``.

The token expires on the server's clocks (its token clock and ``server_clock``, advanced
together), never on the wall clock: the client believes its token good for minutes."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from gencharge_client import (
    AsyncClient,
    BatchOutcome,
    BatchProgress,
    Credentials,
    GenChargeError,
    ServiceAccountCredentials,
    TokenExpired,
)
from gencharge_client.v1 import recharge_service_pb2 as recharge_pb

from server.auth.scopes import RECHARGES_WRITE
from tests.clients.python.support import debits, expired_copy, funded_user
from tests.clients.token_clock import advance
from tests.helpers.auth import create_service
from tests.helpers.clock import FakeClock, SteppedUtcClock
from tests.helpers.money import assert_ledger_balances, balance, make_plan

if TYPE_CHECKING:
    from gencharge_client.v1.services import AuthService

#: Past any access token's lifetime (the server's default is 10 minutes).
PAST_EXPIRY_SECONDS = 2 * 3600.0


def items(user_id: int, plan_id: int, count: int) -> list[recharge_pb.BatchRechargeRequest]:
    return [
        recharge_pb.BatchRechargeRequest(
            request_id=str(uuid.uuid4()), user_id=user_id, plan_id=plan_id
        )
        for _ in range(count)
    ]


async def test_an_expired_token_is_renewed_once_and_the_batches_resume(
    client: AsyncClient,
    channel: Any,
    resources: Any,
    server_clock: FakeClock,
    token_clock: SteppedUtcClock,
) -> None:
    user = await funded_user(channel, resources, "100")
    plan_id = await make_plan(resources, price="10.00")
    account = await create_service(channel, resources, [RECHARGES_WRITE])
    credentials = ServiceAccountCredentials(account.email, account.password)
    service = client.with_credentials(credentials)
    await service.auth.get_me()  # the token is issued: good for minutes, says the client
    assert credentials.renewals == 1
    advance(token_clock, server_clock, PAST_EXPIRY_SECONDS)  # ... expired, says the server
    first, second = items(user.user_id, plan_id, 3), items(user.user_id, plan_id, 2)
    progress: list[BatchProgress] = []

    async def run(
        batch: list[recharge_pb.BatchRechargeRequest], **options: Any
    ) -> list[BatchOutcome]:
        return [outcome async for outcome in service.batch_recharge(batch, **options)]

    a, b = await asyncio.gather(run(first, on_progress=progress.append), run(second))

    assert credentials.renewals == 2, "one new token for both streams"
    assert progress[-1].reconnects == 1
    for outcomes, batch in ((a, first), (b, second)):
        assert [o.item.request_id for o in outcomes] == [i.request_id for i in batch]
        assert [o.result for o in outcomes if isinstance(o.result, GenChargeError)] == []
    assert len(await debits(resources, user.user_id)) == 5, "one debit per item"
    assert await balance(resources, user.user_id) == Decimal("50.00")
    await assert_ledger_balances(resources)


class ExpiredEveryTime(Credentials):
    """Credentials whose every token is expired: a renewal that does not help."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.rejections = 0

    async def get_access_token(self, auth: AuthService) -> str:
        return self.token

    async def token_rejected(self, token: str, error: GenChargeError, auth: AuthService) -> bool:
        self.rejections += 1
        return True


async def test_a_second_refusal_in_a_row_fails_with_token_expired(
    client: AsyncClient, channel: Any, resources: Any, grpc_server: Any
) -> None:
    user = await funded_user(channel, resources, "100")
    plan_id = await make_plan(resources, price="10.00")
    account = await create_service(channel, resources, [RECHARGES_WRITE])
    live = ServiceAccountCredentials(account.email, account.password)
    token = await live.get_access_token(client.auth)
    stale = ExpiredEveryTime(expired_copy(grpc_server, token))
    service = client.with_credentials(stale)

    with pytest.raises(TokenExpired):
        async for _ in service.batch_recharge(items(user.user_id, plan_id, 2)):
            pass

    assert stale.rejections == 1, "renewed once, then the second refusal is the error"
    assert await debits(resources, user.user_id) == []
    assert await balance(resources, user.user_id) == Decimal("100.00")
