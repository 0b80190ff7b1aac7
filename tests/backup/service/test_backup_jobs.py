"""BackupService jobs through the real server: CreateBackup (streamed progress, the job
outlives its caller), VerifyBackup, RestoreBackup (refusals leave live data untouched;
afterwards old sessions fail, audit events still arrive, the scheduler runs),
DeleteBackup, and scheduled backups, drills and retention."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import text

from gencharge.v1 import auth_service_pb2, auth_service_pb2_grpc
from gencharge.v1 import backup_service_pb2 as pb
from server.backup import domain, flows, jobs
from server.backup.archive import seal_file
from server.backup.context import JobContext, ignore
from server.backup.drill_job import run_drill
from server.backup.keys import BackupKeys
from server.backup.manifest import read_manifest, write_manifest
from server.core.crypto import generate_data_key
from tests.backup.service.helpers import Stub, refused
from tests.helpers.auth import Actor, create_admin, register_user
from tests.helpers.clock import eventually
from tests.helpers.money import assert_ledger_balances, balance, fund

FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


def _storage_root(resources: Any) -> Path:
    return Path(resources.settings.backup_storage_url.removeprefix("file://"))


async def _backup(stub: Stub, admin: Actor, **request: Any) -> list[pb.BackupProgress]:
    stream = stub.CreateBackup(pb.CreateBackupRequest(**request), metadata=admin.metadata)
    return [message async for message in stream]


async def _restore(stub: Stub, admin: Actor, **request: Any) -> list[pb.BackupProgress]:
    stream = stub.RestoreBackup(pb.RestoreBackupRequest(**request), metadata=admin.metadata)
    return [message async for message in stream]


async def _users(resources: Any) -> int:
    async with resources.db.read_only() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM users"))).scalar_one())


async def _service_accounts(resources: Any) -> int:
    async with resources.db.read_only() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM service_accounts"))).scalar_one())


async def test_backup_then_restore_brings_the_data_back(
    stub: Stub, admin: Actor, channel: grpc.aio.Channel, resources: Any, grpc_server: Any
) -> None:
    customer = await register_user(channel)
    await fund(resources, customer.user_id, "250.00")
    progress = await _backup(stub, admin, description="before the change")
    assert progress[0].status == pb.JOB_STATUS_STARTED
    assert progress[-1].status == pb.JOB_STATUS_COMPLETED
    assert [p.percent_complete for p in progress] == sorted(p.percent_complete for p in progress)
    assert progress[-1].percent_complete == 100
    backup = progress[-1].backup
    assert backup.backup_status == pb.BACKUP_STATUS_SUCCESS
    assert backup.kind == pb.BACKUP_KIND_FULL
    assert backup.size_bytes > 0 and backup.storage_uri.startswith("file://")
    assert backup.created_by > 0 and backup.description == "before the change"
    stored = sorted(p.name for p in (_storage_root(resources) / backup.backup_id).iterdir())
    assert stored == ["manifest.json", "mongo.bson", "postgres.dump"]
    verified = await stub.VerifyBackup(
        pb.VerifyBackupRequest(backup_id=backup.backup_id), metadata=admin.metadata
    )
    assert verified.valid and not verified.problems

    # Changes after the backup: a new customer, more money.
    users_then = await _users(resources)
    await register_user(channel)
    await fund(resources, customer.user_id, "100.00")
    assert await _users(resources) == users_then + 1

    restored = await _restore(stub, admin, backup_id=backup.backup_id)
    assert restored[-1].status == pb.JOB_STATUS_COMPLETED, restored[-1]
    assert restored[-1].job_type == pb.JOB_TYPE_RESTORE
    assert await _users(resources) == users_then
    assert await balance(resources, customer.user_id) == 250
    await assert_ledger_balances(resources)

    # Every session ended: the admin's and the customer's tokens stop working.
    for actor in (admin, customer):
        error = await refused(
            stub.GetBackup(pb.GetBackupRequest(backup_id=backup.backup_id), metadata=actor.metadata)
        )
        assert error.code == grpc.StatusCode.UNAUTHENTICATED
        assert error.reason == "SESSION_ENDED"

    # The audit relay keeps working: the restore's own event, and a change made after it,
    # arrive in AuditLog.
    fresh = await create_admin(channel, resources)
    schedule = await stub.CreateSchedule(
        pb.CreateScheduleRequest(
            schedule=pb.Schedule(task_name="after restore", cron_expression="0 3 * * *")
        ),
        metadata=fresh.metadata,
    )
    audit = resources.mongo_db["AuditLog"]

    async def arrived() -> bool:
        restore_event = await audit.find_one(
            {"table_name": "Backup", "details.restored_backup_id": backup.backup_id}
        )
        later = await audit.find_one(
            {"table_name": "Schedule", "details.schedule_id": schedule.schedule_id}
        )
        return restore_event is not None and later is not None

    assert await eventually(arrived, every=0.1)
    event = await audit.find_one({"details.restored_backup_id": backup.backup_id})
    assert event is not None
    assert event["details"]["sessions_ended"] >= 2  # the admin's and the customer's
    assert event["details"]["service_accounts_retired"] == await _service_accounts(resources)

    # The job log holds both jobs, started and completed.
    logs = await stub.ListBackupRestoreLogs(
        pb.ListBackupRestoreLogsRequest(job_id=backup.backup_id), metadata=fresh.metadata
    )
    seen = {(e.job_type, e.status) for e in logs.backup_restore_logs}
    assert seen == {
        (pb.JOB_TYPE_BACKUP, pb.JOB_STATUS_STARTED),
        (pb.JOB_TYPE_BACKUP, pb.JOB_STATUS_COMPLETED),
        (pb.JOB_TYPE_RESTORE, pb.JOB_STATUS_STARTED),
        (pb.JOB_TYPE_RESTORE, pb.JOB_STATUS_COMPLETED),
    }

    # The scheduler still runs after a restore.
    report = await grpc_server.scheduler.run_once()
    assert report.failed_jobs == []


async def test_restore_of_chosen_tables_only(
    stub: Stub, admin: Actor, channel: grpc.aio.Channel, resources: Any
) -> None:
    customer = await register_user(channel)
    backup = (await _backup(stub, admin))[-1].backup
    await fund(resources, customer.user_id, "40.00")
    users_then = await _users(resources)
    await register_user(channel)
    done = await _restore(stub, admin, backup_id=backup.backup_id, tables=["Plans"])
    assert done[-1].status == pb.JOB_STATUS_COMPLETED
    # Users and the ledger were not in the restore: they keep today's data.
    assert await _users(resources) == users_then + 1
    assert await balance(resources, customer.user_id) == 40


async def test_validate_only_changes_nothing(
    stub: Stub, admin: Actor, channel: grpc.aio.Channel, resources: Any
) -> None:
    backup = (await _backup(stub, admin))[-1].backup
    await register_user(channel)
    users_now = await _users(resources)
    done = await _restore(stub, admin, backup_id=backup.backup_id, validate_only=True)
    assert done[-1].status == pb.JOB_STATUS_COMPLETED
    assert "nothing changed" in done[-1].message
    assert await _users(resources) == users_now
    # Sessions are untouched too.
    await stub.GetBackup(pb.GetBackupRequest(backup_id=backup.backup_id), metadata=admin.metadata)


async def _damaged_backup_is_refused(
    stub: Stub, admin: Actor, channel: grpc.aio.Channel, resources: Any, damage: Any, reason: str
) -> None:
    backup = (await _backup(stub, admin))[-1].backup
    await register_user(channel)
    users_now = await _users(resources)
    await damage(_storage_root(resources) / backup.backup_id, backup.backup_id)
    verified = await stub.VerifyBackup(
        pb.VerifyBackupRequest(backup_id=backup.backup_id), metadata=admin.metadata
    )
    if reason != "BACKUP_SCHEMA_MISMATCH":
        assert not verified.valid and verified.problems
    error = await refused(_restore(stub, admin, backup_id=backup.backup_id))
    assert error.code == FAILED_PRECONDITION
    assert error.reason == reason, error
    assert await _users(resources) == users_now  # live data untouched
    await stub.GetBackup(pb.GetBackupRequest(backup_id=backup.backup_id), metadata=admin.metadata)


async def test_flipped_byte_is_refused(
    stub: Stub, admin: Actor, channel: grpc.aio.Channel, resources: Any
) -> None:
    async def flip(folder: Path, _: str) -> None:
        path = folder / "postgres.dump"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))

    await _damaged_backup_is_refused(stub, admin, channel, resources, flip, "BACKUP_VERIFY_FAILED")


async def test_missing_file_is_refused(
    stub: Stub, admin: Actor, channel: grpc.aio.Channel, resources: Any
) -> None:
    async def remove(folder: Path, _: str) -> None:
        (folder / "mongo.bson").unlink()

    await _damaged_backup_is_refused(
        stub, admin, channel, resources, remove, "BACKUP_VERIFY_FAILED"
    )


async def test_wrong_key_is_refused(
    stub: Stub, admin: Actor, channel: grpc.aio.Channel, resources: Any
) -> None:
    ctx = JobContext.build(resources)

    async def rekey(_: Path, backup_id: str) -> None:
        manifest = await read_manifest(ctx.storage, backup_id, ctx.keys)
        other = BackupKeys.from_bytes(bytes.fromhex(generate_data_key_hex()))
        await write_manifest(ctx.storage, backup_id, manifest, other)

    await _damaged_backup_is_refused(stub, admin, channel, resources, rekey, "BACKUP_VERIFY_FAILED")


def generate_data_key_hex() -> str:
    import base64

    return base64.b64decode(generate_data_key()).hex()


async def test_a_sealed_file_that_is_not_a_dump_is_refused(
    stub: Stub, admin: Actor, channel: grpc.aio.Channel, resources: Any
) -> None:
    """Sound encryption around the wrong contents (a bug, not damage: sealed, hashed and
    listed as it is) is caught by the parse step: pg_restore cannot read it."""
    ctx = JobContext.build(resources)

    async def garbage(folder: Path, backup_id: str) -> None:
        manifest = await read_manifest(ctx.storage, backup_id, ctx.keys)
        name = f"{backup_id}/postgres.dump"
        plain = folder.parent / f"{backup_id}-garbage"
        plain.write_bytes(b"not a pg_dump archive\n" * 100)
        sealed = await seal_file(plain, ctx.storage, name, ctx.keys)
        plain.unlink()
        files = tuple(
            dataclasses.replace(
                f, size=sealed.size, sha256=sealed.sha256, plain_size=sealed.plain_size
            )
            if f.name == name
            else f
            for f in manifest.files
        )
        await write_manifest(
            ctx.storage, backup_id, dataclasses.replace(manifest, files=files), ctx.keys
        )

    await _damaged_backup_is_refused(
        stub, admin, channel, resources, garbage, "BACKUP_VERIFY_FAILED"
    )


async def test_other_schema_revision_is_refused(
    stub: Stub, admin: Actor, channel: grpc.aio.Channel, resources: Any
) -> None:
    ctx = JobContext.build(resources)

    async def older(_: Path, backup_id: str) -> None:
        manifest = await read_manifest(ctx.storage, backup_id, ctx.keys)
        revisions = {**manifest.schema_revisions, "postgres": "0015_service_account_description"}
        await write_manifest(
            ctx.storage,
            backup_id,
            dataclasses.replace(manifest, schema_revisions=revisions),
            ctx.keys,
        )

    await _damaged_backup_is_refused(
        stub, admin, channel, resources, older, "BACKUP_SCHEMA_MISMATCH"
    )


async def test_one_job_at_a_time(stub: Stub, admin: Actor, resources: Any) -> None:
    backup = (await _backup(stub, admin))[-1].backup
    async with jobs.job_lock(resources.engine, job="test"):
        for call in (
            _restore(stub, admin, backup_id=backup.backup_id),
            _backup(stub, admin),
            stub.DeleteBackup(
                pb.DeleteBackupRequest(backup_id=backup.backup_id), metadata=admin.metadata
            ),
        ):
            error = await refused(call)
            assert error.code == FAILED_PRECONDITION
            assert error.reason == "BACKUP_JOB_RUNNING"


async def test_bad_requests(stub: Stub, admin: Actor) -> None:
    error = await refused(_backup(stub, admin, tables=["users", "no_such_table"]))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert list(error.field_violations) == ["tables[1]"]
    error = await refused(
        _backup(stub, admin, source_db=pb.SOURCE_DATABASE_MONGODB, tables=["users"])
    )
    assert list(error.field_violations) == ["tables[0]"]
    error = await refused(_restore(stub, admin, backup_id="nope"))
    assert error.code == grpc.StatusCode.NOT_FOUND
    backup = (await _backup(stub, admin, source_db=pb.SOURCE_DATABASE_POSTGRESQL))[-1].backup
    assert backup.source_db == pb.SOURCE_DATABASE_POSTGRESQL
    error = await refused(_restore(stub, admin, backup_id=backup.backup_id, tables=["Nope"]))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    error = await refused(_restore(stub, admin, backup_id=backup.backup_id, tables=["backup"]))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_job_outlives_its_caller(
    stub: Stub, admin: Actor, resources: Any, grpc_server: Any
) -> None:
    stream = stub.CreateBackup(pb.CreateBackupRequest(), metadata=admin.metadata)
    first = await stream.read()
    assert first.status == pb.JOB_STATUS_STARTED
    stream.cancel()

    async def finished() -> bool:
        async with resources.db.read_only() as conn:
            row = await domain.get_backup(first.backup_id, conn=conn)
        return row.status == "success"

    assert await eventually(finished, every=0.1)
    await grpc_server.app.backup_jobs.close(60)


async def test_delete_backup_removes_files_and_row(
    stub: Stub, admin: Actor, resources: Any
) -> None:
    backup = (await _backup(stub, admin))[-1].backup
    folder = _storage_root(resources) / backup.backup_id
    assert folder.is_dir()
    await stub.DeleteBackup(
        pb.DeleteBackupRequest(backup_id=backup.backup_id), metadata=admin.metadata
    )
    assert not folder.exists()
    error = await refused(
        stub.GetBackup(pb.GetBackupRequest(backup_id=backup.backup_id), metadata=admin.metadata)
    )
    assert error.code == grpc.StatusCode.NOT_FOUND


async def test_scheduled_backup_drill_and_retention(
    stub: Stub, admin: Actor, channel: grpc.aio.Channel, resources: Any, grpc_server: Any
) -> None:
    customer = await register_user(channel)
    await fund(resources, customer.user_id, "75.00")
    scheduler = grpc_server.scheduler

    async def due(name: str, job: int) -> None:
        """A schedule of ``job`` due now (and only it), then one tick and its run."""
        await stub.CreateSchedule(
            pb.CreateScheduleRequest(
                schedule=pb.Schedule(
                    task_name=name, cron_expression="* * * * *", job=job, is_active=True
                )
            ),
            metadata=admin.metadata,
        )
        async with resources.db.transaction() as conn:
            await conn.execute(
                text(
                    "UPDATE schedule SET next_run = now() - interval '1 minute' "
                    "WHERE task_name = :n"
                ),
                {"n": name},
            )
        report = await scheduler.run_once()
        assert report.failed_jobs == [] and report.backups.claimed == 1
        await scheduler.wait_backup_runs()

    await due("nightly", pb.SCHEDULE_JOB_BACKUP)
    await due("drill", pb.SCHEDULE_JOB_DRILL)
    logs = await resources.mongo_db["BackupRestoreLogs"].find({}).to_list(None)
    kinds = {(d["job_type"], d["status"], bool(d["details"].get("drill"))) for d in logs}
    assert kinds == {
        ("scheduled", "started", False),
        ("scheduled", "completed", False),
        ("restore", "started", True),
        ("restore", "completed", True),
    }, kinds
    drill = next(d for d in logs if d["details"].get("drill") and d["status"] == "completed")
    assert drill["details"]["ok"] is True and drill["details"]["wallets_checked"] >= 1

    # Retention: with a window of one day, a backup from "40 days ago" goes with its
    # files; the newest successful one stays.
    ctx = JobContext.build(resources)
    older = (await _backup(stub, admin))[-1].backup
    newest = (await _backup(stub, admin))[-1].backup
    async with resources.db.transaction() as conn:
        await conn.execute(
            text("UPDATE backup SET created_at = now() - interval '40 days' WHERE backup_id <> :b"),
            {"b": newest.backup_id},
        )
    deleted = await flows.expire_backups(ctx, datetime.now(UTC))
    assert older.backup_id in deleted and newest.backup_id not in deleted
    assert not (_storage_root(resources) / older.backup_id).exists()
    assert (_storage_root(resources) / newest.backup_id).is_dir()


async def test_a_drill_of_chosen_tables(
    stub: Stub, admin: Actor, channel: grpc.aio.Channel, resources: Any
) -> None:
    """A backup of some tables holds the others' schema without their rows: its drill
    restores it without the foreign keys, compares what it holds, and checks the ledger
    only when the wallets and the ledger are both in it."""
    customer = await register_user(channel)
    await fund(resources, customer.user_id, "12.00")
    ctx = JobContext.build(resources)
    some = (await _backup(stub, admin, tables=["transactions", "plans"]))[-1].backup
    result = await run_drill(ctx, ignore, backup_id=some.backup_id)
    assert result.ok, result.problems
    assert (result.tables, result.wallets) == (2, 0)
    ledger = (await _backup(stub, admin, tables=["users", "transactions"]))[-1].backup
    result = await run_drill(ctx, ignore, backup_id=ledger.backup_id)
    assert result.ok, result.problems
    assert result.tables == 2 and result.wallets >= 1


async def test_a_failed_restore_changes_nothing_and_ends_no_session(
    stub: Stub, admin: Actor, channel: grpc.aio.Channel, resources: Any
) -> None:
    """The sessions end in the live restore's own transaction: a restore PostgreSQL
    refuses (a customer's ledger rows would point at a customer the restored `users`
    lacks) changes no row and ends no session."""
    backup = (await _backup(stub, admin))[-1].backup
    newcomer = await register_user(channel)
    await fund(resources, newcomer.user_id, "5.00")
    users_now = await _users(resources)
    done = await _restore(stub, admin, backup_id=backup.backup_id, tables=["users"])
    assert done[-1].status == pb.JOB_STATUS_FAILED
    assert done[-1].error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert await _users(resources) == users_now
    assert await balance(resources, newcomer.user_id) == 5
    # Both sessions still work: the admin's and the customer's.
    await stub.GetBackup(pb.GetBackupRequest(backup_id=backup.backup_id), metadata=admin.metadata)
    me = await auth_service_pb2_grpc.AuthServiceStub(channel).GetMe(
        auth_service_pb2.GetMeRequest(), metadata=newcomer.metadata
    )
    assert me.user.user_id == newcomer.user_id
