"""The restore job: put a verified backup back into the live databases.

Before anything changes (each refusal leaves the live data untouched):

1. The backup and its chain must be successful (``BACKUP_NOT_SUCCESSFUL``,
   ``BACKUP_CHAIN_BROKEN``); the job lock is taken (``BACKUP_JOB_RUNNING``).
2. Every backup of the chain verifies (server/backup/verify_job.py): otherwise
   FAILED_PRECONDITION ``BACKUP_VERIFY_FAILED`` with the problems.
3. Each manifest's schema revisions equal the live databases' (``BACKUP_SCHEMA_MISMATCH``:
   restore into a server of the backup's version, or migrate first).
4. The chosen tables are in the backup and restorable (INVALID_ARGUMENT).

Then (``validate_only`` stops before this) PostgreSQL is restored in one transaction
(all or nothing; server/backup/dumps/postgres.py) from the full backup's dump, or, for
an incremental backup or a ``point_in_time``, from the chain's physical part recovered
in a scratch cluster and dumped there (server/backup/physical_parts.py; MongoDB, which
has no point-in-time log, comes from the backup and its chain); MongoDB collection by
collection, and
every session is ended and every service-account token issued before it retired:
tokens issued before the restore stop working (sessions are data: the restored ones
would otherwise come back to life). ``after_restore`` drops
the process's caches (permissions, sessions, plan catalogue, content); other replicas
see the restored data when their caches age out (``GENCHARGE_AUTH_CACHE_SECONDS`` and
the catalogue and content windows). Tables a restore never replaces (the backup records,
schedules, the audit outbox, Alembic's version; AuditLog and BackupRestoreLogs in
MongoDB) keep the history of what happened, including this restore.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from server.audit.scope import AuditScope, audit_change, current_scope, flush
from server.auth import domain as auth_domain
from server.backup import jobs, physical_parts, queries
from server.backup.archive import open_file
from server.backup.backup_job import log_entry
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
from server.backup.domain import SOURCE_MONGODB, Backup
from server.backup.dumps import mongo as mongo_dumps
from server.backup.dumps import postgres as pg_dumps
from server.backup.errors import BackupError
from server.backup.manifest import Manifest, ManifestFile
from server.backup.verify_job import backup_chain, verify_one
from server.core.errors import FailedPrecondition, FieldViolation, InvalidArgument

log = logging.getLogger("gencharge.backup")

#: Recovery refusals that are about the requested point in time.
_TARGET_REFUSED = frozenset({"BACKUP_PITR_TARGET_TOO_EARLY", "BACKUP_PITR_TARGET_UNREACHABLE"})

#: Why the sessions a restore ends were ended (sessions.revoked_reason).
RESTORE_REVOKE_REASON = "backup_restored"


@dataclass(frozen=True)
class RestoreRequest:
    backup_id: str
    tables: tuple[str, ...] = ()
    validate_only: bool = False
    point_in_time: datetime | None = None
    requested_by: int | None = None


@dataclass(frozen=True)
class RestorePlan:
    """What a restore does. ``physical``: PostgreSQL comes from the chain's physical
    part, recovered in a scratch cluster (to ``point_in_time``, or to the end of the
    WAL) and dumped from there; else from the full backup's logical dump."""

    chain: list[Backup]
    manifests: list[Manifest]
    postgres: list[str]
    mongo: list[str]
    physical: bool = False
    point_in_time: datetime | None = None


def _files(manifest: Manifest, database: str) -> list[ManifestFile]:
    return [f for f in manifest.files if f.database == database]


