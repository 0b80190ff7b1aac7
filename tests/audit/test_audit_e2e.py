"""Audit through the real server: one AuditLog document per mutation, security events
for denied calls, and nothing lost while MongoDB is down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from gencharge.v1 import auth_service_pb2 as pb
from server.audit.scope import unit_of_work
from server.core import db, mongo
from server.core.config import Settings
from server.core.resources import Resources
from server.ops.embedded import EmbeddedMongo
from server.rpc.app import start_server
from tests.conftest import _TEST_KEYS
from tests.helpers.auth import PASSWORD, auth_stub, register_user
from tests.helpers.clock import HANG_SECONDS, FakeClock, eventually


async def _documents(
    mongo_db: Any, query: dict[str, Any], want: int, seconds: float = HANG_SECONDS
) -> list:
    """The matching AuditLog documents once there are ``want`` of them (or ``seconds``
    have passed: the caller's assert then fails with what arrived)."""

    async def enough() -> bool:
        return len(await mongo_db["AuditLog"].find(query).to_list(None)) >= want

    if await eventually(enough, within=seconds, every=0.1):
        await asyncio.sleep(0.3)  # would a duplicate follow?
    return await mongo_db["AuditLog"].find(query).to_list(None)


async def test_mutation_yields_exactly_one_audit_document(channel, resources) -> None:
    actor = await register_user(channel)
    docs = await _documents(
        resources.mongo_db, {"rpc": "/gencharge.v1.AuthService/Register"}, want=1
    )
    assert len(docs) == 1
    (doc,) = docs
    assert doc["user_id"] == f"user:{actor.user_id}"
    assert doc["table_name"] == "Users" and doc["action_type"] == "INSERT"
    assert doc["outcome"] == "ok" and doc["request_id"]
    assert PASSWORD not in str(doc)
    # A read is not audited.
    await auth_stub(channel).GetMe(pb.GetMeRequest(), metadata=actor.metadata)
    # A barrier, not a pause: the relay ships the outbox in order, so once a mutation
    # made after the read has arrived, an event of the read would have arrived too.
    marker = await register_user(channel)
    shipped = await _documents(
        resources.mongo_db,
        {"rpc": "/gencharge.v1.AuthService/Register", "user_id": f"user:{marker.user_id}"},
        want=1,
    )
    assert len(shipped) == 1
    assert not await resources.mongo_db["AuditLog"].find_one(
        {"rpc": "/gencharge.v1.AuthService/GetMe"}
    )


async def test_each_mutating_call_is_audited_once(channel, resources) -> None:
    actor = await register_user(channel)
    stub = auth_stub(channel)
    login = await stub.Login(pb.LoginRequest(email=actor.email, password=PASSWORD))
    await stub.Logout(
        pb.LogoutRequest(), metadata=(("authorization", f"Bearer {login.tokens.access_token}"),)
    )
    for rpc, table, action in [
        ("Login", "Sessions", "INSERT"),
        ("Logout", "Sessions", "UPDATE"),
    ]:
        docs = await _documents(
            resources.mongo_db, {"rpc": f"/gencharge.v1.AuthService/{rpc}"}, want=1
        )
        assert len(docs) == 1, rpc
        assert (docs[0]["table_name"], docs[0]["action_type"]) == (table, action)
        assert docs[0]["user_id"] == f"user:{actor.user_id}"


async def test_denied_and_failed_calls_are_security_events(channel, resources) -> None:
    stub = auth_stub(channel)
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetMe(pb.GetMeRequest())
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Login(pb.LoginRequest(email="nobody@example.com", password="wrong password 1"))
    denied = await _documents(
        resources.mongo_db,
        {"rpc": "/gencharge.v1.AuthService/GetMe", "action_type": "SECURITY"},
        want=1,
    )
    assert denied and denied[0]["outcome"] == "denied"
    assert denied[0]["details"]["status"] == "UNAUTHENTICATED"
    failed = await _documents(
        resources.mongo_db,
        {"rpc": "/gencharge.v1.AuthService/Login", "action_type": "SECURITY"},
        want=1,
    )
    assert failed and failed[0]["details"]["reason"] == "INVALID_CREDENTIALS"
    assert "wrong password" not in str(failed)


async def test_a_flood_of_denied_calls_is_summarised(resources) -> None:
    """Past the per-address budget, denied calls are counted, not written one by one;
    one summary event says how many there were once the window ends."""
    import dataclasses

    from server.rpc.app import start_server

    window = 3.0  # on the server's fake clock: the 10 calls land in one window however
    # slow the machine; a short window only makes the summary loop look often
    settings = resources.settings.model_copy(
        update={"security_events_per_peer": 3, "security_event_window_seconds": window}
    )
    clock = FakeClock()
    running = await start_server(
        dataclasses.replace(resources, settings=settings), "127.0.0.1:0", clock=clock
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = auth_stub(channel)
            for _ in range(10):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.GetMe(pb.GetMeRequest())
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED  # still refused
        clock.advance(window)  # the window ends: the summary loop writes its summary
        summary = await _documents(
            resources.mongo_db, {"details.suppressed_events": {"$exists": True}}, want=1
        )
    finally:
        await running.stop(0)
    single = await resources.mongo_db["AuditLog"].count_documents(
        {"rpc": "/gencharge.v1.AuthService/GetMe", "action_type": "SECURITY"}
    )
    assert single == 3
    (doc,) = summary
    assert doc["action_type"] == "SECURITY" and doc["outcome"] == "denied"
    assert doc["details"]["suppressed_events"] == 7
    assert doc["details"]["rpcs"] == [{"rpc": "/gencharge.v1.AuthService/GetMe", "count": 7}]
    assert doc["peer"].startswith("ipv4:127.0.0.1")


@pytest.fixture
async def own_mongo(tmp_path: Path) -> AsyncIterator[EmbeddedMongo]:
    server = await asyncio.to_thread(EmbeddedMongo(tmp_path / "mongo").start)
    yield server
    await asyncio.to_thread(server.stop)


async def test_mongo_outage_loses_no_event(pg_url: str, own_mongo: EmbeddedMongo) -> None:
    from migrations import mongo as mongo_migrations

    url = own_mongo.url("gencharge")
    settings = Settings(
        database_url=pg_url,
        mongo_url=url,
        listen="127.0.0.1:0",
        jwt_private_key=_TEST_KEYS[0],
        data_encryption_key=_TEST_KEYS[1],
        audit_relay_max_backoff_seconds=0.5,
    )
    engine = db.create_engine(pg_url, pool_size=4)
    client = mongo.create_client(url)
    mongo_db = mongo.get_database(client, url, "gencharge")
    await mongo_migrations.upgrade(mongo_db)
    running = await start_server(Resources(settings, unit_of_work(engine), mongo_db), "127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            await asyncio.to_thread(own_mongo.stop)
            actors = [await register_user(channel) for _ in range(5)]  # all succeed
            assert await running.relay.backlog() >= 5
            # A call that needs MongoDB itself (the dev outbox carries the code) says
            # UNAVAILABLE (retry), not INTERNAL.
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await auth_stub(channel).SendContactCode(
                    pb.SendContactCodeRequest(channel=pb.CONTACT_CHANNEL_PHONE),
                    metadata=actors[0].metadata,
                )
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            await asyncio.to_thread(own_mongo.start)
            docs = await _documents(mongo_db, {"rpc": "/gencharge.v1.AuthService/Register"}, want=5)
            assert sorted(d["user_id"] for d in docs) == sorted(f"user:{a.user_id}" for a in actors)
    finally:
        await running.stop(0)
        await client.close()
        await engine.dispose()
