"""Physical backups through the real server (GENCHARGE_BACKUP_PHYSICAL on, WAL
archived): a full backup with its physical part, an incremental one of both databases,
RestoreBackup of the incremental (recovered in a scratch cluster, dumped, restored into
the live database), RestoreBackup to a point in time between two changes, drills of
the chain and to a point in time, and the refusals (a target before the chain began,
a point in time for a backup without a physical part, a MongoDB-only point in time).

The database lives on this folder's archiving cluster (tests/backup/physical/
conftest.py), migrated and loaded with reference data for this module."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import text

from gencharge.v1 import backup_service_pb2 as pb
from gencharge.v1 import backup_service_pb2_grpc
from server.backup import flows
from server.backup.context import JobContext, ignore
from server.backup.drill_job import run_drill
from server.backup.physical import wal
from tests.backup.physical.conftest import ArchivingCluster
from tests.backup.service.helpers import refused
from tests.conftest import MongoHandle, fresh_mongo, open_resources, serve
from tests.helpers.auth import Actor, create_admin, register_user
from tests.helpers.money import assert_ledger_balances, balance, fund


@pytest.fixture
async def physical_pg(archiving_cluster: ArchivingCluster) -> AsyncIterator[str]:
    """A migrated database on the archiving cluster (``fresh_mongo`` loads the
    reference data into both databases)."""
    from server.ops import pgmigrate

    name = f"g_{uuid.uuid4().hex[:10]}"
    await archiving_cluster.execute("postgres", f'CREATE DATABASE "{name}"')
    url = archiving_cluster.url(name)
    await asyncio.to_thread(pgmigrate.upgrade, url)
    yield url
    await archiving_cluster.execute("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def physical_server(
    physical_pg: str, mongo_server: MongoHandle, archiving_cluster: ArchivingCluster
) -> AsyncIterator[Any]:
    async with (
        fresh_mongo(mongo_server, physical_pg) as mongo_url,
        open_resources(
            physical_pg,
            mongo_url,
            backup_physical=True,
            backup_wal_archive_dir=archiving_cluster.archive_dir,
        ) as resources,
        serve(resources) as running,
    ):
        yield running


@pytest.fixture
async def channel(physical_server: Any) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{physical_server.port}") as ch:
        yield ch


Stub = backup_service_pb2_grpc.BackupServiceStub


async def _backup(stub: Stub, admin: Actor, **request: Any) -> pb.Backup:
    stream = stub.CreateBackup(pb.CreateBackupRequest(**request), metadata=admin.metadata)
    messages = [m async for m in stream]
    assert messages[-1].status == pb.JOB_STATUS_COMPLETED, messages[-1]
    return messages[-1].backup


async def _restore(stub: Stub, admin: Actor, **request: Any) -> pb.BackupProgress:
    stream = stub.RestoreBackup(pb.RestoreBackupRequest(**request), metadata=admin.metadata)
    messages = [m async for m in stream]
    return messages[-1]


async def _server_now(resources: Any) -> Any:
    async with resources.db.read_only() as conn:
        return (await conn.execute(text("SELECT clock_timestamp()"))).scalar_one()


async def test_incremental_chain_and_point_in_time(
    physical_server: Any, channel: grpc.aio.Channel, archiving_cluster: ArchivingCluster
) -> None:
    resources = physical_server.resources
    stub = Stub(channel)
    admin = await create_admin(channel, resources)
    customer = await register_user(channel)
    await fund(resources, customer.user_id, "100.00")

    await archiving_cluster.switch_and_archive()  # WAL from before the backup, archived
    full = await _backup(stub, admin)
    assert full.details["physical"] is True
    names = {f for f in full.details["files"]}
    assert {"postgres.dump", "base.tar", "backup_manifest", "mongo.bson"} <= names

    await fund(resources, customer.user_id, "20.00")  # 120 at the incremental
    incremental = await _backup(stub, admin, incremental=True)
    assert incremental.kind == pb.BACKUP_KIND_INCREMENTAL
    assert incremental.parent_backup_id == full.backup_id
    assert "postgres.dump" not in set(incremental.details["files"])
    verified = await stub.VerifyBackup(
        pb.VerifyBackupRequest(backup_id=incremental.backup_id), metadata=admin.metadata
    )
    assert verified.valid, verified.problems

    # Two more changes, a point in time between them, the WAL archived.
    await fund(resources, customer.user_id, "3.00")  # 123
    await archiving_cluster.switch_and_archive()
    between = await _server_now(resources)
    await asyncio.sleep(0.01)  # commit times strictly after `between` on a coarse clock
    await fund(resources, customer.user_id, "4.00")  # 127
    await archiving_cluster.switch_and_archive()

    # A drill of the chain to the point in time: the ledger holds there.
    ctx = JobContext.build(resources)
    drilled = await run_drill(ctx, ignore, backup_id=incremental.backup_id, point_in_time=between)
    assert drilled.ok, drilled.problems
    assert drilled.wallets >= 1

    # Restore the incremental as taken: 120.
    done = await _restore(stub, admin, backup_id=incremental.backup_id)
    assert done.status == pb.JOB_STATUS_COMPLETED, done
    assert await balance(resources, customer.user_id) == 120
    await assert_ledger_balances(resources)

    # Restore to the point in time: 123 (the restore above ended every session); MongoDB,
    # with no point-in-time log, comes back as the chain holds it.
    marker = f"after-the-backup-{uuid.uuid4().hex}"
    await resources.mongo_db["Content"].insert_one({"_id": marker}, bypass_document_validation=True)
    admin = await create_admin(channel, resources)
    stamp = Timestamp()
    stamp.FromDatetime(between)
    done = await _restore(stub, admin, backup_id=incremental.backup_id, point_in_time=stamp)
    assert done.status == pb.JOB_STATUS_COMPLETED, done
    assert await balance(resources, customer.user_id) == 123
    await assert_ledger_balances(resources)
    assert await resources.mongo_db["Content"].find_one({"_id": marker}) is None

    # Retention keeps every backup here (all recent) and prunes the archive folder of
    # the WAL before the oldest kept backup's base backup began.
    archive = archiving_cluster.archive_dir
    start = wal.lsn_to_int(str(full.details["physical_start_lsn"])) // wal.segment_size_of(archive)

    def older() -> list[str]:
        return [
            p.name
            for p in archive.iterdir()
            if wal.SEGMENT_NAME.match(p.name) and wal.segment_number(p.name) < start
        ]

    assert older(), "the segment switched before the backup is in the archive"
    assert await flows.expire_backups(ctx, datetime.now(UTC)) == []
    assert older() == []

    # Refusals: a target before the chain began.
    admin = await create_admin(channel, resources)
    early = Timestamp()
    early.FromDatetime(between - timedelta(days=1))
    error = await refused(
        _restore(stub, admin, backup_id=incremental.backup_id, point_in_time=early)
    )
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "point_in_time" in error.field_violations

    # A target past the newest archived transaction: found by the recovery itself, so
    # the last message carries it; nothing was changed.
    late = Timestamp()
    late.FromDatetime(between + timedelta(hours=1))
    done = await _restore(stub, admin, backup_id=incremental.backup_id, point_in_time=late)
    assert done.status == pb.JOB_STATUS_FAILED
    assert done.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert await balance(resources, customer.user_id) == 123


async def test_point_in_time_needs_a_physical_part(
    physical_server: Any, channel: grpc.aio.Channel
) -> None:
    resources = physical_server.resources
    stub = Stub(channel)
    admin = await create_admin(channel, resources)
    # A backup of chosen tables has no physical part (a base backup is the whole cluster).
    partial = await _backup(stub, admin, tables=["plans"])
    assert partial.details["physical"] is False
    stamp = Timestamp()
    stamp.FromDatetime(await _server_now(resources))
    error = await refused(_restore(stub, admin, backup_id=partial.backup_id, point_in_time=stamp))
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "BACKUP_PITR_UNAVAILABLE"
    mongo_only = await _backup(stub, admin, source_db=pb.SOURCE_DATABASE_MONGODB)
    error = await refused(
        _restore(stub, admin, backup_id=mongo_only.backup_id, point_in_time=stamp)
    )
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
