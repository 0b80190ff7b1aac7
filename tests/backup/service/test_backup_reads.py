"""BackupService reads through the real server: ListBackups (newest first, filters, page
tokens), GetBackup (NOT_FOUND), ListBackupRestoreLogs (newest first, filters, pages;
the DDS "recent backup restore activity" order); RBAC per role (the job RPCs too: their
behaviour is tests/backup/service/test_backup_jobs.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from gencharge.v1 import backup_service_pb2 as pb
from server.backup import domain
from tests.backup.service.helpers import Stub, add_backup, refused
from tests.helpers.auth import Actor, create_admin, create_service, register_user

# Recent, whatever today is: BackupRestoreLogs entries expire (a TTL index on expires_at,
# retention_days after created_at), and the TTL monitor deletes them mid-test otherwise.
T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED


async def _all_backups(stub: Stub, md: Any, **filters: Any) -> list[pb.Backup]:
    seen: list[pb.Backup] = []
    token = ""
    while True:
        page = await stub.ListBackups(
            pb.ListBackupsRequest(page_size=2, page_token=token, **filters), metadata=md
        )
        seen.extend(page.backups)
        token = page.next_page_token
        if not token:
            return seen


async def test_list_and_get_backups(stub: Stub, admin: Actor, resources: Any) -> None:
    md = admin.metadata
    await add_backup(resources, "b1", T0, description="first")
    await add_backup(resources, "b2", T0 + timedelta(hours=1), status="failed")
    await add_backup(resources, "b3", T0 + timedelta(hours=1), source_db="PostgreSQL")
    await add_backup(
        resources,
        "b4",
        T0 + timedelta(hours=2),
        source_db="MongoDB",
        status="in_progress",
    )
    await add_backup(
        resources, "b5", T0 + timedelta(hours=3), kind="incremental", parent_backup_id="b1"
    )

    everything = await _all_backups(stub, md)
    # Newest first; b2 and b3 share a time: backup_id descending.
    assert [b.backup_id for b in everything] == ["b5", "b4", "b3", "b2", "b1"]
    one = await stub.GetBackup(pb.GetBackupRequest(backup_id="b5"), metadata=md)
    assert one == everything[0]
    assert (one.kind, one.parent_backup_id) == (pb.BACKUP_KIND_INCREMENTAL, "b1")
    assert one.backup_status == pb.BACKUP_STATUS_SUCCESS and one.size_bytes == 1000
    first = await stub.GetBackup(pb.GetBackupRequest(backup_id="b1"), metadata=md)
    assert (first.kind, first.description, first.source_db) == (
        pb.BACKUP_KIND_FULL,
        "first",
        pb.SOURCE_DATABASE_UNSPECIFIED,  # both databases
    )
    assert first.created_at.ToDatetime(tzinfo=UTC) == T0

    failed = await _all_backups(stub, md, backup_status=pb.BACKUP_STATUS_FAILED)
    assert [b.backup_id for b in failed] == ["b2"]
    running = await _all_backups(stub, md, backup_status=pb.BACKUP_STATUS_IN_PROGRESS)
    assert [b.backup_id for b in running] == ["b4"]
    postgres = await _all_backups(stub, md, source_db=pb.SOURCE_DATABASE_POSTGRESQL)
    assert [b.backup_id for b in postgres] == ["b5", "b3", "b2", "b1"]  # with both-db ones
    mongo = await _all_backups(stub, md, source_db=pb.SOURCE_DATABASE_MONGODB)
    assert [b.backup_id for b in mongo] == ["b5", "b4", "b2", "b1"]

    page = await stub.ListBackups(pb.ListBackupsRequest(page_size=2), metadata=md)
    other_filter = await refused(
        stub.ListBackups(
            pb.ListBackupsRequest(
                page_token=page.next_page_token, backup_status=pb.BACKUP_STATUS_FAILED
            ),
            metadata=md,
        )
    )
    assert other_filter.code == INVALID and "page_token" in other_filter.field_violations
    unknown = await refused(stub.ListBackups(pb.ListBackupsRequest(backup_status=9), metadata=md))
    assert unknown.code == INVALID and "backup_status" in unknown.field_violations

    missing = await refused(stub.GetBackup(pb.GetBackupRequest(backup_id="nope"), metadata=md))
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "BACKUP_NOT_FOUND")
    empty = await refused(stub.GetBackup(pb.GetBackupRequest(), metadata=md))
    assert empty.code == INVALID and "backup_id" in empty.field_violations


async def _log(resources: Any, job_type: str, job_id: str, status: str, at: datetime) -> str:
    entry = await domain.log_job(
        job_type=job_type,
        job_id=job_id,
        status=status,
        details={"notes": f"{job_type} {status}"},
        action_by=1,
        now=at,
        retention_days=30,
        mongo=resources.mongo_db,
    )
    return entry.log_id


async def test_job_log(stub: Stub, admin: Actor, resources: Any) -> None:
    md = admin.metadata
    ids = [
        await _log(resources, "backup", "b1", "started", T0),
        await _log(resources, "backup", "b1", "completed", T0 + timedelta(minutes=5)),
        await _log(resources, "scheduled", "b2", "started", T0 + timedelta(hours=1)),
        await _log(resources, "scheduled", "b2", "failed", T0 + timedelta(hours=1)),
        await _log(resources, "restore", "b1", "completed", T0 + timedelta(hours=2)),
    ]
    seen: list[pb.BackupRestoreLog] = []
    token = ""
    while True:
        page = await stub.ListBackupRestoreLogs(
            pb.ListBackupRestoreLogsRequest(page_size=2, page_token=token), metadata=md
        )
        seen.extend(page.backup_restore_logs)
        token = page.next_page_token
        if not token:
            break
    # Newest first; the two entries of one instant by log_id descending.
    same_time = sorted(ids[2:4], reverse=True)
    assert [e.log_id for e in seen] == [ids[4], *same_time, ids[1], ids[0]]
    newest = seen[0]
    assert (newest.job_type, newest.status, newest.job_id, newest.action_by) == (
        pb.JOB_TYPE_RESTORE,
        pb.JOB_STATUS_COMPLETED,
        "b1",
        1,
    )
    assert dict(newest.details) == {"notes": "restore completed"}
    assert newest.created_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(hours=2)

    of_b1 = await stub.ListBackupRestoreLogs(
        pb.ListBackupRestoreLogsRequest(job_id="b1"), metadata=md
    )
    assert [e.log_id for e in of_b1.backup_restore_logs] == [ids[4], ids[1], ids[0]]
    scheduled_failed = await stub.ListBackupRestoreLogs(
        pb.ListBackupRestoreLogsRequest(
            job_type=pb.JOB_TYPE_SCHEDULED, status=pb.JOB_STATUS_FAILED
        ),
        metadata=md,
    )
    assert [e.log_id for e in scheduled_failed.backup_restore_logs] == [ids[3]]
    bad = await refused(
        stub.ListBackupRestoreLogs(pb.ListBackupRestoreLogsRequest(job_type=42), metadata=md)
    )
    assert bad.code == INVALID and "job_type" in bad.field_violations
    page = await stub.ListBackupRestoreLogs(
        pb.ListBackupRestoreLogsRequest(page_size=1), metadata=md
    )
    replayed = await refused(
        stub.ListBackupRestoreLogs(
            pb.ListBackupRestoreLogsRequest(page_token=page.next_page_token, job_id="b2"),
            metadata=md,
        )
    )
    assert replayed.code == INVALID and "page_token" in replayed.field_violations


async def test_reads_need_backup_read(
    stub: Stub, channel: grpc.aio.Channel, resources: Any
) -> None:
    support = await create_admin(channel, resources, "Support")
    user = await register_user(channel)
    service = await create_service(channel, resources)
    for actor in (support, user, service):
        md = actor.metadata
        for call in (
            stub.ListBackups(pb.ListBackupsRequest(), metadata=md),
            stub.GetBackup(pb.GetBackupRequest(backup_id="b1"), metadata=md),
            stub.ListBackupRestoreLogs(pb.ListBackupRestoreLogsRequest(), metadata=md),
            stub.VerifyBackup(pb.VerifyBackupRequest(backup_id="b1"), metadata=md),
            stub.DeleteBackup(pb.DeleteBackupRequest(backup_id="b1"), metadata=md),
            _drain(stub.CreateBackup(pb.CreateBackupRequest(), metadata=md)),
            _drain(stub.RestoreBackup(pb.RestoreBackupRequest(backup_id="b1"), metadata=md)),
        ):
            assert (await refused(call)).code == DENIED, actor.kind


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass
