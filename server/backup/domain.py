"""Backup rules: Backup rows, schedules and their cron times, the job log, retention.

Plain functions over the connection (``conn=``) or MongoDB database (``mongo=``) they
are given; none opens a transaction. Times come from the caller (``now``), so jobs and
tests run on the clock they choose.

- **Backups** (DDS Backup): a job inserts its row ``in_progress`` (:func:`start_backup`)
  and finishes it ``success`` or ``failed`` (:func:`finish_backup`). ``source_db`` is
  ``PostgreSQL``, ``MongoDB`` or ``all`` (both). ``details`` carries ``kind`` (``full`` /
  ``incremental``) and, for an incremental, ``parent_backup_id``.
- **Schedules** (DDS Schedule): a 5-field cron expression in UTC. ``next_run`` is the
  first cron time at or after the later of ``time`` (the schedule's start) and now;
  a claimed run moves it to the first cron time after the claim
  (:func:`claim_due_schedules`: ``FOR UPDATE SKIP LOCKED``, so with several replicas
  each due run fires once). A run that was missed (the server was down) fires once,
  not once per missed time.
- **Job log** (MongoDB BackupRestoreLogs, DDS validator): :func:`log_job`; an entry
  expires (TTL index on ``expires_at``) after the log retention.
- **Retention**: :func:`backups_to_expire`.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from croniter import CroniterError, croniter
from pymongo.asynchronous.database import AsyncDatabase
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from server.audit.scope import audit_change
from server.backup import queries
from server.backup.physical import wal
from server.core import pagination
from server.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from server.reports import pipelines

Document = dict[str, Any]

#: Backup.backup_status.
BACKUP_STATUSES: Final = ("success", "failed", "in_progress")
FINISHED: Final = ("success", "failed")
#: Backup.source_db: one database, or both ("all").
SOURCE_POSTGRESQL: Final = "PostgreSQL"
SOURCE_MONGODB: Final = "MongoDB"
SOURCE_ALL: Final = "all"
SOURCE_DBS: Final = (SOURCE_POSTGRESQL, SOURCE_MONGODB, SOURCE_ALL)
#: details.kind.
KINDS: Final = ("full", "incremental")
#: Schedule.job.
JOBS: Final = ("backup", "drill")
#: BackupRestoreLogs.job_type and .status (the DDS validator's enums).
JOB_TYPES: Final = ("backup", "restore", "scheduled")
JOB_STATUSES: Final = ("started", "progress", "completed", "failed")
#: UpdateSchedule's field mask.
SCHEDULE_PATHS: Final = ("backup_id", "task_name", "time", "is_active", "cron_expression", "job")
MAX_TASK_NAME: Final = 100
MAX_CRON: Final = 100
MAX_ID: Final = 100
#: Due schedules one claim takes (the rest wait for the next tick).
CLAIM_BATCH: Final = 50
#: The earliest time job-log listings look at (the DDS pipeline's ``since``).
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


# --- backups ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backup:
    """A Backup row."""

    backup_id: str
    backup_data: str | None
    snapshot_name: str | None
    source_db: str | None
    storage_uri: str | None
    status: str | None
    size_bytes: int | None
    description: str | None
    details: Mapping[str, Any]
    created_at: datetime
    created_by: int | None

    @property
    def kind(self) -> str | None:
        """``full`` or ``incremental``; None on rows written before kinds (full)."""
        kind = self.details.get("kind")
        return kind if kind in KINDS else None

    @property
    def parent_backup_id(self) -> str | None:
        parent = self.details.get("parent_backup_id")
        return str(parent) if parent else None


def _backup(row: Row[Any]) -> Backup:
    return Backup(
        backup_id=row.backup_id,
        backup_data=row.backup_data,
        snapshot_name=row.snapshot_name,
        source_db=row.source_db,
        storage_uri=row.storage_uri,
        status=row.backup_status,
        size_bytes=None if row.size_bytes is None else int(row.size_bytes),
        description=row.description,
        details=row.details if isinstance(row.details, dict) else {},
        created_at=row.created_at,
        created_by=row.created_by,
    )


def new_backup_id(now: datetime) -> str:
    """``backup_2026_12_02_2205_3fa9``: the job's UTC minute (ids sort by time) and 4
    random hex digits (two jobs in one minute never collide)."""
    return f"backup_{now.astimezone(UTC):%Y_%m_%d_%H%M}_{secrets.token_hex(2)}"


@dataclass(frozen=True)
class NewBackup:
    """A backup job starting. ``details`` is stored as given plus ``kind`` and
    ``parent_backup_id``."""

    backup_id: str
    source_db: str
    created_at: datetime
    backup_data: str = SOURCE_ALL
    description: str = ""
    created_by: int | None = None
    kind: str = "full"
    parent_backup_id: str | None = None
    storage_uri: str | None = None
    snapshot_name: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


async def start_backup(new: NewBackup, *, conn: AsyncConnection) -> Backup:
    """Insert the job's Backup row ``in_progress`` (audited as a Backup INSERT).
    ALREADY_EXISTS ``BACKUP_EXISTS`` for a used id; NOT_FOUND ``BACKUP_NOT_FOUND`` for an
    unknown parent."""
    if new.source_db not in SOURCE_DBS:
        raise ValueError(f"source_db must be one of {SOURCE_DBS}")
    if new.kind not in KINDS or (new.kind == "incremental") != bool(new.parent_backup_id):
        raise ValueError("an incremental backup names its parent; a full one does not")
    if await queries.backup_by_id(conn, new.backup_id) is not None:
        raise AlreadyExists(f"backup {new.backup_id} exists", reason="BACKUP_EXISTS")
    if new.parent_backup_id and await queries.backup_by_id(conn, new.parent_backup_id) is None:
        raise NotFound(f"backup {new.parent_backup_id} not found", reason="BACKUP_NOT_FOUND")
    details: dict[str, Any] = {**new.details, "kind": new.kind}
    if new.parent_backup_id:
        details["parent_backup_id"] = new.parent_backup_id
    row = await queries.insert_backup(
        conn,
        {
            "backup_id": new.backup_id,
            "backup_data": new.backup_data,
            "snapshot_name": new.snapshot_name or new.backup_id,
            "source_db": new.source_db,
            "storage_uri": new.storage_uri,
            "backup_status": "in_progress",
            "description": new.description or None,
            "details": details,
            "created_at": new.created_at,
            "created_by": new.created_by,
        },
    )
    audit_change(
        "Backup",
        "INSERT",
        {
            "backup_id": new.backup_id,
            "source_db": new.source_db,
            "kind": new.kind,
            "status": "in_progress",
        },
    )
    return _backup(row)


async def finish_backup(
    backup_id: str,
    status: str,
    *,
    size_bytes: int | None = None,
    details: Mapping[str, Any] | None = None,
    storage_uri: str | None = None,
    conn: AsyncConnection,
) -> Backup:
    """Finish an ``in_progress`` backup as ``success`` or ``failed``; ``details`` are
    merged into the row's (a failure says why under ``error``). FAILED_PRECONDITION
    ``BACKUP_NOT_IN_PROGRESS`` for one already finished; audited as a Backup UPDATE."""
    if status not in FINISHED:
        raise ValueError("a backup finishes as success or failed")
    if size_bytes is not None and size_bytes < 0:
        raise ValueError("size_bytes must not be negative")
    current = await get_backup(backup_id, conn=conn, lock=True)
    if current.status != "in_progress":
        raise FailedPrecondition(
            f"backup {backup_id} is {current.status}, not in progress",
            reason="BACKUP_NOT_IN_PROGRESS",
        )
    values: dict[str, Any] = {
        "backup_status": status,
        "details": {**current.details, **(details or {})},
    }
    if size_bytes is not None:
        values["size_bytes"] = size_bytes
    if storage_uri is not None:
        values["storage_uri"] = storage_uri
    row = await queries.update_backup(conn, backup_id, values)
    audit_change(
        "Backup",
        "UPDATE",
        {"backup_id": backup_id, "status": status, "size_bytes": size_bytes},
    )
    return _backup(row)


async def abandon_unfinished_backups(*, conn: AsyncConnection) -> list[str]:
    """Mark every ``in_progress`` backup ``failed`` (details.error ``interrupted``).
    Call it holding the job lock (server/backup/jobs.py): no other job runs then, so
    such a row is left by a job whose process died."""
    abandoned = await queries.backups_with_status(conn, "in_progress")
    for backup_id in abandoned:
        current = await get_backup(backup_id, conn=conn)
        await queries.update_backup(
            conn,
            backup_id,
            {
                "backup_status": "failed",
                "details": {**current.details, "error": "interrupted: its job did not finish"},
            },
        )
    if abandoned:
        audit_change("Backup", "UPDATE", {"abandoned": abandoned, "status": "failed"})
    return abandoned


async def get_backup(backup_id: str, *, conn: AsyncConnection, lock: bool = False) -> Backup:
    """NOT_FOUND ``BACKUP_NOT_FOUND``; INVALID_ARGUMENT for an empty id."""
    if not backup_id:
        raise InvalidArgument.field("backup_id", "is required")
    row = (
        None if len(backup_id) > MAX_ID else await queries.backup_by_id(conn, backup_id, lock=lock)
    )
    if row is None:
        raise NotFound(f"backup {backup_id[:MAX_ID]} not found", reason="BACKUP_NOT_FOUND")
    return _backup(row)


async def newest_successful_backup(
    source_db: str, *, conn: AsyncConnection, physical: bool = False
) -> Backup | None:
    """The backup an incremental backup of ``source_db`` builds on: the newest
    successful one that covers those databases (a backup of both covers either); with
    ``physical``, the newest that also has a physical PostgreSQL part."""
    covering = [SOURCE_ALL] if source_db == SOURCE_ALL else [source_db, SOURCE_ALL]
    row = await queries.newest_successful_backup(conn, covering, physical=physical)
    return None if row is None else _backup(row)


def _source_filter(source_db: str | None) -> list[str] | None:
    """A one-database filter also matches backups of both databases."""
    return None if source_db is None else [source_db, SOURCE_ALL]


async def list_backups(
    *,
    status: str | None,
    source_db: str | None,
    page_size: int,
    page_token: str,
    conn: AsyncConnection,
) -> tuple[list[Backup], str]:
    """Backups newest first (ties: backup_id descending). ``source_db`` (PostgreSQL or
    MongoDB) also lists the backups of both databases."""
    page = pagination.parse(
        page_size, page_token, {"list": "backups", "status": status, "source_db": source_db}
    )
    rows = await queries.list_backups(
        conn,
        status=status,
        source_dbs=_source_filter(source_db),
        after=_time_position(page.after),
        limit=page.fetch,
    )
    items, more = pagination.split(list(rows), page)
    last = items[-1] if items else None
    token = page.next_token([last.created_at.isoformat(), last.backup_id] if last else None, more)
    return [_backup(r) for r in items], token


def _time_position(after: Any) -> tuple[datetime, str] | None:
    position = pagination.position(after, str, str)
    if position is None:
        return None
    try:
        moment = datetime.fromisoformat(position[0])
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidArgument.field("page_token", "is not a token this service issued")
    return moment, position[1]


async def check_deletable(backup_id: str, *, conn: AsyncConnection) -> Backup:
    """The backup, if it may be deleted: not ``in_progress`` (FAILED_PRECONDITION
    ``BACKUP_IN_PROGRESS``), named by no schedule (``BACKUP_IN_USE``, metadata
    ``schedule_ids``) and the parent of no incremental (``BACKUP_HAS_INCREMENTALS``)."""
    current = await get_backup(backup_id, conn=conn, lock=True)
    if current.status == "in_progress":
        raise FailedPrecondition(
            f"backup {backup_id} is still in progress", reason="BACKUP_IN_PROGRESS"
        )
    users = await queries.schedules_using(conn, [backup_id])
    if users:
        raise FailedPrecondition(
            f"backup {backup_id} is used by a schedule; change or delete the schedule first",
            reason="BACKUP_IN_USE",
            metadata={"schedule_ids": ",".join(r.schedule_id for r in users)},
        )
    children = await queries.children_of(conn, backup_id)
    if children:
        raise FailedPrecondition(
            f"backup {backup_id} is the base of incremental backups; delete those first",
            reason="BACKUP_HAS_INCREMENTALS",
            metadata={"backup_ids": ",".join(children)},
        )
    return current


async def delete_backup(backup_id: str, *, conn: AsyncConnection) -> Backup:
    """Delete the row (after :func:`check_deletable`; the caller deletes the stored
    files); audited as a Backup DELETE."""
    current = await check_deletable(backup_id, conn=conn)
    await queries.delete_backup(conn, backup_id)
    audit_change("Backup", "DELETE", {"backup_id": backup_id, "status": current.status})
    return current


async def backups_to_expire(now: datetime, days: int, *, conn: AsyncConnection) -> list[Backup]:
    """Backups retention deletes at ``now`` with a window of ``days``: finished
    (``success`` or ``failed``) and created more than ``days`` days before ``now``,
    except, whatever their age: the newest successful backup of each ``source_db``,
    every backup a schedule names (active or not: its foreign key), and every backup
    another kept backup builds on (the parents of a kept incremental, up its chain).
    Oldest first."""
    if days < 1:
        raise ValueError("the retention window is at least one day")
    cutoff = now - timedelta(days=days)
    rows = list(await queries.backup_lineage(conn))
    parents = {r.backup_id: r.parent_backup_id for r in rows}
    keep: set[str] = set(await queries.scheduled_backup_ids(conn))
    newest: dict[str | None, Any] = {}
    for r in rows:
        if r.backup_status == "success":
            best = newest.get(r.source_db)
            if best is None or (r.created_at, r.backup_id) > (best.created_at, best.backup_id):
                newest[r.source_db] = r
    keep |= {r.backup_id for r in newest.values()}
    expired = {
        r.backup_id
        for r in rows
        if r.backup_status in FINISHED and r.created_at < cutoff and r.backup_id not in keep
    }
    # Whatever stays keeps its chain: walk up from every kept backup.
    for backup_id in [b for b in parents if b not in expired]:
        seen: set[str] = set()
        parent = parents.get(backup_id)
        while parent and parent not in seen:
            seen.add(parent)
            expired.discard(parent)
            parent = parents.get(parent)
    ordered = sorted((r for r in rows if r.backup_id in expired), key=lambda r: r.created_at)
    return [await get_backup(r.backup_id, conn=conn) for r in ordered]


async def oldest_physical_start(*, conn: AsyncConnection) -> str | None:
    """The earliest start LSN of a kept successful backup's physical part: archived WAL
    before it can serve no recovery (None: no backup has a physical part)."""
    lsns = await queries.physical_start_lsns(conn)
    return min(lsns, key=wal.lsn_to_int) if lsns else None


# --- schedules ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """A Schedule row. ``is_active`` is DDS ``isactive`` (active/inactive)."""

    schedule_id: str
    backup_id: str | None
    task_name: str
    time: datetime | None
    next_run: datetime | None
    is_active: bool
    created_at: datetime
    cron_expression: str | None
    job: str
    last_run_at: datetime | None
    #: Legacy: the period of schedules written before cron expressions.
    interval_seconds: int | None = None


def _schedule(row: Row[Any]) -> Schedule:
    return Schedule(
        schedule_id=row.schedule_id,
        backup_id=row.backup_id,
        task_name=row.task_name,
        time=row.time,
        next_run=row.next_run,
        is_active=row.isactive == "active",
        created_at=row.created_at,
        cron_expression=row.cron_expression,
        job=row.job,
        last_run_at=row.last_run_at,
        interval_seconds=row.interval_seconds,
    )


def _cron(expression: str, start: datetime) -> croniter:
    return croniter(expression, start.astimezone(UTC))


def next_cron_time(expression: str, after: datetime) -> datetime:
    """The first time of ``expression`` (5 fields, UTC) strictly after ``after``."""
    result: datetime = _cron(expression, after).get_next(datetime)
    return result.astimezone(UTC)


def first_cron_time(expression: str, start: datetime) -> datetime:
    """The first time of ``expression`` at or after ``start``."""
    on_minute = start.second == 0 and start.microsecond == 0
    return next_cron_time(expression, start - timedelta(seconds=1) if on_minute else start)


def _check_cron(
    expression: str, start: datetime, problems: list[FieldViolation]
) -> datetime | None:
    """The first run at or after ``start``, or a violation on schedule.cron_expression."""
    path = "schedule.cron_expression"
    fields = expression.split()
    if not expression.strip():
        problems.append(FieldViolation(path, "is required, e.g. '0 2 * * *' (daily at 02:00 UTC)"))
        return None
    if len(expression) > MAX_CRON or len(fields) != 5:
        problems.append(
            FieldViolation(
                path,
                "must have 5 fields (minute hour day-of-month month day-of-week), in UTC, "
                "e.g. '0 2 * * *'",
            )
        )
        return None
    try:
        return first_cron_time(" ".join(fields), start)
    except OverflowError:
        problems.append(FieldViolation("schedule.time", "leaves no run before the year 9999"))
    except (CroniterError, ValueError, KeyError) as exc:
        never = "failed to find next date" in str(exc)
        problems.append(
            FieldViolation(
                path, "never matches a date" if never else "is not a valid cron expression"
            )
        )
    return None


@dataclass(frozen=True)
class ScheduleInput:
    """CreateSchedule's values, or UpdateSchedule's with ``paths`` (the mask). ``job`` is
    None for a number that names no job (refused); ``time`` None: unset."""

    task_name: str = ""
    backup_id: str = ""
    cron_expression: str = ""
    time: datetime | None = None
    is_active: bool = False
    job: str | None = "backup"
    schedule_id: str = ""
    paths: tuple[str, ...] = ()


def _check_task_name(value: str, problems: list[FieldViolation]) -> str:
    clean = value.strip()
    if not 1 <= len(clean) <= MAX_TASK_NAME or not clean.isprintable():
        problems.append(
            FieldViolation(
                "schedule.task_name", f"must be 1 to {MAX_TASK_NAME} printable characters"
            )
        )
    return clean


async def _check_backup_ref(backup_id: str, *, conn: AsyncConnection) -> str | None:
    if not backup_id:
        return None
    if len(backup_id) > MAX_ID or await queries.backup_by_id(conn, backup_id) is None:
        raise NotFound(
            f"backup {backup_id[:MAX_ID]} not found",
            reason="BACKUP_NOT_FOUND",
            metadata={"field": "schedule.backup_id"},
        )
    return backup_id


def _schedule_details(s: Schedule) -> dict[str, Any]:
    return {
        "schedule_id": s.schedule_id,
        "task_name": s.task_name,
        "backup_id": s.backup_id,
        "cron_expression": s.cron_expression,
        "job": s.job,
        "is_active": s.is_active,
        "next_run": s.next_run.isoformat() if s.next_run else None,
    }


async def create_schedule(new: ScheduleInput, now: datetime, *, conn: AsyncConnection) -> Schedule:
    """A new schedule (see the module docstring for next_run). INVALID_ARGUMENT with
    every bad field at once; NOT_FOUND ``BACKUP_NOT_FOUND``; ALREADY_EXISTS
    ``TASK_NAME_TAKEN``."""
    problems: list[FieldViolation] = []
    task_name = _check_task_name(new.task_name, problems)
    if new.job is None:
        problems.append(FieldViolation("schedule.job", "must be BACKUP or DRILL"))
    start = new.time or now
    next_run = _check_cron(new.cron_expression, max(start, now), problems)
    if problems:
        raise InvalidArgument.of(problems)
    assert next_run is not None and new.job is not None
    backup_id = await _check_backup_ref(new.backup_id, conn=conn)
    row = await queries.insert_schedule(
        conn,
        {
            "schedule_id": f"sched_{secrets.token_hex(6)}",
            "backup_id": backup_id,
            "task_name": task_name,
            "time": start,
            "next_run": next_run,
            "isactive": "active" if new.is_active else "inactive",
            "created_at": now,
            "cron_expression": " ".join(new.cron_expression.split()),
            "job": new.job,
        },
    )
    if row is None:
        raise _task_name_taken(task_name)
    created = _schedule(row)
    audit_change("Schedule", "INSERT", _schedule_details(created))
    return created


def _task_name_taken(task_name: str) -> AlreadyExists:
    return AlreadyExists(
        f"a schedule named {task_name[:MAX_TASK_NAME]!r} exists", reason="TASK_NAME_TAKEN"
    )


async def get_schedule(schedule_id: str, *, conn: AsyncConnection, lock: bool = False) -> Schedule:
    """NOT_FOUND ``SCHEDULE_NOT_FOUND``; INVALID_ARGUMENT for an empty id."""
    if not schedule_id:
        raise InvalidArgument.field("schedule.schedule_id", "is required")
    row = (
        None
        if len(schedule_id) > MAX_ID
        else await queries.schedule_by_id(conn, schedule_id, lock=lock)
    )
    if row is None:
        raise NotFound(f"schedule {schedule_id[:MAX_ID]} not found", reason="SCHEDULE_NOT_FOUND")
    return _schedule(row)


async def update_schedule(
    change: ScheduleInput, now: datetime, *, conn: AsyncConnection
) -> Schedule:
    """Apply the mask's fields. next_run is recomputed (first cron time at or after the
    later of ``time`` and ``now``) when the mask names time, cron_expression or
    is_active. Errors as :func:`create_schedule`, plus NOT_FOUND ``SCHEDULE_NOT_FOUND``."""
    paths = change.paths
    unknown = [p for p in paths if p not in SCHEDULE_PATHS]
    if not paths or unknown:
        raise InvalidArgument.field("update_mask", f"must list some of {', '.join(SCHEDULE_PATHS)}")
    if not change.schedule_id:
        raise InvalidArgument.field("schedule.schedule_id", "is required")
    problems: list[FieldViolation] = []
    values: dict[str, Any] = {}
    if "task_name" in paths:
        values["task_name"] = _check_task_name(change.task_name, problems)
    if "job" in paths:
        if change.job is None:
            problems.append(FieldViolation("schedule.job", "must be BACKUP or DRILL"))
        values["job"] = change.job
    if "cron_expression" in paths and not change.cron_expression.strip():
        problems.append(FieldViolation("schedule.cron_expression", "is required"))
    if problems:
        raise InvalidArgument.of(problems)
    current = await get_schedule(change.schedule_id, conn=conn, lock=True)
    if "backup_id" in paths:
        values["backup_id"] = await _check_backup_ref(change.backup_id, conn=conn)
    if "is_active" in paths:
        values["isactive"] = "active" if change.is_active else "inactive"
    if "time" in paths:
        values["time"] = change.time or now
    if "cron_expression" in paths:
        values["cron_expression"] = " ".join(change.cron_expression.split())
    if {"time", "cron_expression", "is_active"} & set(paths):
        cron = values.get("cron_expression", current.cron_expression)
        start = values.get("time", current.time) or now
        if cron is None:
            problems.append(
                FieldViolation(
                    "schedule.cron_expression",
                    "is required: this schedule predates cron expressions",
                )
            )
        else:
            values["next_run"] = _check_cron(cron, max(start, now), problems)
        if problems:
            raise InvalidArgument.of(problems)
    if "task_name" in values and await queries.task_name_taken(
        conn, values["task_name"], except_id=current.schedule_id
    ):
        raise _task_name_taken(values["task_name"])
    row = await queries.update_schedule(conn, current.schedule_id, values)
    updated = _schedule(row)
    audit_change("Schedule", "UPDATE", {**_schedule_details(updated), "fields": sorted(set(paths))})
    return updated


async def delete_schedule(schedule_id: str, *, conn: AsyncConnection) -> Schedule:
    """NOT_FOUND ``SCHEDULE_NOT_FOUND``; audited as a Schedule DELETE."""
    if not schedule_id:
        raise InvalidArgument.field("schedule_id", "is required")
    row = None if len(schedule_id) > MAX_ID else await queries.delete_schedule(conn, schedule_id)
    if row is None:
        raise NotFound(f"schedule {schedule_id[:MAX_ID]} not found", reason="SCHEDULE_NOT_FOUND")
    deleted = _schedule(row)
    audit_change("Schedule", "DELETE", _schedule_details(deleted))
    return deleted


async def list_schedules(
    *, page_size: int, page_token: str, conn: AsyncConnection
) -> tuple[list[Schedule], str]:
    """By next_run, soonest first (ties: schedule_id), schedules without one last."""
    page = pagination.parse(page_size, page_token, {"list": "schedules"})
    after: tuple[datetime | None, str] | None = None
    position = pagination.position(page.after, str, str)
    if position is not None:
        at: datetime | None = None
        if position[0]:
            try:
                at = datetime.fromisoformat(position[0])
            except ValueError:
                at = None
            if at is None or at.tzinfo is None:
                raise InvalidArgument.field("page_token", "is not a token this service issued")
        after = (at, position[1])
    rows = await queries.list_schedules(conn, after=after, limit=page.fetch)
    items, more = pagination.split(list(rows), page)
    last = items[-1] if items else None
    token = page.next_token(
        [last.next_run.isoformat() if last.next_run else "", last.schedule_id] if last else None,
        more,
    )
    return [_schedule(r) for r in items], token


@dataclass(frozen=True)
class ClaimedRun:
    """A due run one replica claimed: the schedule as it is after the claim (next_run
    advanced, last_run_at set) and the time the run was due."""

    schedule: Schedule
    due_at: datetime


def _advance(current: Schedule, now: datetime) -> datetime | None:
    """The next run after a claim at ``now``: the first cron time after ``now``; for a
    legacy schedule, its period added until past ``now``; None for a legacy one-off."""
    if current.cron_expression:
        return next_cron_time(current.cron_expression, now)
    if current.interval_seconds and current.next_run is not None:
        period = timedelta(seconds=current.interval_seconds)
        missed = (now - current.next_run) // period + 1
        return current.next_run + missed * period
    return None


async def claim_due_schedules(
    now: datetime, *, conn: AsyncConnection, limit: int = CLAIM_BATCH
) -> list[ClaimedRun]:
    """Claim the active schedules due at ``now`` (next_run <= now) on ``conn``'s
    transaction: each row is locked ``FOR UPDATE SKIP LOCKED`` (a row another replica is
    claiming is skipped), its next_run moved to the first cron time after ``now`` and
    last_run_at set to ``now``. Commit, then run the claimed jobs: with several replicas
    each due run fires once (a missed run fires once, not once per missed time). A
    legacy one-off schedule (no cron, no period) is deactivated by its run."""
    claimed: list[ClaimedRun] = []
    for row in await queries.lock_due_schedules(conn, now, limit):
        current = _schedule(row)
        assert current.next_run is not None
        try:
            following = _advance(current, now)
        except (CroniterError, ValueError, OverflowError):
            following = None  # a stored expression that no longer yields a time
        values: dict[str, Any] = {"next_run": following, "last_run_at": now}
        if following is None:
            values["isactive"] = "inactive"
        updated = _schedule(await queries.update_schedule(conn, current.schedule_id, values))
        claimed.append(ClaimedRun(updated, current.next_run))
    return claimed


# --- job log (MongoDB BackupRestoreLogs) --------------------------------------------------


@dataclass(frozen=True)
class JobLog:
    """A BackupRestoreLogs document."""

    log_id: str
    job_type: str
    job_id: str
    status: str
    details: Mapping[str, Any]
    created_at: datetime
    action_by: int | None
    expires_at: datetime | None = None


def mongo_time(moment: datetime) -> datetime:
    """``moment`` at the millisecond precision MongoDB keeps (keyset tokens match)."""
    return moment.astimezone(UTC).replace(microsecond=moment.microsecond // 1000 * 1000)


async def log_job(
    *,
    job_type: str,
    job_id: str,
    status: str,
    details: Mapping[str, Any] | None = None,
    action_by: int | None = None,
    now: datetime,
    retention_days: int,
    mongo: AsyncDatabase[Document],
) -> JobLog:
    """Write one BackupRestoreLogs entry (DDS validator: ``job_type`` backup, restore or
    scheduled; ``status`` started, progress, completed or failed). ``action_by`` is the
    admin who started the job (None: the scheduler). With ``retention_days`` > 0 the
    entry carries ``expires_at`` and the TTL index removes it then; 0 keeps it."""
    if job_type not in JOB_TYPES:
        raise ValueError(f"job_type must be one of {JOB_TYPES}")
    if status not in JOB_STATUSES:
        raise ValueError(f"status must be one of {JOB_STATUSES}")
    created_at = mongo_time(now)
    entry = JobLog(
        log_id=f"log_{created_at:%Y_%m_%d_%H%M%S}_{secrets.token_hex(4)}",
        job_type=job_type,
        job_id=job_id,
        status=status,
        details=dict(details or {}),
        created_at=created_at,
        action_by=action_by,
        expires_at=created_at + timedelta(days=retention_days) if retention_days > 0 else None,
    )
    document: Document = {
        "log_id": entry.log_id,
        "job_type": job_type,
        "job_id": job_id,
        "status": status,
        "details": dict(entry.details),
        "created_at": created_at,
    }
    if action_by is not None:
        document["action_by"] = action_by
    if entry.expires_at is not None:
        document["expires_at"] = entry.expires_at
    await queries.insert_log(mongo, document)
    return entry


def _log(document: Document) -> JobLog:
    def aware(value: Any) -> datetime | None:
        if not isinstance(value, datetime):
            return None
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    created = aware(document.get("created_at"))
    action_by = document.get("action_by")
    details = document.get("details")
    return JobLog(
        log_id=str(document.get("log_id") or ""),
        job_type=str(document.get("job_type", "")),
        job_id=str(document.get("job_id", "")),
        status=str(document.get("status", "")),
        details=details if isinstance(details, dict) else {},
        created_at=created or _EPOCH,
        action_by=action_by if isinstance(action_by, int) and action_by > 0 else None,
        expires_at=aware(document.get("expires_at")),
    )


def job_log_pipeline(
    *,
    job_type: str | None,
    status: str | None,
    job_id: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[Document]:
    """The DDS "recent backup restore activity" pipeline (server/reports/pipelines.py)
    with this listing's filters, a keyset position and a limit; ``details`` kept."""
    match_stage, sort_stage, project_stage = pipelines.recent_backup_restore_activity_pipeline(
        _EPOCH
    )
    match: Document = dict(match_stage["$match"])
    for key, value in (("job_type", job_type), ("status", status), ("job_id", job_id)):
        if value is not None:
            match[key] = value
    if after is not None:
        at, log_id = after
        match["$or"] = [
            {"created_at": {"$lt": at}},
            {"created_at": at, "log_id": {"$lt": log_id}},
        ]
    return [
        {"$match": match},
        {"$sort": {**sort_stage["$sort"], "log_id": -1}},
        {"$limit": limit},
        {"$project": {**project_stage["$project"], "details": 1, "expires_at": 1}},
    ]


async def list_job_logs(
    *,
    job_type: str | None,
    status: str | None,
    job_id: str | None,
    page_size: int,
    page_token: str,
    mongo: AsyncDatabase[Document],
) -> tuple[list[JobLog], str]:
    """BackupRestoreLogs newest first (ties: log_id descending), one page."""
    if job_id is not None and len(job_id) > MAX_ID:
        raise InvalidArgument.field("job_id", f"must have at most {MAX_ID} characters")
    page = pagination.parse(
        page_size,
        page_token,
        {"list": "job_logs", "job_type": job_type, "status": status, "job_id": job_id},
    )
    documents = await queries.aggregate_logs(
        mongo,
        job_log_pipeline(
            job_type=job_type,
            status=status,
            job_id=job_id,
            after=_time_position(page.after),
            limit=page.fetch,
        ),
    )
    items, more = pagination.split([_log(d) for d in documents], page)
    last = items[-1] if items else None
    token = page.next_token([last.created_at.isoformat(), last.log_id] if last else None, more)
    return items, token
