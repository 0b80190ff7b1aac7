"""Health follows the databases: NOT_SERVING while MongoDB is down, SERVING again after."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.audit.scope import unit_of_work
from server.core import db, mongo
from server.core.config import Settings
from server.core.resources import Resources
from server.ops.embedded import EmbeddedMongo
from server.rpc.app import start_server
from tests.helpers.clock import HANG_SECONDS, eventually


@pytest.fixture
async def own_mongo(tmp_path: Path) -> AsyncIterator[EmbeddedMongo]:
    server = await asyncio.to_thread(EmbeddedMongo(tmp_path / "mongo").start)
    yield server
    await asyncio.to_thread(server.stop)


async def _status(stub: health_pb2_grpc.HealthStub) -> int:
    reply = await stub.Check(health_pb2.HealthCheckRequest(service="gencharge.v1.PlanService"))
    return int(reply.status)


async def _wait_for(stub: health_pb2_grpc.HealthStub, wanted: int) -> None:
    """Until the status is ``wanted``; the deadline only catches a hang."""

    async def reached() -> bool:
        return await _status(stub) == wanted

    assert await eventually(reached, every=0.1), f"health never became {wanted}"


async def test_health_tracks_mongo_outage(pg_url: str, own_mongo: EmbeddedMongo) -> None:
    url = own_mongo.url("gencharge")
    settings = Settings(database_url=pg_url, mongo_url=url, listen="127.0.0.1:0")
    engine = db.create_engine(pg_url, pool_size=2)
    client = mongo.create_client(url)
    resources = Resources(
        settings, unit_of_work(engine), mongo.get_database(client, url, "gencharge")
    )
    # A generous probe bound: SERVING again must not need a reconnect within 1 s. The
    # outage is still seen at once (the ping fails; it does not hang).
    running = await start_server(
        resources, "127.0.0.1:0", health_interval=0.2, health_timeout=HANG_SECONDS
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            await _wait_for(stub, health_pb2.HealthCheckResponse.SERVING)
            await asyncio.to_thread(own_mongo.stop)
            await _wait_for(stub, health_pb2.HealthCheckResponse.NOT_SERVING)
            await asyncio.to_thread(own_mongo.start)  # same port, same data folder
            await _wait_for(stub, health_pb2.HealthCheckResponse.SERVING)
    finally:
        await running.stop(0)
        await client.close()
        await engine.dispose()


async def test_health_not_serving_before_databases_answer(pg_url: str, tmp_path: Path) -> None:
    """With MongoDB unreachable from the start, the server never claims SERVING."""
    from server.ops.embedded import free_port

    url = f"mongodb://127.0.0.1:{free_port()}/gencharge?directConnection=true"
    settings = Settings(database_url=pg_url, mongo_url=url, listen="127.0.0.1:0")
    engine = db.create_engine(pg_url, pool_size=1)
    client = mongo.create_client(url)
    resources = Resources(
        settings, unit_of_work(engine), mongo.get_database(client, url, "gencharge")
    )
    running = await start_server(resources, "127.0.0.1:0", health_interval=0.2)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for _ in range(10):
                assert await _status(stub) == health_pb2.HealthCheckResponse.NOT_SERVING
                await asyncio.sleep(0.1)
    finally:
        await running.stop(0)
        await client.close()
        await engine.dispose()
