"""BackupService messages <-> backup values."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from gencharge.v1 import backup_service_pb2 as pb
from server.backup import domain
from server.core import protoconv

BACKUP_STATUSES: dict[pb.BackupStatus.ValueType, str] = {
    pb.BACKUP_STATUS_SUCCESS: "success",
    pb.BACKUP_STATUS_FAILED: "failed",
    pb.BACKUP_STATUS_IN_PROGRESS: "in_progress",
}
_BACKUP_STATUS_NUMBERS = {name: number for number, name in BACKUP_STATUSES.items()}
#: Filters: one database (a backup of both matches either).
SOURCE_DBS: dict[pb.SourceDatabase.ValueType, str] = {
    pb.SOURCE_DATABASE_POSTGRESQL: domain.SOURCE_POSTGRESQL,
    pb.SOURCE_DATABASE_MONGODB: domain.SOURCE_MONGODB,
}
_SOURCE_DB_NUMBERS = {name: number for number, name in SOURCE_DBS.items()}
_KIND_NUMBERS = {"full": pb.BACKUP_KIND_FULL, "incremental": pb.BACKUP_KIND_INCREMENTAL}
JOB_TYPES: dict[pb.JobType.ValueType, str] = {
    pb.JOB_TYPE_BACKUP: "backup",
    pb.JOB_TYPE_RESTORE: "restore",
    pb.JOB_TYPE_SCHEDULED: "scheduled",
}
_JOB_TYPE_NUMBERS = {name: number for number, name in JOB_TYPES.items()}
JOB_STATUSES: dict[pb.JobStatus.ValueType, str] = {
    pb.JOB_STATUS_STARTED: "started",
    pb.JOB_STATUS_PROGRESS: "progress",
    pb.JOB_STATUS_COMPLETED: "completed",
    pb.JOB_STATUS_FAILED: "failed",
}
_JOB_STATUS_NUMBERS = {name: number for number, name in JOB_STATUSES.items()}
#: Schedule.job: UNSPECIFIED means a backup.
SCHEDULE_JOBS: dict[pb.ScheduleJob.ValueType, str] = {
    pb.SCHEDULE_JOB_UNSPECIFIED: "backup",
    pb.SCHEDULE_JOB_BACKUP: "backup",
    pb.SCHEDULE_JOB_DRILL: "drill",
}
_SCHEDULE_JOB_NUMBERS = {"backup": pb.SCHEDULE_JOB_BACKUP, "drill": pb.SCHEDULE_JOB_DRILL}


def _time(message: pb.Schedule, name: str) -> datetime | None:
    if not message.HasField(name):  # type: ignore[arg-type]
        return None
    stamp: Timestamp = getattr(message, name)
    return stamp.ToDatetime(tzinfo=UTC)


def backup_message(backup: domain.Backup) -> pb.Backup:
    return pb.Backup(
        backup_id=backup.backup_id,
        backup_data=backup.backup_data or "",
        snapshot_name=backup.snapshot_name or "",
        source_db=_SOURCE_DB_NUMBERS.get(backup.source_db or "", pb.SOURCE_DATABASE_UNSPECIFIED),
        storage_uri=backup.storage_uri or "",
        backup_status=_BACKUP_STATUS_NUMBERS.get(backup.status or "", pb.BACKUP_STATUS_UNSPECIFIED),
        size_bytes=backup.size_bytes or 0,
        description=backup.description or "",
        details=protoconv.struct(backup.details),
        created_at=protoconv.timestamp(backup.created_at),
        created_by=backup.created_by or 0,
        kind=_KIND_NUMBERS.get(backup.kind or "", pb.BACKUP_KIND_UNSPECIFIED),
        parent_backup_id=backup.parent_backup_id or "",
    )


def schedule_input_of(message: pb.Schedule, paths: tuple[str, ...] = ()) -> domain.ScheduleInput:
    return domain.ScheduleInput(
        schedule_id=message.schedule_id,
        task_name=message.task_name,
        backup_id=message.backup_id,
        cron_expression=message.cron_expression,
        time=_time(message, "time"),
        is_active=message.is_active,
        job=SCHEDULE_JOBS.get(message.job),
        paths=paths,
    )


def schedule_message(schedule: domain.Schedule) -> pb.Schedule:
    return pb.Schedule(
        schedule_id=schedule.schedule_id,
        backup_id=schedule.backup_id or "",
        task_name=schedule.task_name,
        time=protoconv.timestamp(schedule.time),
        next_run=protoconv.timestamp(schedule.next_run),
        is_active=schedule.is_active,
        created_at=protoconv.timestamp(schedule.created_at),
        cron_expression=schedule.cron_expression or "",
        job=_SCHEDULE_JOB_NUMBERS.get(schedule.job, pb.SCHEDULE_JOB_UNSPECIFIED),
        last_run_at=protoconv.timestamp(schedule.last_run_at),
    )


def log_message(entry: domain.JobLog) -> pb.BackupRestoreLog:
    return pb.BackupRestoreLog(
        log_id=entry.log_id,
        job_type=_JOB_TYPE_NUMBERS.get(entry.job_type, pb.JOB_TYPE_UNSPECIFIED),
        job_id=entry.job_id,
        status=_JOB_STATUS_NUMBERS.get(entry.status, pb.JOB_STATUS_UNSPECIFIED),
        details=protoconv.struct(entry.details),
        created_at=protoconv.timestamp(entry.created_at),
        action_by=entry.action_by or 0,
    )