def _plan_tables(
    manifests: Sequence[Manifest], requested: Sequence[str], *, with_postgres: bool
) -> tuple[list[str], list[str]]:
    """The PostgreSQL tables and MongoDB collections to restore: everything restorable
    in the backup, or the requested ones (INVALID_ARGUMENT for names not in it). A
    backup of MongoDB alone (an incremental one builds on a backup of both) restores
    MongoDB alone."""
    full = manifests[0]
    pg_in = [o for f in _files(full, "postgres") for o in f.objects] if with_postgres else []
    mongo_in = list(
        dict.fromkeys(o for m in manifests for f in _files(m, "mongo") for o in f.objects)
    )
    mongo_ok = [c for c in mongo_in if c not in mongo_dumps.NEVER_RESTORED_COLLECTIONS]
    if not requested:
        return pg_dumps.plan_live_restore(pg_in, None) if pg_in else [], mongo_ok
    pg_lower = {t.lower(): t for t in pg_in}
    mongo_lower = {c.lower(): c for c in mongo_in}
    pg_chosen: list[str] = []
    mongo_chosen: list[str] = []
    problems: list[FieldViolation] = []
    for index, raw in enumerate(requested):
        name = raw.strip().lower()
        if name in pg_lower:
            pg_chosen.append(pg_lower[name])
        elif name in mongo_lower and mongo_lower[name] in mongo_ok:
            mongo_chosen.append(mongo_lower[name])
        elif name in mongo_lower:
            problems.append(FieldViolation(f"tables[{index}]", f"{raw[:64]!r} is never restored"))
        else:
            problems.append(
                FieldViolation(f"tables[{index}]", f"{raw[:64]!r} is not in this backup")
            )
    if problems:
        raise InvalidArgument.of(problems)
    postgres = pg_dumps.plan_live_restore(pg_in, pg_chosen) if pg_chosen else []
    return postgres, list(dict.fromkeys(mongo_chosen))


async def live_revisions(ctx: JobContext) -> dict[str, str]:
    async with ctx.resources.db.read_only() as conn:
        postgres = await queries.postgres_revision(conn)
    return {"postgres": postgres, "mongo": await queries.mongo_revision(ctx.resources.mongo_db)}


def check_revisions(manifest: Manifest, live: dict[str, str]) -> None:
    for database, revision in live.items():
        stored = manifest.schema_revisions.get(database)
        if stored is not None and stored != revision:
            raise FailedPrecondition(
                f"backup {manifest.backup_id} was taken at {database} schema revision "
                f"{stored}; this database is at {revision}: restore it into a server of "
                "that version",
                reason="BACKUP_SCHEMA_MISMATCH",
                metadata={"database": database, "backup": stored, "live": revision},
            )


async def prepare_restore(ctx: JobContext, request: RestoreRequest) -> RestorePlan:
    """Checks 2-4 of the module docstring (call it holding the job lock)."""
    chain = await backup_chain(ctx, request.backup_id)
    manifests: list[Manifest] = []
    for backup in chain:
        result = await verify_one(ctx, backup)
        if not result.valid or result.manifest is None:
            raise FailedPrecondition(
                f"backup {backup.backup_id} fails verification: {result.problems[0]}",
                reason="BACKUP_VERIFY_FAILED",
                metadata={"backup_id": backup.backup_id, "problems": str(len(result.problems))},
            )
        manifests.append(result.manifest)
    live = await live_revisions(ctx)
    for manifest in manifests:
        check_revisions(manifest, live)
    with_postgres = chain[-1].source_db != SOURCE_MONGODB
    physical = _physical_route(request, chain, manifests, with_postgres=with_postgres)
    # MongoDB has no point-in-time log: a restore to a point in time restores it from the
    # backup and its chain, as the contract says (RestoreBackupRequest.point_in_time).
    postgres, mongo = _plan_tables(manifests, request.tables, with_postgres=with_postgres)
    return RestorePlan(chain, manifests, postgres, mongo, physical, request.point_in_time)


