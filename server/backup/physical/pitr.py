"""Point-in-time recovery: a (combined) base backup plus archived WAL, replayed up to a
moment, into a scratch PostgreSQL server of our own.

:func:`restore_to_point` copies the backup into a new data folder, writes
``recovery.signal`` and the recovery settings (``restore_command`` reading the WAL
folder, ``recovery_target_time``, ``recovery_target_action = 'promote'``), starts
``postgres`` from :func:`server.backup.pgtools.pg_tool` on a free loopback port (as the
system user of server/core/pgsystem.py when we are root) and waits until recovery has
ended and the server is promoted. The :class:`RecoveredCluster` it returns is an async
context manager: leaving it stops the server and removes its data folder.

The scratch server listens on 127.0.0.1 only, with ``trust`` for loopback (its own
``hba_file``: the backup's ``pg_hba.conf`` might demand passwords we do not have), like
the embedded server; it never archives (``archive_mode = off``: a restored copy must
never write into the production archive) and takes no connections before it is
promoted (``hot_standby = off``, which also spares it the primary's
``max_connections``-style minimums).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from server.backup.errors import BackupError
from server.backup.pgtools import pg_tool
from server.backup.physical.basebackup import read_backup
from server.backup.physical.queries import recovery_state
from server.backup.physical.wal import restore_command
from server.backup.tools import connection
from server.core.config import Settings
from server.core.dburl import to_async_url
from server.core.pgsystem import (
    PG_SYSTEM_USER,
    FolderClosedToPostgres,
    PostgresUser,
    closed_folder,
    prepare_postgres_user,
)

HOST = "127.0.0.1"
#: Seconds recovery may take before the server is stopped (a bound on a hang).
DEFAULT_TIMEOUT = 6 * 3600.0
#: Seconds a fast shutdown may take before the server is killed.
STOP_TIMEOUT = 60.0
LOG_NAME = "gencharge_recovery.log"
HBA_NAME = "gencharge_recovery_hba.conf"
_POLL_SECONDS = 0.2
_REMEDY = "put the backup's scratch folders where that user can reach them, or run as non-root"

#: PostgreSQL's words (its log) for the two targets it cannot honour.
_BEFORE_CONSISTENT = "before consistent recovery point"
_ENDED_BEFORE_TARGET = "recovery ended before configured recovery target was reached"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _conf_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


@dataclass
class RecoveredCluster:
    """A recovered, promoted PostgreSQL server (scratch). ``url`` names ``database``;
    ``url_for(name)`` another database of it. ``recovered_to``: the commit time of the
    last transaction replayed (None when recovery replayed none)."""

    url: str
    data_dir: Path
    port: int
    user: str
    recovered_to: datetime | None
    _proc: asyncio.subprocess.Process = field(repr=False)
    _stopped: bool = field(default=False, repr=False)

    def url_for(self, database: str) -> str:
        return f"postgresql://{self.user}@{HOST}:{self.port}/{database}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_NAME

    async def stop(self) -> None:
        """Stop the server (fast shutdown; killed after a minute) and remove its data
        folder. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        await _stop_process(self._proc)
        await asyncio.to_thread(shutil.rmtree, self.data_dir, True)

    async def __aenter__(self) -> RecoveredCluster:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


