"""The restore drill: prove the newest backup restores, without touching live data.

The drill takes the job lock (``BACKUP_JOB_RUNNING`` otherwise), verifies the backup
and its chain, restores it into scratch databases created for the drill on the same
servers (server/backup/dumps/scratch.py: an empty PostgreSQL database restored whole
with ``pg_restore``, a fresh MongoDB database), and checks there:

- every table's and collection's row count and row hash equal the manifest's;
- the ledger invariant: each wallet's balance equals the sum of its ledger.

A drill to a point in time (or of an incremental PostgreSQL backup) recovers the
chain's physical part in a scratch cluster instead (server/backup/physical_parts.py)
and checks the ledger invariant there (the manifest's counts describe the logical dump,
taken at another moment, so they are not compared); MongoDB is not drilled to a point
in time.

The scratch databases are dropped afterwards, whatever happened. The result is
recorded in BackupRestoreLogs (``job_type`` restore, ``details.drill`` true,
``status`` completed when everything matched, failed otherwise, with the problems).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from server.backup import domain, jobs, physical_parts
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
)
from server.backup.domain import Backup
from server.backup.dumps import checks, scratch
from server.backup.dumps import mongo as mongo_dumps
from server.backup.dumps import postgres as pg_dumps
from server.backup.dumps.checks import TableStats
from server.backup.errors import BackupError
from server.backup.manifest import Manifest
from server.backup.verify_job import backup_chain, verify_one
from server.core import db as core_db
from server.core.errors import FailedPrecondition, NotFound

log = logging.getLogger("gencharge.backup")

#: The tables the ledger invariant reads (wallet balances, the ledger).
LEDGER_TABLES = frozenset({"users", "transactions"})


@dataclass(frozen=True)
class DrillResult:
    backup: Backup
    problems: list[str] = field(default_factory=list)
    tables: int = 0
    collections: int = 0
    wallets: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


async def newest_backup(ctx: JobContext) -> Backup:
    async with ctx.resources.db.read_only() as conn:
        newest = await domain.newest_successful_backup(domain.SOURCE_ALL, conn=conn)
        if newest is None:
            newest = await domain.newest_successful_backup(domain.SOURCE_POSTGRESQL, conn=conn)
    if newest is None:
        raise NotFound("there is no successful backup to drill", reason="BACKUP_NOT_FOUND")
    return newest


def _expected(manifests: list[Manifest], database: str) -> TableStats:
    """What the restored data must hold: the full backup's counts and hashes (for
    MongoDB with incrementals applied the counts of the newest export per collection
    are lower bounds only, so a chain is checked by the ledger and PostgreSQL alone)."""
    rows: dict[str, int] = {}
    hashes: dict[str, str] = {}
    for item in manifests[0].files:
        if item.database == database:
            rows.update(item.rows)
            hashes.update(item.hashes)
    return TableStats(rows=rows, hashes=hashes)


async def run_drill(
    ctx: JobContext,
    report: Report,
    *,
    backup_id: str | None = None,
    requested_by: int | None = None,
    point_in_time: datetime | None = None,
) -> DrillResult:
    """Drill ``backup_id`` (default: the newest successful backup), optionally to
    ``point_in_time`` (its chain's physical part recovered to then, then checked).
    Refusals before the drill starts are raised; a drill that ran returns its result
    (``ok`` or the problems found) and records it."""
    async with jobs.job_lock(ctx.engine, job="drill"):
        target = await newest_backup(ctx) if backup_id is None else await _get(ctx, backup_id)
        chain = await backup_chain(ctx, target.backup_id)
        manifests: list[Manifest] = []
        for backup in chain:
            verified = await verify_one(ctx, backup)
            if not verified.valid or verified.manifest is None:
                raise FailedPrecondition(
                    f"backup {backup.backup_id} fails verification: {verified.problems[0]}",
                    reason="BACKUP_VERIFY_FAILED",
                )
            manifests.append(verified.manifest)

        step = Steps(ctx, "drill", target.backup_id, report)

        await log_entry(
            ctx,
            job_type="restore",
            job_id=target.backup_id,
            status=STARTED,
            details={
                "drill": True,
                "chain": [b.backup_id for b in chain],
                "point_in_time": point_in_time.isoformat() if point_in_time else None,
            },
            action_by=requested_by,
        )
        step(STARTED, 0, "drill started: restoring into scratch databases")
        try:
            result = await _drill(ctx, chain, manifests, step, point_in_time)
        except BaseException as exc:
            details = {"drill": True, **details_of(exc)}
            await asyncio.shield(
                log_entry(
                    ctx,
                    job_type="restore",
                    job_id=target.backup_id,
                    status=FAILED,
                    details=details,
                    action_by=requested_by,
                )
            )
            log.warning(
                "restore drill failed",
                extra={"backup_id": target.backup_id, **details},
                exc_info=public_error(exc) is None,
            )
            step(FAILED, 100, "drill failed", error=public_error(exc))
            raise
        details = {
            "drill": True,
            "ok": result.ok,
            "problems": result.problems[:50],
            "tables": result.tables,
            "collections": result.collections,
            "wallets_checked": result.wallets,
        }
        await log_entry(
            ctx,
            job_type="restore",
            job_id=target.backup_id,
            status=COMPLETED if result.ok else FAILED,
            details=details,
            action_by=requested_by,
        )
        log.log(
            logging.INFO if result.ok else logging.ERROR,
            "restore drill finished",
            extra={"backup_id": target.backup_id, **details},
        )
        if result.ok:
            step(COMPLETED, 100, "drill passed: counts, hashes and ledger match", backup=target)
        else:
            step(
                FAILED,
                100,
                f"drill found {len(result.problems)} problems: {result.problems[0]}",
                backup=target,
                error=FailedPrecondition(
                    f"the restored backup does not match its manifest: {result.problems[0]}",
                    reason="BACKUP_DRILL_MISMATCH",
                ),
            )
        return result


async def _get(ctx: JobContext, backup_id: str) -> Backup:
    async with ctx.resources.db.read_only() as conn:
        return await domain.get_backup(backup_id, conn=conn)


async def _drill(
    ctx: JobContext,
    chain: list[Backup],
    manifests: list[Manifest],
    step: Steps,
    point_in_time: datetime | None = None,
) -> DrillResult:
    problems: list[str] = []
    tables = collections = wallets = 0
    work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="gencharge-drill-"))
    client = ctx.resources.mongo_db.client
    physical = point_in_time is not None or (
        chain[-1].kind == "incremental"
        and chain[-1].source_db != domain.SOURCE_MONGODB
        and all(physical_parts.physical_of(m) is not None for m in manifests)
    )
    try:
        async with scratch.scratch_databases(ctx.tool_settings, client) as target:
            pg_files = [f for f in manifests[0].files if f.database == "postgres"]
            if physical:
                step(PROGRESS, 10, "recovering PostgreSQL into a scratch cluster")
                try:
                    async with physical_parts.recovered(ctx, manifests, point_in_time) as cluster:
                        step(PROGRESS, 50, "checking the ledger of the recovered database")
                        engine = core_db.create_engine(cluster.url, pool_size=1, max_overflow=0)
                        try:
                            async with engine.connect() as conn:
                                recovered_ledger = await checks.ledger_check(conn)
                                names = list(_expected(manifests, "postgres").rows)
                                counted = await checks.postgres_stats(conn, names)
                        finally:
                            await engine.dispose()
                except BackupError as exc:
                    raise domain_error(exc) from None
                problems.extend(f"ledger: {m}" for m in recovered_ledger.mismatches)
                tables, wallets = len(counted.rows), recovered_ledger.wallets
            elif pg_files:
                step(PROGRESS, 10, "restoring PostgreSQL into a scratch database")
                dump = work / "postgres.dump"
                await _open(ctx, pg_files[0].name, dump)
                expected = _expected(manifests, "postgres")
                # A backup of chosen tables holds the others' schema without their rows:
                # no foreign keys in the scratch copy, and the ledger is checked only when
                # the wallets and the ledger are both in it.
                whole = set(pg_dumps.backup_tables()) <= set(expected.rows)
                await pg_dumps.restore_postgres_scratch(
                    ctx.tool_settings, dump, target.pg_url, foreign_keys=whole
                )
                step(PROGRESS, 50, "checking counts, hashes and the ledger")
                engine = core_db.create_engine(target.pg_url, pool_size=1, max_overflow=0)
                try:
                    async with engine.connect() as conn:
                        actual = await checks.postgres_stats(conn, list(expected.rows))
                        ledger = (
                            await checks.ledger_check(conn)
                            if set(expected.rows) >= LEDGER_TABLES
                            else None
                        )
                finally:
                    await engine.dispose()
                problems.extend(checks.compare_stats(expected, actual))
                if ledger is not None:
                    problems.extend(f"ledger: {m}" for m in ledger.mismatches)
                tables, wallets = len(expected.rows), ledger.wallets if ledger else 0
            mongo_paths: list[Path] = []
            for index, manifest in enumerate(manifests):
                for item in manifest.files:
                    if item.database == "mongo":
                        path = work / f"mongo-{index}.bson"
                        await _open(ctx, item.name, path)
                        mongo_paths.append(path)
            if mongo_paths and point_in_time is None:
                step(PROGRESS, 70, "restoring MongoDB into a scratch database")
                await mongo_dumps.restore_mongo(target.mongo_db, mongo_paths[:1], scratch=True)
                if len(mongo_paths) > 1:
                    await mongo_dumps.restore_mongo(
                        target.mongo_db, mongo_paths[1:], scratch=True, incremental=True
                    )
                expected = _expected(manifests, "mongo")
                if len(mongo_paths) == 1:
                    actual = await checks.mongo_stats(target.mongo_db, list(expected.rows))
                    problems.extend(checks.compare_stats(expected, actual))
                collections = len(expected.rows)
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
    return DrillResult(chain[-1], problems, tables, collections, wallets)


async def _open(ctx: JobContext, name: str, dest: Path) -> None:
    try:
        await open_file(ctx.storage, name, ctx.keys, dest)
    except BackupError as exc:
        raise domain_error(exc) from None
