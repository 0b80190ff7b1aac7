"""BackupService schedules through the real server: CreateSchedule (cron checked with
croniter, every bad field at once, ALREADY_EXISTS task names, NOT_FOUND backups),
ListSchedules by next_run with page tokens, UpdateSchedule by field mask (next_run
recomputed), DeleteSchedule; RBAC per role, nothing half-written, audit events."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf import field_mask_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import func, select

from gencharge.v1 import backup_service_pb2 as pb
from server.core.schema import schedule
from tests.backup.service.helpers import Stub, add_backup, audit_docs, refused
from tests.helpers.auth import Actor, create_admin, create_service, register_user

INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED
#: A start far enough ahead that next_run does not depend on the test's clock.
START = datetime(2030, 1, 1, 0, 0, 30, tzinfo=UTC)


def _ts(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _at(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


async def _count(resources: Any) -> int:
    async with resources.db.read_only() as conn:
        return int((await conn.execute(select(func.count()).select_from(schedule))).scalar_one())


def _new(name: str, cron: str = "0 2 * * *", **kw: Any) -> pb.CreateScheduleRequest:
    return pb.CreateScheduleRequest(
        schedule=pb.Schedule(task_name=name, cron_expression=cron, time=_ts(START), **kw)
    )


async def test_create_list_update_delete(stub: Stub, admin: Actor, resources: Any) -> None:
    md = admin.metadata
    seeded = await _count(resources)  # the reference data's daily backup
    created = await stub.CreateSchedule(
        _new("  nightly  ", "0  2 * * *", is_active=True, schedule_id="ignored"), metadata=md
    )
    assert created.schedule_id.startswith("sched_") and created.schedule_id != "ignored"
    assert (created.task_name, created.cron_expression, created.is_active) == (
        "nightly",
        "0 2 * * *",
        True,
    )
    assert created.job == pb.SCHEDULE_JOB_BACKUP and not created.backup_id
    assert _at(created.time) == START
    assert _at(created.next_run) == datetime(2030, 1, 1, 2, 0, tzinfo=UTC)
    assert not created.HasField("last_run_at")

    drill = await stub.CreateSchedule(
        _new("weekly drill", "30 3 * * SUN", job=pb.SCHEDULE_JOB_DRILL), metadata=md
    )
    assert drill.job == pb.SCHEDULE_JOB_DRILL and not drill.is_active
    assert _at(drill.next_run) == datetime(2030, 1, 6, 3, 30, tzinfo=UTC)  # a Sunday

    # A start in the past: the first run is the next cron time from now.
    before = datetime.now(UTC)
    now_ish = await stub.CreateSchedule(
        pb.CreateScheduleRequest(
            schedule=pb.Schedule(
                task_name="every minute",
                cron_expression="* * * * *",
                time=_ts(datetime(2020, 1, 1, tzinfo=UTC)),
            )
        ),
        metadata=md,
    )
    assert before <= _at(now_ish.next_run) <= datetime.now(UTC) + timedelta(minutes=1)

    # Update by mask: only the named fields change; next_run follows time and cron.
    updated = await stub.UpdateSchedule(
        pb.UpdateScheduleRequest(
            schedule=pb.Schedule(
                schedule_id=created.schedule_id,
                cron_expression="15 4 1 * *",
                task_name="not in the mask",
            ),
            update_mask=mask("cron_expression"),
        ),
        metadata=md,
    )
    assert updated.task_name == "nightly" and updated.cron_expression == "15 4 1 * *"
    assert _at(updated.next_run) == datetime(2030, 1, 1, 4, 15, tzinfo=UTC)
    paused = await stub.UpdateSchedule(
        pb.UpdateScheduleRequest(
            schedule=pb.Schedule(schedule_id=created.schedule_id, is_active=False),
            update_mask=mask("is_active"),
        ),
        metadata=md,
    )
    assert not paused.is_active and paused.next_run == updated.next_run
    later = await stub.UpdateSchedule(
        pb.UpdateScheduleRequest(
            schedule=pb.Schedule(
                schedule_id=created.schedule_id,
                time=_ts(datetime(2031, 6, 1, tzinfo=UTC)),
                task_name="renamed",
                job=pb.SCHEDULE_JOB_DRILL,
            ),
            update_mask=mask("time", "task_name", "job"),
        ),
        metadata=md,
    )
    assert _at(later.next_run) == datetime(2031, 6, 1, 4, 15, tzinfo=UTC)
    assert later.task_name == "renamed" and later.job == pb.SCHEDULE_JOB_DRILL

    # Listed by next_run, soonest first.
    listed = await stub.ListSchedules(pb.ListSchedulesRequest(), metadata=md)
    mine = [s.schedule_id for s in listed.schedules if s.task_name != "daily_backup"]
    assert mine == [now_ish.schedule_id, drill.schedule_id, created.schedule_id]
    assert await _count(resources) == seeded + 3

    await stub.DeleteSchedule(pb.DeleteScheduleRequest(schedule_id=drill.schedule_id), metadata=md)
    gone = await refused(
        stub.DeleteSchedule(pb.DeleteScheduleRequest(schedule_id=drill.schedule_id), metadata=md)
    )
    assert (gone.code, gone.reason) == (grpc.StatusCode.NOT_FOUND, "SCHEDULE_NOT_FOUND")
    assert await _count(resources) == seeded + 2

    inserted = await audit_docs(resources, "CreateSchedule", 3)
    assert {d["table_name"] for d in inserted} == {"Schedule"}
    assert {d["details"]["task_name"] for d in inserted} == {
        "nightly",
        "weekly drill",
        "every minute",
    }
    changed = await audit_docs(resources, "UpdateSchedule", 3)
    assert [d["details"]["fields"] for d in sorted(changed, key=lambda d: d["created_at"])] == [
        ["cron_expression"],
        ["is_active"],
        ["job", "task_name", "time"],
    ]
    deleted = await audit_docs(resources, "DeleteSchedule", 1)
    assert deleted[0]["action_type"] == "DELETE"
    assert deleted[0]["details"]["schedule_id"] == drill.schedule_id


async def test_schedule_of_a_backup(stub: Stub, admin: Actor, resources: Any) -> None:
    md = admin.metadata
    await add_backup(resources, "backup_template", START - timedelta(days=1))
    made = await stub.CreateSchedule(_new("users", backup_id="backup_template"), metadata=md)
    assert made.backup_id == "backup_template"
    missing = await refused(
        stub.CreateSchedule(_new("other", backup_id="backup_nope"), metadata=md)
    )
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "BACKUP_NOT_FOUND")
    cleared = await stub.UpdateSchedule(
        pb.UpdateScheduleRequest(
            schedule=pb.Schedule(schedule_id=made.schedule_id), update_mask=mask("backup_id")
        ),
        metadata=md,
    )
    assert cleared.backup_id == ""  # a full backup of both databases again


async def test_bad_input_is_refused_whole(stub: Stub, admin: Actor, resources: Any) -> None:
    md = admin.metadata
    before = await _count(resources)
    every = await refused(
        stub.CreateSchedule(
            pb.CreateScheduleRequest(
                schedule=pb.Schedule(task_name=" ", cron_expression="0 2 * *", job=7)
            ),
            metadata=md,
        )
    )
    assert every.code == INVALID
    assert set(every.field_violations) == {
        "schedule.task_name",
        "schedule.cron_expression",
        "schedule.job",
    }
    for cron, says in [
        ("", "is required"),
        ("@daily", "5 fields"),
        ("0 0 2 * * *", "5 fields"),
        ("61 * * * *", "not a valid cron"),
        ("0 2 * * 8", "not a valid cron"),
        ("a b c d e", "not a valid cron"),
        ("0 0 30 2 *", "never matches"),
    ]:
        bad = await refused(stub.CreateSchedule(_new("x", cron), metadata=md))
        assert bad.code == INVALID, cron
        assert says in bad.field_violations["schedule.cron_expression"], cron
    late = await refused(
        stub.CreateSchedule(
            pb.CreateScheduleRequest(
                schedule=pb.Schedule(
                    task_name="late",
                    cron_expression="0 2 * * *",
                    time=_ts(datetime(9999, 12, 31, 23, 0, tzinfo=UTC)),
                )
            ),
            metadata=md,
        )
    )
    assert late.code == INVALID and "schedule.time" in late.field_violations
    await stub.CreateSchedule(_new("taken"), metadata=md)
    taken = await refused(stub.CreateSchedule(_new("taken", "5 * * * *"), metadata=md))
    assert (taken.code, taken.reason) == (grpc.StatusCode.ALREADY_EXISTS, "TASK_NAME_TAKEN")
    assert await _count(resources) == before + 1

    other = await stub.CreateSchedule(_new("other"), metadata=md)
    for paths, field in [
        ((), "update_mask"),
        (("next_run",), "update_mask"),
        (("schedule_id",), "update_mask"),
    ]:
        wrong = await refused(
            stub.UpdateSchedule(
                pb.UpdateScheduleRequest(
                    schedule=pb.Schedule(schedule_id=other.schedule_id), update_mask=mask(*paths)
                ),
                metadata=md,
            )
        )
        assert wrong.code == INVALID and field in wrong.field_violations, paths
    clash = await refused(
        stub.UpdateSchedule(
            pb.UpdateScheduleRequest(
                schedule=pb.Schedule(schedule_id=other.schedule_id, task_name="taken"),
                update_mask=mask("task_name"),
            ),
            metadata=md,
        )
    )
    assert (clash.code, clash.reason) == (grpc.StatusCode.ALREADY_EXISTS, "TASK_NAME_TAKEN")
    bad_cron = await refused(
        stub.UpdateSchedule(
            pb.UpdateScheduleRequest(
                schedule=pb.Schedule(
                    schedule_id=other.schedule_id, cron_expression="99 * * * *", task_name="new"
                ),
                update_mask=mask("cron_expression", "task_name"),
            ),
            metadata=md,
        )
    )
    assert bad_cron.code == INVALID and "schedule.cron_expression" in bad_cron.field_violations
    unknown = await refused(
        stub.UpdateSchedule(
            pb.UpdateScheduleRequest(
                schedule=pb.Schedule(schedule_id="sched_none", is_active=True),
                update_mask=mask("is_active"),
            ),
            metadata=md,
        )
    )
    assert (unknown.code, unknown.reason) == (grpc.StatusCode.NOT_FOUND, "SCHEDULE_NOT_FOUND")
    # Nothing of the refused updates was written.
    listed = await stub.ListSchedules(pb.ListSchedulesRequest(page_size=200), metadata=md)
    kept = next(s for s in listed.schedules if s.schedule_id == other.schedule_id)
    assert kept == other


async def test_concurrent_creates_of_one_name(stub: Stub, admin: Actor) -> None:
    calls = [
        stub.CreateSchedule(_new("race", f"{m} * * * *"), metadata=admin.metadata) for m in range(5)
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    made = [r for r in results if isinstance(r, pb.Schedule)]
    failed = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(made) == 1 and len(failed) == 4
    assert {e.code() for e in failed} == {grpc.StatusCode.ALREADY_EXISTS}


async def test_pages(stub: Stub, admin: Actor) -> None:
    md = admin.metadata
    for day in range(1, 8):
        await stub.CreateSchedule(_new(f"day {day}", f"0 1 {day} * *"), metadata=md)
    seen: list[pb.Schedule] = []
    token = ""
    while True:
        page = await stub.ListSchedules(
            pb.ListSchedulesRequest(page_size=3, page_token=token), metadata=md
        )
        assert len(page.schedules) <= 3
        seen.extend(page.schedules)
        token = page.next_page_token
        if not token:
            break
    times = [_at(s.next_run) for s in seen if s.HasField("next_run")]
    assert times == sorted(times)
    assert len({s.schedule_id for s in seen}) == len(seen) >= 7
    forged = await refused(
        stub.ListSchedules(pb.ListSchedulesRequest(page_token="abc.def"), metadata=md)
    )
    assert forged.code == INVALID and "page_token" in forged.field_violations
    negative = await refused(stub.ListSchedules(pb.ListSchedulesRequest(page_size=-1), metadata=md))
    assert negative.code == INVALID and "page_size" in negative.field_violations


async def test_only_admins_manage_schedules(
    stub: Stub, channel: grpc.aio.Channel, resources: Any
) -> None:
    support = await create_admin(channel, resources, "Support")
    user = await register_user(channel)
    service = await create_service(channel, resources)
    before = await _count(resources)
    for actor in (support, user, service):
        calls = [
            stub.CreateSchedule(_new(f"by {actor.kind}"), metadata=actor.metadata),
            stub.ListSchedules(pb.ListSchedulesRequest(), metadata=actor.metadata),
            stub.UpdateSchedule(
                pb.UpdateScheduleRequest(
                    schedule=pb.Schedule(schedule_id="sched_daily_backup", is_active=True),
                    update_mask=mask("is_active"),
                ),
                metadata=actor.metadata,
            ),
            stub.DeleteSchedule(
                pb.DeleteScheduleRequest(schedule_id="sched_daily_backup"),
                metadata=actor.metadata,
            ),
        ]
        for call in calls:
            assert (await refused(call)).code == DENIED, actor.kind
    anonymous = await refused(stub.ListSchedules(pb.ListSchedulesRequest()))
    assert anonymous.code == grpc.StatusCode.UNAUTHENTICATED
    assert await _count(resources) == before


async def test_enabling_the_default_schedule(stub: Stub, admin: Actor) -> None:
    """The reference data's daily backup waits, inactive and without a next run (listed
    last), until an admin enables it; then its next run is the next 02:00 UTC."""
    md = admin.metadata
    await stub.CreateSchedule(_new("soon"), metadata=md)
    listed = await stub.ListSchedules(pb.ListSchedulesRequest(), metadata=md)
    default = listed.schedules[-1]
    assert (default.schedule_id, default.task_name, default.cron_expression) == (
        "sched_daily_backup",
        "daily_backup",
        "0 2 * * *",
    )
    assert not default.is_active and not default.HasField("next_run") and not default.backup_id
    pages: list[str] = []
    token = ""
    while True:  # one at a time, across the boundary to the schedules without next run
        page = await stub.ListSchedules(
            pb.ListSchedulesRequest(page_size=1, page_token=token), metadata=md
        )
        pages.extend(s.task_name for s in page.schedules)
        token = page.next_page_token
        if not token:
            break
    assert pages == ["soon", "daily_backup"]
    before = datetime.now(UTC)
    enabled = await stub.UpdateSchedule(
        pb.UpdateScheduleRequest(
            schedule=pb.Schedule(schedule_id="sched_daily_backup", is_active=True),
            update_mask=mask("is_active"),
        ),
        metadata=md,
    )
    next_run = _at(enabled.next_run)
    assert enabled.is_active and (next_run.hour, next_run.minute) == (2, 0)
    assert before <= next_run <= before + timedelta(days=1)
    # Paged: the default (no next run before) now sits among the others by time.
    first = await stub.ListSchedules(pb.ListSchedulesRequest(page_size=1), metadata=md)
    rest = await stub.ListSchedules(
        pb.ListSchedulesRequest(page_size=1, page_token=first.next_page_token), metadata=md
    )
    assert [first.schedules[0].schedule_id, rest.schedules[0].task_name] == [
        "sched_daily_backup",
        "soon",
    ]
    assert not rest.next_page_token
