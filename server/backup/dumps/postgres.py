"""PostgreSQL logical dumps (``pg_dump -Fc``) and their restores, live and scratch.

Callers pass settings whose ``database_url`` is the real database's URL: with the
embedded server (``GENCHARGE_DATABASE_URL`` empty) that is the URL
server/ops/runtime.py ``open_databases`` resolved (``Databases.database_url``; workers
get it through ``workers.worker_settings``), e.g.
``settings.model_copy(update={"database_url": databases.database_url})``. An empty URL
is refused (``BACKUP_DATABASE_URL_MISSING``).

The password never reaches a command line: the tools get the URL without it and the
password in ``PGPASSWORD``; error messages carry the tools' stderr tail, never the URL.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import asyncpg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from server.backup.dumps import queries
from server.backup.dumps.checks import TableStats, postgres_stats
from server.backup.errors import BackupError
from server.backup.pgtools import pg_tool
from server.backup.tools import connection, kill, run_tool, tail
from server.core.config import Settings
from server.core.dburl import to_async_url
from server.core.errors import FieldViolation, InvalidArgument
from server.core.schema import metadata

log = logging.getLogger(__name__)

#: Tables a live restore never replaces (a scratch restore holds everything):
#: - ``alembic_version``: the live schema's revision is the live schema's;
#: - ``backup``, ``schedule``: the record of backups and schedules must survive a
#:   restore (including the restore job's own backup row);
#: - ``audit_outbox``: audit events written since the backup and not yet relayed must
#:   still reach MongoDB ``AuditLog`` (event ids are UUIDs: nothing collides).
#: Sessions and refresh tokens ARE restored as data; the restore flow then revokes
#: every session, so nobody keeps a session the restore brought back (or lost).
NEVER_RESTORED_TABLES: Final[frozenset[str]] = frozenset(
    {"alembic_version", "backup", "schedule", "audit_outbox"}
)

#: Seconds a dump or a scratch restore may take before the tool is killed.
DEFAULT_TOOL_TIMEOUT_SECONDS: Final = 6 * 3600.0
#: Seconds a live restore waits for one table lock before it gives up (clean rollback).
DEFAULT_LOCK_TIMEOUT_SECONDS: Final = 10.0
#: COPY data handed to the database per chunk during a live restore.
_COPY_CHUNK_BYTES: Final = 1 << 20
#: Longest line of pg_restore's SQL output we read (one COPY row).
_LINE_LIMIT: Final = 512 * 1024 * 1024
#: SQLSTATEs: deadlock_detected, lock_not_available, foreign_key_violation.
_LOCKED_STATES: Final = frozenset({"40P01", "55P03"})
_FK_VIOLATION: Final = "23503"


def backup_tables(selected: Sequence[str] | None = None, *, field: str = "tables") -> list[str]:
    """The tables a PostgreSQL backup holds: every table of the schema (server metadata),
    sorted; or ``selected``, validated (unknown names: ``InvalidArgument`` on ``field``),
    in the order given without repeats. Empty ``selected`` means all."""
    known = sorted(metadata.tables)
    if not selected:
        return known
    unknown = [name for name in selected if name not in metadata.tables]
    if unknown:
        raise InvalidArgument.of(
            [FieldViolation(field, f"unknown table {name!r}") for name in dict.fromkeys(unknown)]
        )
    return list(dict.fromkeys(selected))


def plan_live_restore(
    dump_tables: Sequence[str], requested: Sequence[str] | None, *, field: str = "tables"
) -> list[str]:
    """The tables a live restore replaces: ``requested`` (validated: each in the backup and
    restorable, else ``InvalidArgument`` on ``field``), or every table of the backup but
    :data:`NEVER_RESTORED_TABLES`; sorted."""
    if not requested:
        return sorted(set(dump_tables) - NEVER_RESTORED_TABLES)
    violations = []
    for name in dict.fromkeys(requested):
        if name in NEVER_RESTORED_TABLES:
            violations.append(FieldViolation(field, f"table {name!r} is never restored"))
        elif name not in dump_tables:
            violations.append(FieldViolation(field, f"table {name!r} is not in the backup"))
    if violations:
        raise InvalidArgument.of(violations)
    return sorted(set(requested))


@dataclass(frozen=True)
class PostgresDump:
    """A dump file, the stats of its tables and the schema revision it was taken at."""

    path: Path
    stats: TableStats
    revision: str


# --- connecting -------------------------------------------------------------------------


def _engine(url: str) -> AsyncEngine:
    """A one-connection engine with no statement timeout (dumps and restores are long)."""
    return create_async_engine(
        to_async_url(url),
        poolclass=NullPool,
        hide_parameters=True,
        connect_args={
            "server_settings": {"application_name": "gencharge-backup"},
            "timeout": 10,
            "command_timeout": None,
        },
    )


# --- dump ---------------------------------------------------------------------------------


async def dump_postgres(
    settings: Settings,
    dest: Path,
    *,
    tables: Sequence[str] | None = None,
    timeout_seconds: float = DEFAULT_TOOL_TIMEOUT_SECONDS,
    on_snapshot: Callable[[], Awaitable[None]] | None = None,
) -> PostgresDump:
    """``pg_dump -Fc`` of the database into ``dest``, with the stats of ``tables``
    (validated by :func:`backup_tables`; default all) taken from the very snapshot the
    dump reads.

    The dump always holds the whole schema (types, functions, views, every table's
    definition) and ``alembic_version``, so it restores into an empty database; with
    ``tables`` only those tables' data (``--exclude-table-data`` for the others).
    Consistency: a REPEATABLE READ transaction exports its snapshot
    (``pg_export_snapshot()``), computes the stats and reads the revision, and stays
    open while ``pg_dump --snapshot`` reads the same snapshot; so the stats describe
    exactly the dumped rows whatever is written meanwhile. ``on_snapshot`` (tests) runs
    after the stats, before pg_dump starts. The file is uncompressed
    (``-Z0``): sealing compresses it (zstd) on its way to storage.
    """
    chosen = backup_tables(tables)
    target = connection(settings.database_url)
    engine = _engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
            await conn.begin()
            snapshot = await queries.export_snapshot(conn)
            live = await queries.public_tables(conn)
            missing = [name for name in chosen if name not in live]
            if missing:
                raise BackupError(
                    "BACKUP_DUMP_FAILED",
                    f"tables missing from the database (schema older than the server?): "
                    f"{', '.join(missing)}",
                )
            stats = await postgres_stats(conn, chosen)
            revision = await queries.alembic_revision(conn)
            if on_snapshot is not None:
                await on_snapshot()
            args = ["--format=custom", "--compress=0", f"--snapshot={snapshot}"]
            if tables:
                keep = {*chosen, "alembic_version"}
                args += [
                    f"--exclude-table-data=public.{_pattern(name)}"
                    for name in live
                    if name not in keep
                ]
            args += [f"--file={dest}", f"--dbname={target.conninfo}"]
            await run_tool(
                settings,
                "pg_dump",
                args,
                env=target.env,
                timeout_seconds=timeout_seconds,
                reason="BACKUP_DUMP_FAILED",
                check=True,
            )
            await conn.rollback()
    except DBAPIError as exc:
        raise BackupError("BACKUP_DUMP_FAILED", f"reading the database failed: {exc.orig}") from exc
    finally:
        await engine.dispose()
    return PostgresDump(dest, stats, revision)


def _pattern(name: str) -> str:
    """``name`` as a pg_dump pattern matching exactly it (quoted, so no wildcards)."""
    return '"' + name.replace('"', '""') + '"'


async def _toc(settings: Settings, dump: Path, *, timeout_seconds: float) -> list[str]:
    """The dump's table of contents (``pg_restore --list``); a file pg_restore cannot read
    raises ``BACKUP_DUMP_CORRUPT``."""
    ran = await run_tool(
        settings,
        "pg_restore",
        ["--list", str(dump)],
        timeout_seconds=timeout_seconds,
        reason="BACKUP_DUMP_CORRUPT",
    )
    if ran.returncode != 0:
        raise BackupError(
            "BACKUP_DUMP_CORRUPT", f"pg_restore cannot read the dump: {tail(ran.stderr)}"
        )
    return ran.stdout.decode("utf-8", "replace").splitlines()


async def dump_tables(
    settings: Settings, dump: Path, *, timeout_seconds: float = 600.0
) -> list[str]:
    """The tables whose data ``dump`` holds (``pg_restore --list``), sorted; a file
    pg_restore cannot read raises ``BACKUP_DUMP_CORRUPT``."""
    names = set()
    for line in await _toc(settings, dump, timeout_seconds=timeout_seconds):
        match = re.match(r"^\d+; \d+ \d+ TABLE DATA public (\S+) ", line)
        if match:
            names.add(match.group(1))
    return sorted(names)


async def restore_postgres_scratch(
    settings: Settings,
    dump: Path,
    url: str,
    *,
    foreign_keys: bool = True,
    timeout_seconds: float = DEFAULT_TOOL_TIMEOUT_SECONDS,
) -> None:
    """Full ``pg_restore`` (schema and data) of ``dump`` into the empty database ``url``,
    in one transaction, stopping at the first error (``BACKUP_RESTORE_FAILED``).
    Ownership and privileges are not restored: the objects belong to ``url``'s user.

    ``foreign_keys=False`` leaves the foreign keys out: a dump of chosen tables holds the
    whole schema but only those tables' rows, so the keys to the rest would fail."""
    target = connection(url)
    args = [
        "--exit-on-error",
        "--single-transaction",
        "--no-owner",
        "--no-privileges",
        f"--dbname={target.conninfo}",
    ]
    if not foreign_keys:
        listing = dump.with_name(dump.name + ".list")
        entries = await _toc(settings, dump, timeout_seconds=timeout_seconds)
        kept = [line for line in entries if " FK CONSTRAINT " not in line]
        await asyncio.to_thread(listing.write_text, "\n".join(kept) + "\n")
        args.append(f"--use-list={listing}")
    args.append(str(dump))
    await run_tool(
        settings,
        "pg_restore",
        args,
        env=target.env,
        timeout_seconds=timeout_seconds,
        reason="BACKUP_RESTORE_FAILED",
        check=True,
    )


