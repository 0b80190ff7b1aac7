"""Brute-force limits through the real server, shared by several servers on one database."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from sqlalchemy import text

from gencharge.v1 import auth_service_pb2 as pb
from server.audit.scope import unit_of_work
from server.core import db, mongo
from server.core.config import Settings
from server.core.resources import Resources
from server.rpc.app import start_server
from tests.conftest import _TEST_KEYS
from tests.helpers.auth import PASSWORD, auth_stub, create_service, register_user
from tests.helpers.rpc import details_of

WRONG = "definitely not it 123"


async def _code(call: Any) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_login_limit_trips_and_expires(channel, resources) -> None:
    actor = await register_user(channel)
    stub = auth_stub(channel)
    for _ in range(5):
        assert await _code(stub.Login(pb.LoginRequest(email=actor.email, password=WRONG))) == (
            grpc.StatusCode.UNAUTHENTICATED
        )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Login(pb.LoginRequest(email=actor.email, password=PASSWORD))
    details = details_of(info.value)
    assert details.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert 0 < int(details.metadata["retry_after_seconds"]) <= 900
    # Other accounts from the same peer are unaffected.
    other = await register_user(channel)
    await stub.Login(pb.LoginRequest(email=other.email, password=PASSWORD))
    # Blocks end by time alone (no admin needed): move the clock past the block.
    async with resources.db.transaction() as conn:
        await conn.execute(
            text("UPDATE auth_throttle SET blocked_until = now() - interval '1 second'")
        )
    reply = await stub.Login(pb.LoginRequest(email=actor.email, password=PASSWORD))
    assert reply.tokens.access_token


async def test_service_token_limit(channel, resources) -> None:
    service = await create_service(channel, resources)
    stub = auth_stub(channel)
    request = pb.IssueServiceTokenRequest(client_id=service.email, client_secret="gcs_wrong")
    for _ in range(5):
        assert await _code(stub.IssueServiceToken(request)) == grpc.StatusCode.UNAUTHENTICATED
    assert (
        await _code(
            stub.IssueServiceToken(
                pb.IssueServiceTokenRequest(client_id=service.email, client_secret=service.password)
            )
        )
        == grpc.StatusCode.RESOURCE_EXHAUSTED
    )


async def test_limits_hold_across_servers_sharing_a_database(
    channel, resources, pg_url: str, mongo_url: str
) -> None:
    """A second server (own engine, own caches) on the same databases: failures made
    through either count together."""
    settings = Settings(
        database_url=pg_url,
        mongo_url=mongo_url,
        listen="127.0.0.1:0",
        jwt_private_key=_TEST_KEYS[0],
        data_encryption_key=_TEST_KEYS[1],
    )
    engine = db.create_engine(pg_url, pool_size=2)
    client = mongo.create_client(mongo_url)
    second = await start_server(
        Resources(
            settings, unit_of_work(engine), mongo.get_database(client, mongo_url, "gencharge")
        ),
        "127.0.0.1:0",
    )
    try:
        actor = await register_user(channel)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as other_channel:
            stubs = [auth_stub(channel), auth_stub(other_channel)]
            for attempt in range(5):
                stub = stubs[attempt % 2]
                code = await _code(stub.Login(pb.LoginRequest(email=actor.email, password=WRONG)))
                assert code == grpc.StatusCode.UNAUTHENTICATED
            for stub in stubs:
                code = await _code(
                    stub.Login(pb.LoginRequest(email=actor.email, password=PASSWORD))
                )
                assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await second.stop(0)
        await client.close()
        await engine.dispose()


def _from(address: str) -> tuple[tuple[str, str], ...]:
    return (("x-forwarded-for", f"198.51.100.250, {address}"),)


async def test_limits_apply_to_the_client_a_trusted_proxy_names(channel, resources) -> None:
    """Behind a trusted proxy (here: loopback) the per-address limits key on the
    forwarded client address: one client's failures do not block another's."""
    import dataclasses

    settings = resources.settings.model_copy(update={"trusted_proxies": "127.0.0.0/8, ::1"})
    proxied = await start_server(dataclasses.replace(resources, settings=settings), "127.0.0.1:0")
    try:
        actor = await register_user(channel)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{proxied.port}") as through_proxy:
            stub = auth_stub(through_proxy)
            wrong = pb.LoginRequest(email=actor.email, password=WRONG)
            right = pb.LoginRequest(email=actor.email, password=PASSWORD)
            for _ in range(5):
                code = await _code(stub.Login(wrong, metadata=_from("203.0.113.5")))
                assert code == grpc.StatusCode.UNAUTHENTICATED
            assert await _code(stub.Login(right, metadata=_from("203.0.113.5"))) == (
                grpc.StatusCode.RESOURCE_EXHAUSTED
            )
            # Another client behind the same proxy logs in; the session records it.
            reply = await stub.Login(right, metadata=_from("203.0.113.77"))
            sessions = await auth_stub(through_proxy).ListSessions(
                pb.ListSessionsRequest(),
                metadata=(("authorization", f"Bearer {reply.tokens.access_token}"),),
            )
            assert "203.0.113.77" in {s.ip_address for s in sessions.sessions}
    finally:
        await proxied.stop(0)


async def test_forwarded_addresses_from_untrusted_peers_are_ignored(channel) -> None:
    """Without trusted proxies a client cannot pick its address to dodge the limits."""
    actor = await register_user(channel)
    stub = auth_stub(channel)
    for attempt in range(5):
        wrong = pb.LoginRequest(email=actor.email, password=WRONG)
        code = await _code(stub.Login(wrong, metadata=_from(f"203.0.113.{attempt}")))
        assert code == grpc.StatusCode.UNAUTHENTICATED
    right = pb.LoginRequest(email=actor.email, password=PASSWORD)
    assert await _code(stub.Login(right, metadata=_from("203.0.113.99"))) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED
    )
