"""Brute-force limits through the real server, shared by several servers on one database."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from sqlalchemy import text

from gencharge.v1 import auth_service_pb2 as pb
from server import db, mongo
from server.app import start_server
from server.config import Settings
from server.resources import Resources
from tests.auth_helpers import PASSWORD, auth_stub, create_service, register_user
from tests.conftest import _TEST_KEYS
from tests.grpc_helpers import details_of

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
    async with db.transaction(resources.engine) as conn:
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
        Resources(settings, engine, mongo.get_database(client, mongo_url, "gencharge")),
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
