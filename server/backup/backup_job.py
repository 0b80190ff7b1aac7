"""The backup job: dump, seal, store, describe, record.

1. The request is checked before anything starts (unknown tables: INVALID_ARGUMENT).
2. The job lock is taken (another backup, restore or drill anywhere: FAILED_PRECONDITION
   ``BACKUP_JOB_RUNNING``), rows left ``in_progress`` by a dead job are marked failed.
3. The Backup row is inserted ``in_progress`` and a ``started`` entry logged.
4. PostgreSQL is dumped with ``pg_dump`` (custom format, from an exported snapshot with
   its row counts and hashes taken in the same snapshot) and MongoDB exported as BSON
   (server/backup/dumps); each file is sealed (zstd + AES-256-GCM) into the storage as
   ``<backup_id>/postgres.dump`` and ``<backup_id>/mongo.bson``; the temporary plain
   files are removed as soon as they are sealed.
5. The manifest (files, SHA-256, sizes, counts, hashes, schema revisions, server
   version) is written last: a backup folder without one is unfinished.
6. The row becomes ``success`` with its size and storage URI, and ``completed`` is
   logged. Any failure instead marks the row ``failed`` (details say why), logs
   ``failed`` and removes what was stored.

With ``GENCHARGE_BACKUP_PHYSICAL`` on, a full backup of the whole PostgreSQL database
also holds a physical part (server/backup/physical_parts.py: ``pg_basebackup``, its
manifest, the archived WAL): what PostgreSQL incrementals and point-in-time recovery
build on. An incremental backup (``incremental``) holds only what changed since its
parent, the newest successful backup of the same databases (with a physical part when
it covers PostgreSQL): an incremental ``pg_basebackup`` and the MongoDB documents
written since the parent began; see docs/backups.md for the limits.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from server.audit.scope import current_scope
from server.backup import domain, jobs, physical_parts, queries
from server.backup.archive import seal_file
from server.backup.context import (
    COMPLETED,
    FAILED,
    PROGRESS,
    STARTED,
    JobContext,
    Report,
    Steps,
    details_of,
    domain_error,
    public_error,
    step_scope,
)
from server.backup.domain import SOURCE_ALL, SOURCE_MONGODB, SOURCE_POSTGRESQL, Backup
from server.backup.dumps import mongo as mongo_dumps
from server.backup.dumps import postgres as pg_dumps
from server.backup.errors import BackupError
from server.backup.manifest import Manifest, ManifestFile, read_manifest, write_manifest
from server.core.errors import FailedPrecondition, FieldViolation, InvalidArgument

log = logging.getLogger("gencharge.backup")

POSTGRES_FILE: Final = "postgres.dump"
MONGO_FILE: Final = "mongo.bson"
MAX_DESCRIPTION: Final = 500
MAX_BACKUP_DATA: Final = 100
MAX_TABLES: Final = 200


@dataclass(frozen=True)
class BackupRequest:
    """What to back up. ``tables`` names PostgreSQL tables and MongoDB collections (any
    case); empty: everything of the chosen databases. ``created_by`` is the admin (None:
    a schedule, then the job log says ``scheduled``)."""

    source_db: str = SOURCE_ALL
    tables: tuple[str, ...] = ()
    description: str = ""
    backup_data: str = ""
    incremental: bool = False
    created_by: int | None = None


@dataclass(frozen=True)
class BackupPlan:
    """The tables and collections a backup holds (None: that database is left out)."""

    postgres: tuple[str, ...] | None
    mongo: tuple[str, ...] | None
    source_db: str
    backup_data: str


def _by_lower(names: Sequence[str]) -> dict[str, str]:
    return {name.lower(): name for name in names}


def plan_backup(request: BackupRequest) -> BackupPlan:
    """Check the request: INVALID_ARGUMENT with a violation per unknown table, a table
    of a database the backup leaves out, or a text too long."""
    problems: list[FieldViolation] = []
    with_pg = request.source_db in (SOURCE_ALL, SOURCE_POSTGRESQL)
    with_mongo = request.source_db in (SOURCE_ALL, SOURCE_MONGODB)
    pg_known = _by_lower(pg_dumps.backup_tables())
    mongo_known = _by_lower(mongo_dumps.backup_collections())
    if len(request.description) > MAX_DESCRIPTION:
        problems.append(
            FieldViolation("description", f"must have at most {MAX_DESCRIPTION} characters")
        )
    if len(request.backup_data) > MAX_BACKUP_DATA:
        problems.append(
            FieldViolation("backup_data", f"must have at most {MAX_BACKUP_DATA} characters")
        )
    if len(request.tables) > MAX_TABLES:
        problems.append(FieldViolation("tables", f"must name at most {MAX_TABLES} tables"))
        raise InvalidArgument.of(problems)
    pg_chosen: list[str] = []
    mongo_chosen: list[str] = []
    for index, raw in enumerate(request.tables):
        name = raw.strip().lower()
        if with_pg and name in pg_known:
            pg_chosen.append(pg_known[name])
        elif with_mongo and name in mongo_known:
            mongo_chosen.append(mongo_known[name])
        elif name in pg_known or name in mongo_known:
            problems.append(
                FieldViolation(
                    f"tables[{index}]", f"{raw[:64]!r} is not in the database this backup covers"
                )
            )
        else:
            problems.append(
                FieldViolation(f"tables[{index}]", f"no table or collection named {raw[:64]!r}")
            )
    if problems:
        raise InvalidArgument.of(problems)
    if request.tables:
        postgres = tuple(dict.fromkeys(pg_chosen)) or None
        mongo = tuple(dict.fromkeys(mongo_chosen)) or None
    else:
        postgres = tuple(pg_known.values()) if with_pg else None
        mongo = tuple(mongo_known.values()) if with_mongo else None
    source = (
        SOURCE_ALL
        if postgres is not None and mongo is not None
        else SOURCE_POSTGRESQL
        if postgres is not None
        else SOURCE_MONGODB
    )
    backup_data = request.backup_data.strip() or (
        ",".join([*(postgres or ()), *(mongo or ())]) if request.tables else "all"
    )
    return BackupPlan(postgres, mongo, source, backup_data[:MAX_BACKUP_DATA])


async def log_entry(
    ctx: JobContext,
    *,
    job_type: str,
    job_id: str,
    status: str,
    details: dict[str, Any],
    action_by: int | None,
) -> None:
    """One BackupRestoreLogs entry; a MongoDB outage is logged, never fails the job
    (the Backup row is the record of the job; the log is its history)."""
    try:
        await domain.log_job(
            job_type=job_type,
            job_id=job_id,
            status=status,
            details=details,
            action_by=action_by,
            now=ctx.clock(),
            retention_days=ctx.settings.backup_log_retention_days,
            mongo=ctx.resources.mongo_db,
        )
    except Exception as exc:
        log.warning(
            "backup job log entry not written",
            extra={"job_id": job_id, "status": status, "error": type(exc).__name__},
        )


async def _parent(ctx: JobContext, plan: BackupPlan) -> tuple[Backup, Manifest]:
    physical = plan.postgres is not None
    async with ctx.resources.db.read_only() as conn:
        parent = await domain.newest_successful_backup(plan.source_db, conn=conn, physical=physical)
    if parent is None:
        raise FailedPrecondition(
            "an incremental backup needs an earlier successful backup of the same "
            "databases"
            + (" with a physical part" if physical else "")
            + "; take a full backup first",
            reason="BACKUP_NO_PARENT",
        )
    try:
        manifest = await read_manifest(ctx.storage, parent.backup_id, ctx.keys)
    except BackupError as exc:
        raise domain_error(exc) from None
    return parent, manifest


def _check_incremental(ctx: JobContext, request: BackupRequest, plan: BackupPlan) -> None:
    if not request.incremental or plan.postgres is None:
        return
    if not ctx.settings.backup_physical:
        raise FailedPrecondition(
            "incremental backups of PostgreSQL build on physical backups, which are off "
            "(GENCHARGE_BACKUP_PHYSICAL); ask for source_db MongoDB or turn them on",
            reason="BACKUP_INCREMENTAL_UNSUPPORTED",
        )
    if request.tables and plan.postgres:
        raise FailedPrecondition(
            "an incremental backup of PostgreSQL covers the whole database: leave tables empty",
            reason="BACKUP_INCREMENTAL_UNSUPPORTED",
        )


async def create_backup(ctx: JobContext, request: BackupRequest, report: Report) -> Backup:
    """Run one backup job (module docstring); returns the finished Backup. Errors
    before the job starts (bad request, another job running) are raised and nothing is
    recorded; a failure during the job is recorded, reported ``failed`` and raised."""
    plan = plan_backup(request)
    _check_incremental(ctx, request, plan)
    ctx.check_keys()
    base_scope = current_scope.get()
    job_type = "backup" if request.created_by is not None else "scheduled"
    async with jobs.job_lock(ctx.engine, job="backup"):
        with step_scope(base_scope, "backup", "abandon"):
            async with ctx.resources.db.transaction() as conn:
                await domain.abandon_unfinished_backups(conn=conn)
        parent, parent_manifest = await _parent(ctx, plan) if request.incremental else (None, None)
        started_at = ctx.clock()
        backup_id = domain.new_backup_id(started_at)
        with step_scope(base_scope, "backup", "start"):
            async with ctx.resources.db.transaction() as conn:
                await domain.start_backup(
                    domain.NewBackup(
                        backup_id=backup_id,
                        source_db=plan.source_db,
                        created_at=started_at,
                        backup_data=plan.backup_data,
                        description=request.description.strip(),
                        created_by=request.created_by,
                        kind="incremental" if parent else "full",
                        parent_backup_id=parent.backup_id if parent else None,
                        storage_uri=ctx.storage.uri_for(backup_id),
                        details={
                            "tables": list(plan.postgres or ()),
                            "collections": list(plan.mongo or ()),
                        },
                    ),
                    conn=conn,
                )
        step = Steps(ctx, job_type, backup_id, report)
        await log_entry(
            ctx,
            job_type=job_type,
            job_id=backup_id,
            status=STARTED,
            details={"source_db": plan.source_db, "kind": "incremental" if parent else "full"},
            action_by=request.created_by,
        )
        step(STARTED, 0, "backup started")
        try:
            files, revisions, physical = await _dump_and_seal(
                ctx, plan, backup_id, parent, parent_manifest, whole=not request.tables, step=step
            )
            step(PROGRESS, 95, "writing the manifest")
            manifest = Manifest(
                backup_id=backup_id,
                created_at=started_at,
                server_version=ctx.version,
                schema_revisions=revisions,
                kind="incremental" if parent else "full",
                files=tuple(files),
                parent_backup_id=parent.backup_id if parent else None,
                extra={
                    **({"since": parent.created_at.isoformat()} if parent else {}),
                    **({"physical": physical} if physical else {}),
                },
            )
            await write_manifest(ctx.storage, backup_id, manifest, ctx.keys)
        except BaseException as exc:
            await _record_failure(ctx, base_scope, backup_id, job_type, request, exc, step)
            raise
        size = sum(f.size for f in files)
        with step_scope(base_scope, "backup", "finish"):
            async with ctx.resources.db.transaction() as conn:
                finished = await domain.finish_backup(
                    backup_id,
                    "success",
                    size_bytes=size,
                    details={
                        "files": [f.name.rsplit("/", 1)[-1] for f in files],
                        "rows": sum(sum(f.rows.values()) for f in files),
                        "schema_revisions": dict(revisions),
                        "server_version": ctx.version,
                        "physical": physical is not None,
                        **({"physical_start_lsn": physical["start_lsn"]} if physical else {}),
                    },
                    conn=conn,
                )
        await log_entry(
            ctx,
            job_type=job_type,
            job_id=backup_id,
            status=COMPLETED,
            details={"size_bytes": size, "files": len(files)},
            action_by=request.created_by,
        )
        log.info(
            "backup completed",
            extra={"backup_id": backup_id, "size_bytes": size, "kind": manifest.kind},
        )
        step(COMPLETED, 100, "backup completed", backup=finished)
        return finished


async def _dump_and_seal(
    ctx: JobContext,
    plan: BackupPlan,
    backup_id: str,
    parent: Backup | None,
    parent_manifest: Manifest | None,
    *,
    whole: bool,
    step: Steps,
) -> tuple[list[ManifestFile], dict[str, str], dict[str, Any] | None]:
    """Dump, seal and store every file of the backup; returns them, the schema
    revisions, and the physical part (None when there is none)."""
    files: list[ManifestFile] = []
    physical: dict[str, Any] | None = None
    revisions: dict[str, str] = {}
    async with ctx.resources.db.read_only() as conn:
        revisions["postgres"] = await queries.postgres_revision(conn)
    revisions["mongo"] = await queries.mongo_revision(ctx.resources.mongo_db)
    work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="gencharge-backup-"))
    try:
        if plan.postgres is not None and parent is None:
            step(PROGRESS, 5, f"dumping {len(plan.postgres)} PostgreSQL tables")
            dump = await pg_dumps.dump_postgres(
                ctx.tool_settings, work / POSTGRES_FILE, tables=plan.postgres
            )
            revisions["postgres"] = dump.revision
            step(PROGRESS, 25, "compressing and encrypting the PostgreSQL dump")
            sealed = await seal_file(
                dump.path, ctx.storage, f"{backup_id}/{POSTGRES_FILE}", ctx.keys
            )
            await asyncio.to_thread(dump.path.unlink)
            files.append(
                ManifestFile.of(
                    sealed,
                    database="postgres",
                    format="pg_dump-custom",
                    objects=list(dump.stats.rows),
                    rows=dump.stats.rows,
                    hashes=dump.stats.hashes,
                )
            )
        if plan.postgres is not None and ctx.settings.backup_physical and whole:
            step(
                PROGRESS,
                40,
                "taking an incremental base backup" if parent else "taking a base backup",
            )
            parts, physical = await physical_parts.take(
                ctx, backup_id, work / "physical", parent=parent_manifest
            )
            files.extend(parts)
        if plan.mongo is not None:
            step(PROGRESS, 55, f"exporting {len(plan.mongo)} MongoDB collections")
            db = ctx.resources.mongo_db
            exported = (
                await mongo_dumps.dump_mongo_since(
                    db, work / MONGO_FILE, parent.created_at, collections=plan.mongo
                )
                if parent is not None
                else await mongo_dumps.dump_mongo(db, work / MONGO_FILE, collections=plan.mongo)
            )
            step(PROGRESS, 80, "compressing and encrypting the MongoDB export")
            sealed = await seal_file(
                exported.path, ctx.storage, f"{backup_id}/{MONGO_FILE}", ctx.keys
            )
            files.append(
                ManifestFile.of(
                    sealed,
                    database="mongo",
                    format="bson-incremental" if parent is not None else "bson",
                    objects=list(exported.stats.rows),
                    rows=exported.stats.rows,
                    hashes=exported.stats.hashes,
                )
            )
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
    return files, revisions, physical


async def _record_failure(
    ctx: JobContext,
    base_scope: Any,
    backup_id: str,
    job_type: str,
    request: BackupRequest,
    exc: BaseException,
    step: Steps,
) -> None:
    """Mark the row failed, log it, remove what was stored (shielded: a cancelled job
    still records its end)."""
    details = details_of(exc)

    async def record() -> None:
        try:
            await ctx.storage.delete_prefix(backup_id)
        except Exception as cleanup:
            details["cleanup"] = f"stored files not removed ({type(cleanup).__name__})"
        with step_scope(base_scope, "backup", "fail"):
            async with ctx.resources.db.transaction() as conn:
                await domain.finish_backup(backup_id, "failed", details=details, conn=conn)
        await log_entry(
            ctx,
            job_type=job_type,
            job_id=backup_id,
            status=FAILED,
            details=details,
            action_by=request.created_by,
        )

    try:
        await asyncio.shield(record())
    except Exception:
        log.exception("backup failure not recorded", extra={"backup_id": backup_id})
    log.warning(
        "backup failed",
        extra={"backup_id": backup_id, **details},
        exc_info=public_error(exc) is None,
    )
    step(FAILED, 100, "backup failed", error=public_error(exc))
