"""BackupService messages <-> backup values."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from gencharge.v1 import backup_service_pb2 as pb
from server.backup import domain
from server.backup.backup_job import BackupRequest
from server.backup.context import FAILED, Progress
from server.backup.restore_job import RestoreRequest
from server.backup.verify_job import Verification
from server.core import protoconv
from server.core.errors import internal_status, to_status_proto

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


def backup_request_of(message: pb.CreateBackupRequest, created_by: int) -> BackupRequest:
    source = protoconv.enum_filter("source_db", message.source_db, SOURCE_DBS)
    return BackupRequest(
        source_db=source or domain.SOURCE_ALL,
        tables=tuple(message.tables),
        description=message.description,
        backup_data=message.backup_data,
        incremental=message.incremental,
        created_by=created_by,
    )


def restore_request_of(message: pb.RestoreBackupRequest, requested_by: int) -> RestoreRequest:
    return RestoreRequest(
        backup_id=message.backup_id,
        tables=tuple(message.tables),
        validate_only=message.validate_only,
        point_in_time=(
            message.point_in_time.ToDatetime(tzinfo=UTC)
            if message.HasField("point_in_time")
            else None
        ),
        requested_by=requested_by,
    )


#: Progress.job -> JobType (a drill is a restore, into scratch databases).
_PROGRESS_JOB_TYPES = {
    "backup": pb.JOB_TYPE_BACKUP,
    "scheduled": pb.JOB_TYPE_SCHEDULED,
    "restore": pb.JOB_TYPE_RESTORE,
    "drill": pb.JOB_TYPE_RESTORE,
}


def progress_message(progress: Progress, request_id: str) -> pb.BackupProgress:
    message = pb.BackupProgress(
        backup_id=progress.backup_id,
        job_type=_PROGRESS_JOB_TYPES.get(progress.job, pb.JOB_TYPE_UNSPECIFIED),
        status=_JOB_STATUS_NUMBERS.get(progress.status, pb.JOB_STATUS_UNSPECIFIED),
        percent_complete=max(0, min(100, progress.percent)),
        message=progress.message,
        report_time=protoconv.timestamp(progress.at),
    )
    if progress.backup is not None:
        message.backup.CopyFrom(backup_message(progress.backup))
    if progress.status == FAILED:
        message.error.CopyFrom(
            to_status_proto(progress.error)
            if progress.error is not None
            else internal_status(request_id)
        )
    return message


def verification_message(result: Verification) -> pb.VerifyBackupResponse:
    return pb.VerifyBackupResponse(
        backup_id=result.backup.backup_id,
        valid=result.valid,
        problems=result.problems,
        verify_time=protoconv.timestamp(result.at),
    )
