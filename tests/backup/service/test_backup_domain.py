"""The backup domain pieces the jobs use, against the real PostgreSQL and MongoDB: backup
ids, Backup rows from in_progress to finished, the job log, the job lock (two holders,
a holder whose connection dies), the claim of due schedules by concurrent replicas on
an injected clock, and the retention selection."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text

from server.audit.scope import job_scope
from server.backup import domain, flows, jobs
from server.backup.domain import NewBackup, ScheduleInput
from server.core.errors import AlreadyExists, FailedPrecondition, NotFound
from server.core.jobs import LOCK_BACKUP_JOB
from tests.helpers.clock import FakeUtcClock

T0 = datetime(2026, 12, 2, 22, 5, 30, tzinfo=UTC)


async def _new_backup(resources: Any, backup_id: str, at: datetime, **kw: Any) -> domain.Backup:
    with job_scope("backup-test"):
        async with resources.db.transaction() as conn:
            return await domain.start_backup(
                NewBackup(
                    backup_id=backup_id, source_db=kw.pop("source_db", "all"), created_at=at, **kw
                ),
                conn=conn,
            )


async def _finish(resources: Any, backup_id: str, status: str = "success") -> domain.Backup:
    with job_scope("backup-test"):
        async with resources.db.transaction() as conn:
            return await domain.finish_backup(
                backup_id, status, size_bytes=123, details={"files": 2}, conn=conn
            )


def test_backup_ids_sort_by_time_and_never_collide() -> None:
    ids = {domain.new_backup_id(T0) for _ in range(200)}
    assert len(ids) > 190  # 4 hex digits: a handful of collisions at most in 200 draws
    one = domain.new_backup_id(T0)
    assert re.fullmatch(r"backup_2026_12_02_2205_[0-9a-f]{4}", one)
    later = domain.new_backup_id(T0 + timedelta(minutes=1))
    assert later > one
    # Any time zone: the id is the UTC minute.
    ist = T0.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Kolkata"))
    assert domain.new_backup_id(ist).startswith("backup_2026_12_02_2205_")


async def test_backup_row_from_in_progress_to_finished(resources: Any) -> None:
    started = await _new_backup(resources, "backup_a", T0, description="nightly")
    assert (started.status, started.kind, started.snapshot_name) == (
        "in_progress",
        "full",
        "backup_a",
    )
    done = await _finish(resources, "backup_a")
    assert (done.status, done.size_bytes, done.details) == (
        "success",
        123,
        {"kind": "full", "files": 2},
    )
    with pytest.raises(FailedPrecondition) as again:
        await _finish(resources, "backup_a", "failed")
    assert again.value.reason == "BACKUP_NOT_IN_PROGRESS"
    with pytest.raises(AlreadyExists):
        await _new_backup(resources, "backup_a", T0)
    inc = await _new_backup(
        resources, "backup_b", T0, kind="incremental", parent_backup_id="backup_a"
    )
    assert (inc.kind, inc.parent_backup_id) == ("incremental", "backup_a")
    with pytest.raises(NotFound):
        await _new_backup(resources, "backup_c", T0, kind="incremental", parent_backup_id="nope")
    # A job that died leaves its row in progress: the next lock holder fails it.
    with job_scope("backup-test"):
        async with resources.db.transaction() as conn:
            abandoned = await domain.abandon_unfinished_backups(conn=conn)
            left = await domain.get_backup("backup_b", conn=conn)
    assert abandoned == ["backup_b"]
    assert left.status == "failed" and "interrupted" in left.details["error"]
    async with resources.db.read_only() as conn:
        events = (
            await conn.execute(
                text("SELECT event->>'table_name', event->>'action_type' FROM audit_outbox")
            )
        ).all()
    # Each transaction wrote its audit event (some may already have been relayed).
    assert all(table == "Backup" for table, _ in events)


async def test_log_job_writes_the_dds_document_with_its_expiry(resources: Any) -> None:
    # Recent, whatever today is: an entry past its expiry is fair game for the TTL monitor.
    recent = datetime.now(UTC).replace(microsecond=0)
    entry = await domain.log_job(
        job_type="backup",
        job_id="backup_x",
        status="completed",
        details={"tables": ["users"]},
        action_by=7,
        now=recent,
        retention_days=30,
        mongo=resources.mongo_db,
    )
    kept = await domain.log_job(
        job_type="scheduled",
        job_id="backup_y",
        status="started",
        now=recent + timedelta(seconds=1),
        retention_days=0,
        mongo=resources.mongo_db,
    )
    docs = {
        d["log_id"]: d
        for d in await resources.mongo_db["BackupRestoreLogs"].find({}, {"_id": 0}).to_list()
    }
    first = docs[entry.log_id]
    assert first["expires_at"] - first["created_at"] == timedelta(days=30)
    assert (first["job_type"], first["status"], first["action_by"]) == ("backup", "completed", 7)
    assert "expires_at" not in docs[kept.log_id] and "action_by" not in docs[kept.log_id]
    with pytest.raises(ValueError):
        await domain.log_job(
            job_type="copy",
            job_id="b",
            status="started",
            now=T0,
            retention_days=1,
            mongo=resources.mongo_db,
        )


async def test_one_job_at_a_time(resources: Any) -> None:
    engine = resources.db.engine
    entered = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with jobs.job_lock(engine, "backup"):
            entered.set()
            await release.wait()

    task = asyncio.create_task(holder())
    await entered.wait()
    with pytest.raises(FailedPrecondition) as refused:
        async with jobs.job_lock(engine, "restore"):
            pass
    assert refused.value.reason == "BACKUP_JOB_RUNNING"
    assert refused.value.metadata == {"job": "restore"}
    release.set()
    await task
    async with jobs.job_lock(engine, "drill"):
        pass  # free again once the holder ended


async def test_lock_is_freed_when_the_holders_connection_dies(resources: Any, pg_url: str) -> None:
    engine = resources.db.engine
    entered = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with jobs.job_lock(engine):
            entered.set()
            await release.wait()

    task = asyncio.create_task(holder())
    await entered.wait()
    admin = await asyncpg.connect(pg_url)
    try:
        pids = [
            r[0]
            for r in await admin.fetch(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND ((classid::bigint << 32) | objid::bigint) = $1",
                LOCK_BACKUP_JOB,
            )
        ]
        assert len(pids) == 1
        # The holder's process "dies": PostgreSQL ends its session and frees the lock.
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pids[0])
    finally:
        await admin.close()
    async with jobs.job_lock(engine, "backup"):
        pass  # taken at once by another holder
    release.set()
    with pytest.raises(Exception):  # noqa: B017  the dead holder learns it at its end
        await task


async def _schedule(resources: Any, name: str, cron: str, start: datetime) -> str:
    with job_scope("backup-test"):
        async with resources.db.transaction() as conn:
            created = await domain.create_schedule(
                ScheduleInput(task_name=name, cron_expression=cron, time=start, is_active=True),
                start,
                conn=conn,
            )
    return created.schedule_id


async def test_due_schedules_fire_once_across_replicas(resources: Any) -> None:
    clock = FakeUtcClock(datetime(2026, 12, 1, 0, 0, 30, tzinfo=UTC))
    hourly = await _schedule(resources, "hourly", "0 * * * *", clock())
    daily = await _schedule(resources, "daily", "0 2 * * *", clock())
    assert not await flows.claim_due(resources.db, clock())  # nothing due yet

    clock.advance(3 * 3600 + 120)  # 03:02: hourly missed 01:00-03:00; daily due at 02:00
    engine = resources.db.engine
    async with engine.connect() as first, engine.connect() as second:
        await first.begin()
        await second.begin()
        mine = await domain.claim_due_schedules(clock(), conn=first)
        # The other replica, meanwhile: the rows are being claimed, it skips them.
        theirs = await domain.claim_due_schedules(clock(), conn=second)
        await first.commit()
        await second.commit()
    assert theirs == []
    by_id = {run.schedule.schedule_id: run for run in mine}
    assert set(by_id) == {hourly, daily}
    # A missed run fires once; the next run is the first cron time after the claim.
    assert by_id[hourly].due_at == datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    assert by_id[hourly].schedule.next_run == datetime(2026, 12, 1, 4, 0, tzinfo=UTC)
    assert by_id[daily].schedule.next_run == datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
    assert all(run.schedule.last_run_at == clock() for run in mine)
    # Committed: a replica claiming after it finds nothing due.
    assert await flows.claim_due(resources.db, clock()) == []

    # Many replicas at once at the next hour: each run exactly once.
    clock.advance(3600)
    claims = await asyncio.gather(*(flows.claim_due(resources.db, clock()) for _ in range(4)))
    fired = [run.schedule.schedule_id for claim in claims for run in claim]
    assert fired == [hourly]


async def test_inactive_schedules_never_fire(resources: Any) -> None:
    clock = FakeUtcClock(datetime(2026, 12, 1, 0, 0, tzinfo=UTC))
    with job_scope("backup-test"):
        async with resources.db.transaction() as conn:
            await domain.create_schedule(
                ScheduleInput(task_name="off", cron_expression="* * * * *", is_active=False),
                clock(),
                conn=conn,
            )
    clock.advance(86400)
    assert await flows.claim_due(resources.db, clock()) == []


async def test_retention_selection(resources: Any) -> None:
    now = datetime(2026, 12, 31, 12, 0, tzinfo=UTC)
    old = now - timedelta(days=40)

    async def made(backup_id: str, at: datetime, status: str, **kw: Any) -> None:
        await _new_backup(resources, backup_id, at, **kw)
        if status != "in_progress":
            await _finish(resources, backup_id, status)

    await made("b_old_ok", old, "success")
    await made("b_old_failed", old + timedelta(hours=1), "failed")
    await made("b_old_running", old, "in_progress")
    await made("b_full", old + timedelta(hours=2), "success")
    await made(
        "b_inc",
        old + timedelta(hours=3),
        "success",
        kind="incremental",
        parent_backup_id="b_full",
    )
    await made("b_sched", old, "success")
    await made("b_new_failed", now - timedelta(days=1), "failed")
    await made("b_mongo_old", old, "success", source_db="MongoDB")
    with job_scope("backup-test"):
        async with resources.db.transaction() as conn:
            await domain.create_schedule(
                ScheduleInput(task_name="t", cron_expression="0 2 * * *", backup_id="b_sched"),
                now,
                conn=conn,
            )
    async with resources.db.read_only() as conn:
        expired = await domain.backups_to_expire(now, 30, conn=conn)
    # Kept: b_inc is the newest successful backup of both databases and keeps its base
    # b_full; b_sched is a schedule's; b_mongo_old the newest MongoDB one; the running and
    # the recent ones are not candidates.
    assert [b.backup_id for b in expired] == ["b_old_ok", "b_old_failed"]
    async with resources.db.read_only() as conn:
        assert await domain.backups_to_expire(now, 60, conn=conn) == []


async def test_delete_guards(resources: Any) -> None:
    await _new_backup(resources, "base", T0)
    await _finish(resources, "base")
    await _new_backup(resources, "inc", T0, kind="incremental", parent_backup_id="base")
    with job_scope("backup-test"):
        async with resources.db.transaction() as conn:
            with pytest.raises(FailedPrecondition) as running:
                await domain.delete_backup("inc", conn=conn)
            with pytest.raises(FailedPrecondition) as base:
                await domain.delete_backup("base", conn=conn)
    assert running.value.reason == "BACKUP_IN_PROGRESS"
    assert base.value.reason == "BACKUP_HAS_INCREMENTALS"
    await _finish(resources, "inc")
    with job_scope("backup-test"):
        async with resources.db.transaction() as conn:
            await domain.delete_backup("inc", conn=conn)
            await domain.delete_backup("base", conn=conn)
            with pytest.raises(NotFound):
                await domain.get_backup("base", conn=conn)


async def test_legacy_schedules_advance_by_their_period(resources: Any) -> None:
    """Rows written before cron expressions (migration 0016) still fire: a periodic one
    moves by whole periods past the claim, a one-off is deactivated by its run."""
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    async with resources.db.transaction() as conn:
        await conn.execute(
            text(
                "INSERT INTO schedule (schedule_id, task_name, next_run, interval_seconds,"
                " isactive) VALUES ('legacy_daily', 'legacy daily', :due, 86400, 'active'),"
                " ('legacy_once', 'legacy once', :due, NULL, 'active')"
            ),
            {"due": now - timedelta(days=2, hours=1)},
        )
    claimed = {r.schedule.schedule_id: r.schedule for r in await flows.claim_due(resources.db, now)}
    assert claimed["legacy_daily"].next_run == now + timedelta(hours=23)
    assert claimed["legacy_daily"].is_active
    assert claimed["legacy_once"].next_run is None and not claimed["legacy_once"].is_active
    assert await flows.claim_due(resources.db, now + timedelta(hours=22)) == []