def _physical_route(
    request: RestoreRequest,
    chain: Sequence[Backup],
    manifests: Sequence[Manifest],
    *,
    with_postgres: bool,
) -> bool:
    """Whether PostgreSQL is restored from the physical part: always for a point in
    time (INVALID_ARGUMENT / FAILED_PRECONDITION when the chain cannot do it), and for
    an incremental backup of PostgreSQL (it has no logical dump of its own)."""
    has_physical = all(physical_parts.physical_of(m) is not None for m in manifests)
    if request.point_in_time is not None:
        if not with_postgres:
            raise InvalidArgument.field(
                "point_in_time", "a backup of MongoDB alone has no point-in-time recovery"
            )
        if not has_physical:
            raise FailedPrecondition(
                f"backup {chain[-1].backup_id} has no physical part (GENCHARGE_BACKUP_PHYSICAL "
                "was off when it was taken): it restores only as it was taken",
                reason="BACKUP_PITR_UNAVAILABLE",
            )
        # The chain's newest base backup is where recovery starts: nothing before it.
        start = physical_parts.physical_of(manifests[-1]) or {}
        started = datetime.fromisoformat(str(start.get("start_time")))
        if request.point_in_time < started:
            raise InvalidArgument.field(
                "point_in_time",
                f"is before backup {chain[-1].backup_id} began ({started.isoformat()}): "
                "restore an older backup",
            )
        return True
    return with_postgres and chain[-1].kind == "incremental" and has_physical


async def restore_backup(
    ctx: JobContext,
    request: RestoreRequest,
    report: Report,
    *,
    after_restore: Callable[[], None] = lambda: None,
) -> Backup:
    """Run one restore (module docstring). Refusals before the restore starts are
    raised with nothing reported; a failure while restoring is reported ``failed``,
    logged and raised (PostgreSQL is then as before: its restore is one transaction)."""
    base_scope = current_scope.get()
    async with jobs.job_lock(ctx.engine, job="restore"):
        plan = await prepare_restore(ctx, request)
        backup = plan.chain[-1]

        step = Steps(ctx, "restore", backup.backup_id, report)

        if request.validate_only:
            step(STARTED, 0, "backup verified")
            step(
                COMPLETED,
                100,
                f"valid: would restore {len(plan.postgres)} tables and "
                f"{len(plan.mongo)} collections (validate_only: nothing changed)",
                backup=backup,
            )
            return backup
        summary = {
            "point_in_time": plan.point_in_time.isoformat() if plan.point_in_time else None,
            "physical": plan.physical,
            "tables": plan.postgres,
            "collections": plan.mongo,
            "chain": [b.backup_id for b in plan.chain],
        }
        await log_entry(
            ctx,
            job_type="restore",
            job_id=backup.backup_id,
            status=STARTED,
            details=summary,
            action_by=request.requested_by,
        )
        step(STARTED, 0, "restore started")
        ended = _SessionsEnded(ctx, base_scope, {**summary, "restored_backup_id": backup.backup_id})
        try:
            await _restore(ctx, plan, step, ended)
            if not ended.done:  # no PostgreSQL table restored: its own transaction
                step(PROGRESS, 95, "ending every session")
                async with ctx.resources.db.engine.begin() as conn:
                    await ended(conn)
        except BaseException as exc:
            details = details_of(exc)
            await asyncio.shield(
                log_entry(
                    ctx,
                    job_type="restore",
                    job_id=backup.backup_id,
                    status=FAILED,
                    details={**summary, **details},
                    action_by=request.requested_by,
                )
            )
            log.warning(
                "restore failed",
                extra={"backup_id": backup.backup_id, **details},
                exc_info=public_error(exc) is None,
            )
            step(FAILED, 100, "restore failed", error=public_error(exc))
            raise
        finally:
            # Whatever happened, what this process holds in memory may be stale now.
            after_restore()
        await log_entry(
            ctx,
            job_type="restore",
            job_id=backup.backup_id,
            status=COMPLETED,
            details={**summary, **ended.counts},
            action_by=request.requested_by,
        )
        log.info(
            "restore completed",
            extra={
                "backup_id": backup.backup_id,
                "tables": len(plan.postgres),
                "collections": len(plan.mongo),
                **ended.counts,
            },
        )
        step(COMPLETED, 100, "restore completed; every session was ended", backup=backup)
        return backup


