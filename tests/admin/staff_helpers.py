"""Shared pieces of the staff, roles and service-account tests (tests/admin/test_staff*,
test_roles*, test_service_accounts*)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import field_mask_pb2
from sqlalchemy import text

from gencharge.v1 import admin_service_pb2_grpc
from tests.helpers.clock import FakeClock, eventually
from tests.helpers.rpc import ErrorDetails, details_of

Stub = admin_service_pb2_grpc.AdminServiceStub
ADMIN_ROLE, USER_ROLE, SUPPORT_ROLE, SERVICE_ROLE = 1, 2, 3, 4


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


async def refused(call: Any) -> ErrorDetails:
    """The error details of a call that must fail."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return details_of(error)
    raise AssertionError("the call succeeded")


async def audit_docs(resources: Any, rpc: str, want: int) -> list[dict[str, Any]]:
    """The ok AuditLog documents of ``AdminService/<rpc>`` once ``want`` have arrived
    and the outbox is empty, so any duplicate would have been shipped too (the deadline
    only catches a hang)."""
    query = {"rpc": f"/gencharge.v1.AdminService/{rpc}", "outcome": "ok"}
    collection = resources.mongo_db["AuditLog"]

    async def enough() -> bool:
        return len(await collection.find(query).to_list(None)) >= want

    async def drained() -> bool:
        async with resources.db.read_only() as conn:
            left = await conn.execute(text("SELECT count(*) FROM audit_outbox"))
            return left.scalar_one() == 0

    await eventually(enough, every=0.1)
    assert await eventually(drained, every=0.1), "the audit relay did not drain the outbox"
    docs: list[dict[str, Any]] = await collection.find(query).to_list(None)
    return docs


@contextlib.asynccontextmanager
async def replica(resources: Any, clock: FakeClock) -> AsyncIterator[grpc.aio.Channel]:
    """A second server over the same databases, with caches of its own on ``clock``:
    another replica, which learns of a change only when its caches age out."""
    from tests.conftest import serve

    async with (
        serve(resources, clock) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        yield channel
