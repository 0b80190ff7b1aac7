"""``gencharge backup create|list|verify|restore|drill``: the backup jobs from a
terminal, over the same job code as the BackupService RPCs (server/backup), with a
progress bar when standard error is a terminal (one line per step otherwise).

Exit codes: 0 done; 1 the backup was not found or a drill found problems; 2 refused
(bad request, another job running, a backup that fails verification).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TextIO

from server.audit.scope import CLI_ACTOR, job_scope
from server.backup import domain, restore_job, verify_job
from server.backup.backup_job import BackupRequest, create_backup
from server.backup.context import JobContext, Progress
from server.backup.domain import SOURCE_ALL, SOURCE_MONGODB, SOURCE_POSTGRESQL
from server.backup.drill_job import run_drill
from server.core.config import Settings
from server.core.errors import DomainError, NotFound
from server.core.resources import Resources
from server.ops import runtime

Work = Callable[[Resources, runtime.Databases], Awaitable[None]]
RunWithDatabases = Callable[[Settings, Work], int]

_SOURCES = {"all": SOURCE_ALL, "postgres": SOURCE_POSTGRESQL, "mongo": SOURCE_MONGODB}


class PercentBar:
    """A job's progress: a bar redrawn in place on a terminal, else one line per new
    step (logs and pipes stay readable)."""

    WIDTH = 30

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._last_message = ""
        self._drawn = 0.0

    def __call__(self, progress: Progress) -> None:
        filled = int(self.WIDTH * max(0, min(100, progress.percent)) / 100)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        line = f"[{bar}] {progress.percent:3d}% {progress.message}"
        if self.tty:
            now = time.monotonic()
            if progress.last or now - self._drawn >= 0.1:
                self._drawn = now
                end = "\n" if progress.last else ""
                print(f"\r\x1b[2K{line}", end=end, file=self.stream, flush=True)
        elif progress.message != self._last_message:
            print(line, file=self.stream, flush=True)
        self._last_message = progress.message


def _refused(exc: DomainError) -> int:
    reason = f" [{exc.reason}]" if exc.reason else ""
    print(f"refusing: {exc.message}{reason}", file=sys.stderr)
    return 1 if isinstance(exc, NotFound) else 2


def _run(
    settings: Settings,
    with_databases: RunWithDatabases,
    job: str,
    body: Callable[[JobContext], Awaitable[int]],
) -> int:
    outcome: list[int] = []

    async def work(resources: Resources, databases: runtime.Databases) -> None:
        ctx = JobContext.build(resources)
        with job_scope(f"backup-{job}", actor=CLI_ACTOR):
            try:
                outcome.append(await body(ctx))
            except DomainError as exc:
                outcome.append(_refused(exc))

    with_databases(settings, work)
    return outcome[0] if outcome else 0


def _create(settings: Settings, args: argparse.Namespace, with_databases: RunWithDatabases) -> int:
    request = BackupRequest(
        source_db=_SOURCES[args.source],
        tables=tuple(args.table or ()),
        description=args.description or "",
        incremental=args.incremental,
    )

    async def body(ctx: JobContext) -> int:
        backup = await create_backup(ctx, request, PercentBar())
        print(
            f"backup {backup.backup_id}: {backup.size_bytes or 0:,} bytes at {backup.storage_uri}"
        )
        return 0

    return _run(settings, with_databases, "create", body)


def _list(settings: Settings, args: argparse.Namespace, with_databases: RunWithDatabases) -> int:
    async def body(ctx: JobContext) -> int:
        async with ctx.resources.db.read_only() as conn:
            backups, _ = await domain.list_backups(
                status=None, source_db=None, page_size=args.limit, page_token="", conn=conn
            )
        for b in backups:
            print(
                f"{b.backup_id}  {b.status or '-':<11} {b.kind or 'full':<11} "
                f"{b.source_db or '-':<10} {b.size_bytes or 0:>14,} bytes  "
                f"{b.created_at:%Y-%m-%d %H:%M}Z  {b.description or ''}"
            )
        if not backups:
            print("no backups yet", file=sys.stderr)
        return 0

    return _run(settings, with_databases, "list", body)


def _verify(settings: Settings, args: argparse.Namespace, with_databases: RunWithDatabases) -> int:
    async def body(ctx: JobContext) -> int:
        result = await verify_job.verify_backup(ctx, args.backup_id)
        if result.valid:
            print(f"backup {args.backup_id}: valid")
            return 0
        print(f"backup {args.backup_id}: INVALID", file=sys.stderr)
        for problem in result.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2

    return _run(settings, with_databases, "verify", body)


def _restore(settings: Settings, args: argparse.Namespace, with_databases: RunWithDatabases) -> int:
    if not args.yes and not args.validate_only:
        print(
            "refusing: a restore replaces the live data of the backup's tables and ends "
            "every session; add --yes to go ahead (or --validate-only to check)",
            file=sys.stderr,
        )
        return 2
    request = restore_job.RestoreRequest(
        backup_id=args.backup_id,
        tables=tuple(args.table or ()),
        validate_only=args.validate_only,
        point_in_time=args.point_in_time,
    )

    async def body(ctx: JobContext) -> int:
        await restore_job.restore_backup(ctx, request, PercentBar())
        return 0

    return _run(settings, with_databases, "restore", body)


def _point_in_time(value: str) -> datetime:
    """``--point-in-time``: an ISO 8601 time with its offset (``Z`` for UTC), so the
    target of a restore is never read in the machine's local zone by accident."""
    try:
        point = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO 8601 time (e.g. 2026-12-02T14:00:00Z)"
        ) from None
    if point.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{value!r} has no offset: add Z for UTC or +05:30 (e.g. 2026-12-02T14:00:00Z)"
        )
    return point.astimezone(UTC)