async def _stop_process(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
    try:
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def _prepare(
    backup_dir: Path,
    data_dir: Path,
    wal_dir: Path | None,
    settings: Settings,
    move: bool,
) -> PostgresUser:
    """The data folder from the backup, handed to the server's user, with our settings."""
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise BackupError("BACKUP_DEST_UNWRITABLE", f"{data_dir} exists and is not empty")
    with contextlib.suppress(FileNotFoundError):
        data_dir.rmdir()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    if move:
        backup_dir.rename(data_dir)
    else:
        shutil.copytree(backup_dir, data_dir, symlinks=True)
    data_dir.chmod(0o700)
    for name in ("postmaster.pid", "postmaster.opts", "standby.signal"):
        with contextlib.suppress(FileNotFoundError):
            (data_dir / name).unlink()
    (data_dir / HBA_NAME).write_text(
        "# The scratch server of a point-in-time recovery: loopback only.\n"
        f"host all all {HOST}/32 trust\n"
    )
    if wal_dir is not None:
        with (data_dir / "postgresql.auto.conf").open("a") as conf:
            conf.write(
                "\n# gencharge point-in-time recovery\n"
                f"restore_command = {_conf_quote(restore_command(wal_dir.resolve()))}\n"
                "recovery_target_timeline = 'latest'\n"
            )
        (data_dir / "recovery.signal").touch()
    bin_dir = pg_tool("postgres", settings).parent
    user = prepare_postgres_user(data_dir, data_dir.parent, bin_dir, remedy=_REMEDY)
    user.give(data_dir, recursive=True)
    if wal_dir is not None and user.uid is not None and user.gid is not None:
        # The server's user reads the WAL copies as their owner: nobody else can.
        user.give(wal_dir, recursive=True)
        gids = set(os.getgrouplist(PG_SYSTEM_USER, user.gid))
        closed = closed_folder(wal_dir.resolve(), uid=user.uid, gids=gids)
        if closed is not None:
            raise FolderClosedToPostgres(closed, PG_SYSTEM_USER, _REMEDY)
    return user


def _target_settings(target_time: datetime, inclusive: bool) -> str:
    when = target_time.astimezone(UTC).isoformat(sep=" ")
    return (
        f"recovery_target_time = {_conf_quote(when)}\n"
        "recovery_target_action = 'promote'\n"
        f"recovery_target_inclusive = {'on' if inclusive else 'off'}\n"
    )


def _log_tail(path: Path, size: int = 4000) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - size))
            return handle.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _failure(log_text: str, target_time: datetime | None) -> BackupError:
    if _BEFORE_CONSISTENT in log_text:
        return BackupError(
            "BACKUP_PITR_TARGET_TOO_EARLY",
            f"{target_time} is before the end of the base backup: restore an older backup "
            f"(PostgreSQL: {log_text[-600:]})",
        )
    if _ENDED_BEFORE_TARGET in log_text:
        return BackupError(
            "BACKUP_PITR_TARGET_UNREACHABLE",
            f"the archived WAL ends before {target_time} (no transaction committed after "
            "it has been archived yet): restore with no target to recover to the end of "
            f"the archive (PostgreSQL: {log_text[-600:]})",
        )
    return BackupError("BACKUP_PITR_FAILED", f"the recovered server stopped: {log_text[-1500:]}")


