"""The server as a whole: health, request ids, UNIMPLEMENTED, limits (reflection:
test_reflection.py)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gencharge.v1 import (
    plan_service_pb2,
    plan_service_pb2_grpc,
)
from server.rpc.services import SERVICES
from tests.helpers.clock import HANG_SECONDS
from tests.helpers.rpc import details_of

EXPECTED_SERVICES = {
    "gencharge.v1.AuthService",
    "gencharge.v1.WalletService",
    "gencharge.v1.PlanService",
    "gencharge.v1.RechargeService",
    "gencharge.v1.NotificationService",
    "gencharge.v1.ContentService",
    "gencharge.v1.AdminService",
    "gencharge.v1.BackupService",
}


async def test_health_serving_overall_and_per_service(channel: grpc.aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    dependencies = [
        "gencharge.liveness",
        "gencharge.dependency.postgresql",
        "gencharge.dependency.mongodb",
    ]
    for name in ["", *sorted(EXPECTED_SERVICES), *dependencies]:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=name))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, name


async def test_health_unknown_service_is_not_found(channel: grpc.aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Check(health_pb2.HealthCheckRequest(service="nope.Service"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_health_not_serving_during_shutdown(grpc_server: Any) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_server.port}") as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=""))
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        # A generous drain grace: the update must not race the end of the drain. The
        # server stops as soon as the watch (its only call in flight) is cancelled.
        stopping = asyncio.create_task(grpc_server.stop(HANG_SECONDS))
        second = await watch.read()
        assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()
        await stopping


async def test_every_contract_rpc_is_implemented(grpc_server: Any) -> None:
    """No RPC of the contract is left to the generated base servicer (which would answer
    UNIMPLEMENTED through the access interceptor)."""
    for spec in SERVICES:
        assert list(spec.unimplemented(spec.build(grpc_server.app))) == [], spec.name


async def test_every_contract_rpc_is_registered(channel: grpc.aio.Channel) -> None:
    """Each RPC of each service answers (anything but an unknown-method error)."""
    for spec in SERVICES:
        for method in spec.method_names():
            path = f"/{spec.full_name}/{method}"
            call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
            try:
                await call(b"", timeout=5)
            except grpc.aio.AioRpcError as error:
                assert "Method not found" not in (error.details() or ""), path


async def test_request_id_is_echoed(channel: grpc.aio.Channel) -> None:
    stub = plan_service_pb2_grpc.PlanServiceStub(channel)
    call = stub.ListPlanGroups(
        plan_service_pb2.ListPlanGroupsRequest(), metadata=(("x-request-id", "req-42"),)
    )
    await call
    assert ("x-request-id", "req-42") in tuple(await call.trailing_metadata())


async def test_malformed_request_id_is_replaced(channel: grpc.aio.Channel) -> None:
    stub = plan_service_pb2_grpc.PlanServiceStub(channel)
    call = stub.ListPlanGroups(
        plan_service_pb2.ListPlanGroupsRequest(),
        metadata=(("x-request-id", "bad id " + "x" * 100),),
    )
    await call
    sent = dict(await call.trailing_metadata())["x-request-id"]
    assert sent and " " not in sent


async def test_error_carries_request_id_and_error_info(channel: grpc.aio.Channel) -> None:
    stub = plan_service_pb2_grpc.PlanServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetPlan(
            plan_service_pb2.GetPlanRequest(plan_id=987654), metadata=(("x-request-id", "r-1"),)
        )
    details = details_of(info.value)
    assert details.code == grpc.StatusCode.NOT_FOUND
    assert details.reason == "NOT_FOUND" and details.domain == "gencharge.v1"
    assert details.request_id == "r-1"


async def test_oversized_message_is_rejected(channel: grpc.aio.Channel) -> None:
    stub = plan_service_pb2_grpc.PlanServiceStub(channel)
    huge = "x" * (5 * 1024 * 1024)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListPlans(plan_service_pb2.ListPlansRequest(page_token=huge))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_pool_timeout_is_a_setting(
    pg_url: str, mongo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GENCHARGE_DB_POOL_TIMEOUT_SECONDS: how long a call queues for a connection."""
    from pathlib import Path

    from server.core.config import Settings
    from server.ops.runtime import Databases, connected

    for name in list(os.environ):
        if name.startswith("GENCHARGE_"):
            monkeypatch.delenv(name)
    assert Settings(data_dir=Path("/nonexistent")).db_pool_timeout_seconds == 10.0
    monkeypatch.setenv("GENCHARGE_DB_POOL_TIMEOUT_SECONDS", "42.5")
    settings = Settings(data_dir=Path("/nonexistent"))
    assert settings.db_pool_timeout_seconds == 42.5
    async with connected(settings, Databases(pg_url, mongo_url)) as resources:
        assert resources.engine.pool.timeout() == 42.5
