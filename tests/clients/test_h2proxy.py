"""The answer-losing proxy the SDK tests rely on, through the real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gencharge.v1 import auth_service_pb2 as auth_pb
from tests.clients.h2proxy import H2Proxy
from tests.helpers.auth import PASSWORD, auth_stub, register_user
from tests.helpers.clock import HANG_SECONDS


@pytest.fixture
async def proxy(grpc_server: Any) -> AsyncIterator[H2Proxy]:
    async with H2Proxy("127.0.0.1", grpc_server.port) as running:
        yield running


async def _control(proxy: H2Proxy, line: str) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.control_port)
    try:
        writer.write(f"{line}\n".encode())
        await writer.drain()
        return (await asyncio.wait_for(reader.readline(), HANG_SECONDS)).decode().strip()
    finally:
        writer.close()


async def test_forwards_until_armed_then_loses_the_answer_of_work_done(
    proxy: H2Proxy, channel: grpc.aio.Channel
) -> None:
    async with grpc.aio.insecure_channel(proxy.address) as through:
        await auth_stub(through).GetJwks(auth_pb.GetJwksRequest(), timeout=HANG_SECONDS)
        proxy.arm(1)
        email = "lost-answer@example.com"
        with pytest.raises(grpc.aio.AioRpcError) as lost:
            await register_user(through, email=email)
        assert lost.value.code() == grpc.StatusCode.UNAVAILABLE
        assert proxy.dropped == 1
        # The server did the work: the account exists (logged in past the proxy) ...
        reply = await auth_stub(channel).Login(auth_pb.LoginRequest(email=email, password=PASSWORD))
        assert reply.tokens.access_token
        # ... and the proxy forwards again on a new connection.
        await auth_stub(through).GetJwks(auth_pb.GetJwksRequest(), timeout=HANG_SECONDS)
        assert proxy.dropped == 1


async def test_control_port_arms_and_counts(proxy: H2Proxy) -> None:
    assert await _control(proxy, "dropped") == "0"
    assert await _control(proxy, "arm 1") == "ok"
    assert await _control(proxy, "bogus") == "error unknown command"
    assert (await _control(proxy, "arm x")).startswith("error")
    async with grpc.aio.insecure_channel(proxy.address) as through:
        with pytest.raises(grpc.aio.AioRpcError) as lost:
            await auth_stub(through).GetJwks(auth_pb.GetJwksRequest(), timeout=HANG_SECONDS)
        assert lost.value.code() == grpc.StatusCode.UNAVAILABLE
    assert await _control(proxy, "dropped") == "1"


async def test_arm_data_cuts_a_stream_at_its_kth_message(proxy: H2Proxy) -> None:
    assert await _control(proxy, "arm-data 1") == "ok"
    async with grpc.aio.insecure_channel(proxy.address) as through:
        watch = health_pb2_grpc.HealthStub(through).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=HANG_SECONDS
        )
        with pytest.raises(grpc.aio.AioRpcError) as lost:
            await watch.read()
        assert lost.value.code() == grpc.StatusCode.UNAVAILABLE
    assert proxy.dropped == 1
    with pytest.raises(ValueError):
        proxy.arm_data(0)
