"""Service-account tokens issued before a cut-off stop working (issue #10: after a
restore, tokens issued before it must fail, and service tokens carry no session).

Through the real server: ``retire_service_tokens`` in a transaction (as RestoreBackup
calls it), then the old token answers UNAUTHENTICATED ``SESSION_ENDED`` and a new one
works. The server's token clock is a fake (``TokenService`` takes one) so the whole-second
boundary of ``iat`` is tested exactly, without waiting for the real clock to tick.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import jwt
import pytest
from sqlalchemy import select

from gencharge.v1 import auth_service_pb2 as auth_pb
from server.auth import domain as auth_domain
from server.core.schema import service_accounts
from tests.helpers.auth import Actor, auth_stub, create_service, register_user
from tests.helpers.clock import FakeClock, FakeUtcClock
from tests.helpers.rpc import details_of


@pytest.fixture
def token_clock(grpc_server: Any, monkeypatch: pytest.MonkeyPatch) -> FakeUtcClock:
    """The server's token clock (``iat``, and what expiries are checked against), 0.9 s
    into the current real second so keys and expiries stay valid."""
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=0.9)
    clock = FakeUtcClock(start)
    monkeypatch.setattr(grpc_server.app.security.tokens, "_clock", clock)
    return clock


async def _issue(channel: grpc.aio.Channel, service: Actor) -> Actor:
    reply = await auth_stub(channel).IssueServiceToken(
        auth_pb.IssueServiceTokenRequest(client_id=service.email, client_secret=service.password)
    )
    return Actor(kind="service", access_token=reply.access_token, email=service.email)


def _iat(actor: Actor) -> datetime:
    claims = jwt.decode(actor.access_token, options={"verify_signature": False})
    return datetime.fromtimestamp(claims["iat"], UTC)


async def _get_me(channel: grpc.aio.Channel, actor: Actor) -> grpc.aio.AioRpcError | None:
    """None when GetMe answers, the error otherwise."""
    try:
        await auth_stub(channel).GetMe(auth_pb.GetMeRequest(), metadata=actor.metadata)
    except grpc.aio.AioRpcError as error:
        return error
    return None


async def _retired(channel: grpc.aio.Channel, actor: Actor) -> bool:
    error = await _get_me(channel, actor)
    if error is None:
        return False
    details = details_of(error)
    assert (details.code, details.reason) == (grpc.StatusCode.UNAUTHENTICATED, "SESSION_ENDED")
    return True


async def _retire(resources: Any, now: datetime) -> int:
    async with resources.db.transaction() as conn:
        return await auth_domain.retire_service_tokens(now=now, conn=conn)


async def _cutoffs(resources: Any) -> dict[str, datetime | None]:
    async with resources.db.read_only() as conn:
        rows = await conn.execute(
            select(service_accounts.c.client_id, service_accounts.c.tokens_valid_after)
        )
        return {r.client_id: r.tokens_valid_after for r in rows}


async def test_tokens_issued_before_the_cutoff_stop_and_new_ones_work(
    channel: grpc.aio.Channel, resources: Any, grpc_server: Any, token_clock: FakeUtcClock
) -> None:
    second = token_clock.now.replace(microsecond=0)  # S; the clock reads S + 0.9
    service = await create_service(channel, resources)
    old = await _issue(channel, service)
    assert _iat(old) == second
    user = await register_user(channel)
    assert await _get_me(channel, old) is None

    token_clock.advance(0.2)  # S+1.1: in the cut-off's second, before it
    same_second_before = await _issue(channel, service)
    assert _iat(same_second_before) == second + timedelta(seconds=1)

    cutoff = second + timedelta(seconds=1.3)
    accounts = len(await _cutoffs(resources))
    assert await _retire(resources, cutoff) == accounts >= 1
    grpc_server.app.security.authenticator.forget_all()
    assert (await _cutoffs(resources))[service.email] == cutoff

    assert await _retired(channel, old)
    # iat has whole seconds: a token of the cut-off's own second is kept, so one issued
    # just after the cut-off (below) can never be refused.
    assert not await _retired(channel, same_second_before)

    token_clock.advance(0.3)  # S+1.4: the cut-off's second, after it
    same_second_after = await _issue(channel, service)
    assert _iat(same_second_after) == second + timedelta(seconds=1)
    assert not await _retired(channel, same_second_after)
    token_clock.advance(1.0)  # S+2.4
    later = await _issue(channel, service)
    assert not await _retired(channel, later)

    assert await _retired(channel, old)  # still refused, cached or not
    assert await _get_me(channel, user) is None  # sessions are not the cut-off's business


async def test_other_replicas_see_the_cutoff_when_their_cache_ages_out(
    channel: grpc.aio.Channel,
    resources: Any,
    server_clock: FakeClock,
    token_clock: FakeUtcClock,
) -> None:
    """Without ``forget_all`` (another replica's view), the cached account state holds
    for ``auth_cache_seconds``, then the cut-off applies."""
    service = await create_service(channel, resources)
    old = await _issue(channel, service)
    assert await _get_me(channel, old) is None
    await _retire(resources, token_clock.now + timedelta(seconds=1))
    assert not await _retired(channel, old)  # this replica's cache
    server_clock.advance(resources.settings.auth_cache_seconds + 1.0)
    assert await _retired(channel, old)


async def test_retire_counts_every_account_and_never_moves_a_cutoff_back(
    channel: grpc.aio.Channel, resources: Any
) -> None:
    first = await create_service(channel, resources)
    second = await create_service(channel, resources)
    assert set(await _cutoffs(resources)) >= {first.email, second.email}
    assert set((await _cutoffs(resources)).values()) == {None}

    later = datetime(2026, 11, 2, 12, 0, 0, 250_000, tzinfo=UTC)
    count = await _retire(resources, later)
    assert count == len(await _cutoffs(resources))
    # An earlier cut-off (a clock set back) keeps the later one.
    assert await _retire(resources, later - timedelta(hours=1)) == count
    assert set((await _cutoffs(resources)).values()) == {later}
    even_later = later + timedelta(minutes=5)
    await _retire(resources, even_later)
    assert set((await _cutoffs(resources)).values()) == {even_later}

    with pytest.raises(ValueError, match="aware"):
        await _retire(resources, datetime(2026, 11, 2, 12, 0))
