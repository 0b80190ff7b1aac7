"""BackupService: RPC methods only.

The jobs are server/backup/backup_job.py, restore_job.py and verify_job.py; CreateBackup
and RestoreBackup run them detached from the call (server/backup/detached.py) and
stream their progress (docs/backups.md "RPCs").
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import empty_pb2

from gencharge.v1 import backup_service_pb2 as pb
from server.audit.scope import current_scope
from server.auth.principal import principal
from server.backup import backup_job, convert, domain, flows, restore_job, verify_job
from server.backup.context import JobContext, Report
from server.backup.detached import DetachedJobs
from server.core import protoconv
from server.core.db import Database
from server.core.logs import request_id_var
from server.core.resources import Resources

Context = grpc.aio.ServicerContext[Any, Any]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class BackupRpcs:
    """ListBackups, GetBackup, ListBackupRestoreLogs, CreateSchedule, ListSchedules,
    UpdateSchedule, DeleteSchedule (composed with the generated base servicer in
    server/rpc/services.py: the RPCs no part overrides answer UNIMPLEMENTED).
    ``_now`` is the wall clock of schedule times."""

    _resources: Resources
    _db: Database
    _now: Callable[[], datetime] = staticmethod(_utc_now)
    _jobs: DetachedJobs
    _job_context: JobContext
    #: Drops this process's caches after a restore (server/rpc/services.py).
    _after_restore: Callable[[], None]

    async def _stream(
        self, run: Callable[[Report], Awaitable[Any]]
    ) -> AsyncIterator[pb.BackupProgress]:
        """Run a job detached from the call and stream its progress. The job writes its
        own audit events (one per transaction); the call adds none of its own."""
        request_id = request_id_var.get()
        scope = current_scope.get()
        if scope is not None:
            scope.written = True
        async for progress in self._jobs.stream(run):
            yield convert.progress_message(progress, request_id)

    async def CreateBackup(
        self, request: pb.CreateBackupRequest, context: Context
    ) -> AsyncIterator[pb.BackupProgress]:
        job = convert.backup_request_of(request, created_by=principal().numeric_id)
        backup_job.plan_backup(job)  # a bad request fails the call before anything starts
        async for message in self._stream(
            lambda report: backup_job.create_backup(self._job_context, job, report)
        ):
            yield message

    async def VerifyBackup(
        self, request: pb.VerifyBackupRequest, context: Context
    ) -> pb.VerifyBackupResponse:
        result = await verify_job.verify_backup(self._job_context, request.backup_id)
        return convert.verification_message(result)

    async def RestoreBackup(
        self, request: pb.RestoreBackupRequest, context: Context
    ) -> AsyncIterator[pb.BackupProgress]:
        job = convert.restore_request_of(request, requested_by=principal().numeric_id)
        async for message in self._stream(
            lambda report: restore_job.restore_backup(
                self._job_context, job, report, after_restore=self._after_restore
            )
        ):
            yield message

    async def DeleteBackup(
        self, request: pb.DeleteBackupRequest, context: Context
    ) -> empty_pb2.Empty:
        await flows.delete_backup(self._job_context, request.backup_id)
        return empty_pb2.Empty()

    # --- backups --------------------------------------------------------------------------

    async def ListBackups(
        self, request: pb.ListBackupsRequest, context: Context
    ) -> pb.ListBackupsResponse:
        status = protoconv.enum_filter(
            "backup_status", request.backup_status, convert.BACKUP_STATUSES
        )
        source_db = protoconv.enum_filter("source_db", request.source_db, convert.SOURCE_DBS)
        async with self._db.read_only() as conn:
            backups, token = await domain.list_backups(
                status=status,
                source_db=source_db,
                page_size=request.page_size,
                page_token=request.page_token,
                conn=conn,
            )
        return pb.ListBackupsResponse(
            backups=[convert.backup_message(b) for b in backups], next_page_token=token
        )

    async def GetBackup(self, request: pb.GetBackupRequest, context: Context) -> pb.Backup:
        async with self._db.read_only() as conn:
            backup = await domain.get_backup(request.backup_id, conn=conn)
        return convert.backup_message(backup)

    async def ListBackupRestoreLogs(
        self, request: pb.ListBackupRestoreLogsRequest, context: Context
    ) -> pb.ListBackupRestoreLogsResponse:
        entries, token = await domain.list_job_logs(
            job_type=protoconv.enum_filter("job_type", request.job_type, convert.JOB_TYPES),
            status=protoconv.enum_filter("status", request.status, convert.JOB_STATUSES),
            job_id=request.job_id or None,
            page_size=request.page_size,
            page_token=request.page_token,
            mongo=self._resources.mongo_db,
        )
        return pb.ListBackupRestoreLogsResponse(
            backup_restore_logs=[convert.log_message(e) for e in entries],
            next_page_token=token,
        )

    # --- schedules ------------------------------------------------------------------------

    async def CreateSchedule(
        self, request: pb.CreateScheduleRequest, context: Context
    ) -> pb.Schedule:
        created = await flows.create_schedule(
            self._db, convert.schedule_input_of(request.schedule), self._now()
        )
        return convert.schedule_message(created)

    async def ListSchedules(
        self, request: pb.ListSchedulesRequest, context: Context
    ) -> pb.ListSchedulesResponse:
        async with self._db.read_only() as conn:
            schedules, token = await domain.list_schedules(
                page_size=request.page_size, page_token=request.page_token, conn=conn
            )
        return pb.ListSchedulesResponse(
            schedules=[convert.schedule_message(s) for s in schedules], next_page_token=token
        )

    async def UpdateSchedule(
        self, request: pb.UpdateScheduleRequest, context: Context
    ) -> pb.Schedule:
        change = convert.schedule_input_of(request.schedule, tuple(request.update_mask.paths))
        updated = await flows.update_schedule(self._db, change, self._now())
        return convert.schedule_message(updated)

    async def DeleteSchedule(
        self, request: pb.DeleteScheduleRequest, context: Context
    ) -> empty_pb2.Empty:
        async with self._db.transaction() as conn:
            await domain.delete_schedule(request.schedule_id, conn=conn)
        return empty_pb2.Empty()
