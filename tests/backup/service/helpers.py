"""Shared pieces of the BackupService tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc
from sqlalchemy import text

from gencharge.v1 import backup_service_pb2_grpc
from server.audit.scope import job_scope
from server.backup import domain
from tests.helpers.clock import eventually
from tests.helpers.rpc import ErrorDetails, details_of

Stub = backup_service_pb2_grpc.BackupServiceStub


async def refused(call: Any) -> ErrorDetails:
    """The error details of a call that must fail."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return details_of(error)
    raise AssertionError("the call succeeded")


async def audit_docs(resources: Any, rpc: str, want: int) -> list[dict[str, Any]]:
    """The ok AuditLog documents of ``BackupService/<rpc>`` once ``want`` arrived and
    the outbox drained (so a duplicate would have arrived too)."""
    query = {"rpc": f"/gencharge.v1.BackupService/{rpc}", "outcome": "ok"}
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


async def add_backup(
    resources: Any,
    backup_id: str,
    at: datetime,
    *,
    status: str = "success",
    source_db: str = "all",
    **kw: Any,
) -> domain.Backup:
    """A Backup row the way a job records one (in progress, then finished)."""
    with job_scope("backup-test"):
        async with resources.db.transaction() as conn:
            backup = await domain.start_backup(
                domain.NewBackup(backup_id=backup_id, source_db=source_db, created_at=at, **kw),
                conn=conn,
            )
        if status == "in_progress":
            return backup
        async with resources.db.transaction() as conn:
            return await domain.finish_backup(backup_id, status, size_bytes=1000, conn=conn)