async def restore_to_point(
    settings: Settings,
    backup_dir: Path,
    wal_dir: Path | None,
    target_time: datetime | None,
    data_dir: Path,
    *,
    inclusive: bool = True,
    database: str | None = None,
    user: str | None = None,
    move: bool = False,
    timeout_seconds: float = DEFAULT_TIMEOUT,
) -> RecoveredCluster:
    """Recover the full (or combined) base backup ``backup_dir`` into the new folder
    ``data_dir`` and start it; returns the promoted server.

    ``wal_dir``: archived WAL laid out flat (server/backup/physical/wal.py ``lay_out``);
    recovery replays it up to ``target_time`` (an aware datetime; ``inclusive``: the
    transactions committed exactly then are kept), or to its end when ``target_time``
    is None. ``wal_dir`` None: no archive recovery, the backup as it was when it ended
    (``target_time`` must be None).

    ``user``/``database``: whom the returned ``url`` connects as and to (default: those
    of ``GENCHARGE_DATABASE_URL``, else ``postgres``): a role of the backed-up cluster.
    ``move``: rename ``backup_dir`` instead of copying it (a scratch combined backup).

    Errors (the data folder is removed): an incremental backup (``BACKUP_PITR_NEEDS_FULL``:
    combine the chain first); a target before the backup started, or before it became
    consistent (``BACKUP_PITR_TARGET_TOO_EARLY``); a target after the last transaction
    in the archived WAL (``BACKUP_PITR_TARGET_UNREACHABLE``: PostgreSQL cannot know that
    nothing else happened before the target); any other stop
    (``BACKUP_PITR_FAILED``, with the server log's tail); a hang past ``timeout_seconds``.
    """
    if target_time is not None:
        if target_time.tzinfo is None:
            raise ValueError("target_time must be an aware datetime")
        if wal_dir is None:
            raise ValueError("a target time needs the archived WAL (wal_dir)")
    backup = read_backup(backup_dir)
    if backup.incremental:
        raise BackupError(
            "BACKUP_PITR_NEEDS_FULL",
            f"{backup_dir} is an incremental backup: combine its chain first",
        )
    if target_time is not None and target_time < backup.start_time:
        raise BackupError(
            "BACKUP_PITR_TARGET_TOO_EARLY",
            f"{target_time.isoformat()} is before the base backup started "
            f"({backup.start_time.isoformat()}): restore an older backup",
        )
    source = connection(settings.database_url) if settings.database_url else None
    role = user or (source.user if source and source.user else "postgres")
    dbname = database or (source.database if source and source.database else "postgres")
    try:
        pg_user = await asyncio.to_thread(_prepare, backup_dir, data_dir, wal_dir, settings, move)
        if target_time is not None:
            with (data_dir / "postgresql.auto.conf").open("a") as conf:
                conf.write(_target_settings(target_time, inclusive))
        port = _free_port()
        log_path = data_dir / LOG_NAME
        options = {
            "listen_addresses": HOST,
            "port": str(port),
            "unix_socket_directories": "",
            "hba_file": str(data_dir / HBA_NAME),
            "archive_mode": "off",
            "summarize_wal": "off",
            "hot_standby": "off",
            "ssl": "off",
            "logging_collector": "off",
            "cluster_name": "gencharge-recovery",
        }
        args = [arg for name, value in options.items() for arg in ("-c", f"{name}={value}")]
        with log_path.open("ab") as log_file:
            proc = await asyncio.create_subprocess_exec(
                str(pg_user.bin / "postgres"),
                "-D",
                str(data_dir),
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
                **pg_user.run_as,  # type: ignore[arg-type]
            )
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, data_dir, True)
        raise
    url = f"postgresql://{role}@{HOST}:{port}/{dbname}"
    try:
        recovered_to = await _wait_promoted(proc, url, log_path, target_time, timeout_seconds)
    except BaseException:
        await _stop_process(proc)
        await asyncio.to_thread(shutil.rmtree, data_dir, True)
        raise
    return RecoveredCluster(
        url=url, data_dir=data_dir, port=port, user=role, recovered_to=recovered_to, _proc=proc
    )


async def _wait_promoted(
    proc: asyncio.subprocess.Process,
    url: str,
    log_path: Path,
    target_time: datetime | None,
    timeout_seconds: float,
) -> datetime | None:
    """Poll until the server takes connections out of recovery; its exit is a failure."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    engine = create_async_engine(to_async_url(url), poolclass=NullPool)
    try:
        while True:
            if proc.returncode is not None:
                raise _failure(_log_tail(log_path), target_time)
            try:
                async with engine.connect() as conn:
                    in_recovery, last = await recovery_state(conn)
                if not in_recovery:
                    return last
            except (OSError, SQLAlchemyError, TimeoutError):
                pass
            if loop.time() > deadline:
                tail = _log_tail(log_path)[-600:]
                raise BackupError(
                    "BACKUP_PITR_FAILED",
                    f"recovery did not end within {timeout_seconds:.0f} s: {tail}",
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), _POLL_SECONDS)
    finally:
        await engine.dispose()