class _SessionsEnded:
    """The restore's last PostgreSQL step: end every session, retire every service
    token issued so far, and record the restore's audit event, in the transaction it is
    given (the live restore's own, so a restored session is never live by itself)."""

    def __init__(self, ctx: JobContext, base: AuditScope | None, details: dict[str, Any]) -> None:
        self._ctx, self._base, self._details = ctx, base, details
        self.counts: dict[str, int] = {}

    @property
    def done(self) -> bool:
        return bool(self.counts)

    async def __call__(self, conn: AsyncConnection) -> None:
        with step_scope(self._base, "restore", "sessions"):
            ended = await auth_domain.end_every_session(reason=RESTORE_REVOKE_REASON, conn=conn)
            retired = await auth_domain.retire_service_tokens(now=self._ctx.clock(), conn=conn)
            counts = {"sessions_ended": len(ended), "service_accounts_retired": retired}
            audit_change("Backup", "UPDATE", {**self._details, **counts})
            await flush(conn)
        self.counts = counts


async def _restore(
    ctx: JobContext, plan: RestorePlan, step: Steps, end_sessions: _SessionsEnded
) -> None:
    work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="gencharge-restore-"))
    try:
        if plan.postgres and plan.physical:
            dump = await _recovered_dump(ctx, plan, work, step)
            step(PROGRESS, 40, f"restoring {len(plan.postgres)} PostgreSQL tables")
            await pg_dumps.restore_postgres_live(
                ctx.tool_settings, dump, tables=plan.postgres, in_transaction=end_sessions
            )
            await asyncio.to_thread(dump.unlink)
        elif plan.postgres:
            (pg_file,) = _files(plan.manifests[0], "postgres")
            step(PROGRESS, 10, "decrypting the PostgreSQL dump")
            dump = work / "postgres.dump"
            await _open(ctx, pg_file, dump)
            step(PROGRESS, 30, f"restoring {len(plan.postgres)} PostgreSQL tables")
            await pg_dumps.restore_postgres_live(
                ctx.tool_settings, dump, tables=plan.postgres, in_transaction=end_sessions
            )
            await asyncio.to_thread(dump.unlink)
        if plan.mongo:
            step(PROGRESS, 60, f"restoring {len(plan.mongo)} MongoDB collections")
            paths: list[Path] = []
            for index, manifest in enumerate(plan.manifests):
                for item in _files(manifest, "mongo"):
                    path = work / f"mongo-{index}.bson"
                    await _open(ctx, item, path)
                    paths.append(path)
            db = ctx.resources.mongo_db
            await mongo_dumps.restore_mongo(db, paths[:1], collections=plan.mongo)
            if len(paths) > 1:
                await mongo_dumps.restore_mongo(
                    db, paths[1:], collections=plan.mongo, incremental=True
                )
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)


async def _recovered_dump(ctx: JobContext, plan: RestorePlan, work: Path, step: Steps) -> Path:
    """The chain's PostgreSQL recovered in a scratch cluster (to the point in time, or
    to the end of the WAL), dumped from there like the live database is backed up."""
    target = plan.point_in_time
    step(
        PROGRESS,
        10,
        f"recovering PostgreSQL to {target.isoformat()}" if target else "recovering PostgreSQL",
    )
    try:
        async with physical_parts.recovered(ctx, plan.manifests, target) as cluster:
            step(PROGRESS, 30, "dumping the recovered database")
            dump = await pg_dumps.dump_postgres(
                ctx.tool_settings.model_copy(update={"database_url": cluster.url}),
                work / "recovered.dump",
            )
    except BackupError as exc:
        if exc.reason in _TARGET_REFUSED:  # the time asked for, not the backup, is wrong
            raise InvalidArgument(
                str(exc),
                reason=exc.reason,
                violations=[FieldViolation("point_in_time", str(exc)[:200])],
            ) from None
        raise domain_error(exc) from None
    live = await live_revisions(ctx)
    if dump.revision != live["postgres"]:
        raise FailedPrecondition(
            f"the recovered database is at schema revision {dump.revision}; this database "
            f"is at {live['postgres']}",
            reason="BACKUP_SCHEMA_MISMATCH",
            metadata={"database": "postgres", "backup": dump.revision, "live": live["postgres"]},
        )
    return dump.path


async def _open(ctx: JobContext, item: ManifestFile, dest: Path) -> None:
    try:
        await open_file(ctx.storage, item.name, ctx.keys, dest)
    except BackupError as exc:
        raise domain_error(exc) from None