def _drill(settings: Settings, args: argparse.Namespace, with_databases: RunWithDatabases) -> int:
    async def body(ctx: JobContext) -> int:
        result = await run_drill(
            ctx, PercentBar(), backup_id=args.backup_id, point_in_time=args.point_in_time
        )
        if result.ok:
            print(
                f"drill of {result.backup.backup_id} passed: {result.tables} tables, "
                f"{result.collections} collections, {result.wallets} wallets checked"
            )
            return 0
        print(f"drill of {result.backup.backup_id} FAILED:", file=sys.stderr)
        for problem in result.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1

    return _run(settings, with_databases, "drill", body)


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], with_databases: RunWithDatabases
) -> None:
    """The ``backup`` command and its subcommands."""
    backup = sub.add_parser(
        "backup",
        help="create, list, verify, restore backups and run restore drills",
        description="Backups of PostgreSQL and MongoDB (docs/backups.md). Settings as for "
        "serve: GENCHARGE_BACKUP_* for storage and the backup key.",
    )
    jobs = backup.add_subparsers(dest="backup_command", required=True)

    def bind(
        parser: argparse.ArgumentParser,
        run: Callable[[Settings, argparse.Namespace, RunWithDatabases], int],
    ) -> None:
        parser.set_defaults(run=lambda settings, args: run(settings, args, with_databases))

    create = jobs.add_parser("create", help="take a backup now")
    create.add_argument("--source", choices=sorted(_SOURCES), default="all")
    create.add_argument(
        "--table", action="append", metavar="NAME", help="only this table or collection (repeat)"
    )
    create.add_argument("--description", default=None)
    create.add_argument(
        "--incremental",
        action="store_true",
        help="only what changed since the newest backup (MongoDB; docs/backups.md)",
    )
    bind(create, _create)
    listing = jobs.add_parser("list", help="list backups, newest first")
    listing.add_argument("--limit", type=int, default=50)
    bind(listing, _list)
    verify = jobs.add_parser("verify", help="check a backup's files, checksums and key")
    verify.add_argument("backup_id")
    bind(verify, _verify)
    restore = jobs.add_parser(
        "restore", help="restore a backup into the live databases (ends every session)"
    )
    restore.add_argument("backup_id")
    restore.add_argument("--table", action="append", metavar="NAME", help="only this (repeat)")
    restore.add_argument("--validate-only", action="store_true", help="check, change nothing")
    restore.add_argument(
        "--point-in-time",
        type=_point_in_time,
        default=None,
        help="ISO 8601 time with an offset, e.g. 2026-12-02T14:00:00Z (PITR)",
    )
    restore.add_argument("--yes", action="store_true", help="confirm replacing live data")
    bind(restore, _restore)
    drill = jobs.add_parser(
        "drill", help="restore the newest backup into scratch databases and check it"
    )
    drill.add_argument("backup_id", nargs="?", default=None, help="default: the newest")
    drill.add_argument(
        "--point-in-time",
        type=_point_in_time,
        default=None,
        help="ISO 8601 time with an offset, e.g. 2026-12-02T14:00:00Z: recover to it",
    )
    bind(drill, _drill)