# --- live restore -------------------------------------------------------------------------

_COPY_HEADER = re.compile(r"^COPY (\S+|\"(?:[^\"]|\"\")*\")\.(\S+) \((.*)\) FROM stdin;$")
_IDENTIFIER = re.compile(r'"(?:[^"]|"")*"|[^,\s]+')
_SETVAL = re.compile(r"^SELECT pg_catalog\.setval\('((?:[^']|'')+)', (-?\d+), (true|false)\);$")


def _unquote(identifier: str) -> str:
    if identifier.startswith('"') and identifier.endswith('"'):
        return identifier[1:-1].replace('""', '"')
    return identifier


def _sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error, through SQLAlchemy's and asyncpg's wrappers."""
    seen: BaseException | None = exc
    while seen is not None:
        state = getattr(seen, "sqlstate", None) or getattr(seen, "pgcode", None)
        if isinstance(state, str):
            return state
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None


async def restore_postgres_live(
    settings: Settings,
    dump: Path,
    *,
    tables: Sequence[str] | None = None,
    lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
    in_transaction: Callable[[AsyncConnection], Awaitable[None]] | None = None,
) -> list[str]:
    """Replace the data of ``tables`` (validated by :func:`plan_live_restore`; default:
    every table the dump holds data of, but :data:`NEVER_RESTORED_TABLES`) in the LIVE
    database with the dump's, all or nothing, in one transaction; returns the tables.

    In that transaction: ACCESS EXCLUSIVE locks on the restored tables and on the tables
    holding a foreign key to or from them, taken in name order under ``lock_timeout``
    (a writer holding a lock longer, or a deadlock, rolls everything back:
    ``BACKUP_RESTORE_LOCKED``); the foreign keys touching them are dropped and their
    enabled user triggers disabled (so a restored ledger row does not move a balance
    again); TRUNCATE; the data streams from ``pg_restore --data-only -f -`` into COPY;
    the sequences they own are set to the dumped values; the triggers are enabled again
    and the foreign keys re-created from their definitions, which makes PostgreSQL check
    every row: a subset whose rows reference rows that are gone (or are referenced by
    rows that stay) is refused with ``BACKUP_RESTORE_CONSTRAINT_VIOLATION`` and nothing
    changes. A broken dump (``BACKUP_DUMP_CORRUPT`` / ``BACKUP_RESTORE_FAILED``) leaves
    the data as it was. Tables not restored are untouched.

    ``in_transaction`` runs last in the same transaction (the restore job ends every
    session there, so no restored session is ever live on its own).

    The role needs to own the tables (the role that runs the migrations does).
    """
    connection(settings.database_url)  # refuses an empty URL before anything starts
    chosen = plan_live_restore(await dump_tables(settings, dump), tables)
    if not chosen:
        return []
    tool = str(pg_tool("pg_restore", settings))
    engine = _engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            try:
                async with conn.begin():
                    await _restore_in_transaction(conn, tool, dump, chosen, lock_timeout_seconds)
                    if in_transaction is not None:
                        await in_transaction(conn)
            except (DBAPIError, asyncpg.PostgresError) as exc:
                raise _restore_error(exc) from exc
    finally:
        await engine.dispose()
    log.info("postgres live restore done", extra={"tables": chosen})
    return chosen


def _restore_error(exc: BaseException) -> BackupError:
    state = _sqlstate(exc)
    message = str(getattr(exc, "orig", None) or exc).strip()
    if state in _LOCKED_STATES:
        return BackupError(
            "BACKUP_RESTORE_LOCKED",
            f"the tables to restore are in use (lock timeout or deadlock); nothing was "
            f"restored, try again: {message}",
        )
    if state == _FK_VIOLATION:
        return BackupError(
            "BACKUP_RESTORE_CONSTRAINT_VIOLATION",
            f"the restored tables break a foreign key (restore the tables it links too); "
            f"nothing was restored: {message}",
        )
    return BackupError("BACKUP_RESTORE_FAILED", f"nothing was restored: {message}")


async def _restore_in_transaction(
    conn: AsyncConnection, tool: str, dump: Path, chosen: list[str], lock_timeout: float
) -> None:
    await queries.set_lock_timeout(conn, max(1, int(lock_timeout * 1000)))
    fks = await queries.foreign_keys_touching(conn, chosen)
    locked = sorted({*chosen, *(fk.table for fk in fks), *(fk.referenced for fk in fks)})
    await queries.lock_tables(conn, locked)
    triggers = await queries.enabled_user_triggers(conn, chosen)
    sequences = await queries.owned_sequences(conn, chosen)
    for fk in fks:
        await queries.drop_foreign_key(conn, fk)
    for table_name, trigger in triggers:
        await queries.set_trigger(conn, table_name, trigger, enabled=False)
    await queries.truncate(conn, chosen)
    await _load(conn, tool, dump, set(chosen), sequences)
    for table_name, trigger in triggers:
        await queries.set_trigger(conn, table_name, trigger, enabled=True)
    for fk in fks:
        await queries.add_foreign_key(conn, fk)


async def _load(
    conn: AsyncConnection, tool: str, dump: Path, chosen: set[str], sequences: dict[str, str]
) -> None:
    """Stream the dump's data as SQL (``pg_restore --data-only -f -``, no database
    connection) and COPY the chosen tables' rows into ``conn``'s transaction."""
    raw: Any = (await conn.get_raw_connection()).driver_connection
    proc = await asyncio.create_subprocess_exec(
        tool,
        "--data-only",
        "--file=-",
        str(dump),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=_LINE_LIMIT,
    )
    assert proc.stdout is not None and proc.stderr is not None
    stderr: collections.deque[bytes] = collections.deque(maxlen=64)
    drain = asyncio.create_task(_collect(proc.stderr, stderr))
    loaded: set[str] = set()
    try:
        stdout = proc.stdout
        while line := await stdout.readline():
            text = line.decode("utf-8").rstrip("\n")
            if text.startswith("SET client_encoding = ") and "'UTF8'" not in text:
                raise BackupError("BACKUP_RESTORE_FAILED", f"unsupported dump encoding: {text}")
            header = _COPY_HEADER.match(text)
            if header is not None:
                name = _unquote(header.group(2))
                rows = _copy_rows(stdout)
                if _unquote(header.group(1)) == "public" and name in chosen:
                    columns = [_unquote(c) for c in _IDENTIFIER.findall(header.group(3))]
                    await raw.copy_to_table(name, source=rows, columns=columns, format="text")
                    loaded.add(name)
                else:
                    async for _ in rows:
                        pass
                continue
            setval = _SETVAL.match(text)
            if setval is not None:
                sequence = setval.group(1).replace("''", "'")
                if sequence in sequences:
                    await queries.set_sequence(
                        conn, sequence, int(setval.group(2)), setval.group(3) == "true"
                    )
        await asyncio.wait_for(proc.wait(), 60)
        await drain
    except BaseException:
        await kill(proc)
        drain.cancel()
        raise
    if proc.returncode != 0:
        raise BackupError(
            "BACKUP_DUMP_CORRUPT",
            f"pg_restore failed (exit {proc.returncode}); nothing was restored: "
            f"{tail(b''.join(stderr))}",
        )
    if missing := chosen - loaded:
        raise BackupError(
            "BACKUP_DUMP_CORRUPT",
            f"the dump holds no data for {', '.join(sorted(missing))}; nothing was restored",
        )


async def _copy_rows(stdout: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """The COPY text rows up to the ``\\.`` line, in chunks of about 1 MiB."""
    chunk: list[bytes] = []
    size = 0
    while True:
        line = await stdout.readline()
        if not line:
            raise BackupError("BACKUP_DUMP_CORRUPT", "the dump's data ends inside a table")
        if line == b"\\.\n":
            break
        chunk.append(line)
        size += len(line)
        if size >= _COPY_CHUNK_BYTES:
            yield b"".join(chunk)
            chunk, size = [], 0
    if chunk:
        yield b"".join(chunk)


async def _collect(stream: asyncio.StreamReader, into: collections.deque[bytes]) -> None:
    while block := await stream.read(4096):
        into.append(block)
