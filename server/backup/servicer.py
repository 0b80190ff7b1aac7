"""BackupService: RPC methods only.

ListBackups, GetBackup, ListBackupRestoreLogs and the schedule RPCs are served here;
CreateBackup, VerifyBackup, RestoreBackup and DeleteBackup are the generated base
servicer's (UNIMPLEMENTED) until their jobs are wired (docs/backups.md "RPCs").
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import empty_pb2

from gencharge.v1 import backup_service_pb2 as pb
from server.backup import convert, domain, flows
from server.core import protoconv
from server.core.db import Database
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
