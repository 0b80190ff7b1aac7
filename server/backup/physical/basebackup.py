"""Base backups of a PostgreSQL cluster: ``pg_basebackup`` (full, or incremental on a
parent's ``backup_manifest``), ``pg_verifybackup`` and ``pg_combinebackup``.

A base backup is a plain-format copy of the whole cluster (every database) with the
WAL its replay needs (``-X stream``) and a ``backup_manifest`` (SHA-256 of every file).
An incremental backup (PostgreSQL 17+) holds only the blocks changed since its parent,
found through the server's WAL summaries (``summarize_wal = on``); a chain (the full
backup, then its incrementals in order) becomes a full backup again with
:func:`combine`.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from server.backup.errors import BackupError
from server.backup.tools import connection, database_url, run_tool, tail
from server.core.config import Settings

#: Seconds a backup tool may run before it is killed (a bound on a hang).
DEFAULT_TIMEOUT = 6 * 3600.0


@dataclass(frozen=True)
class BaseBackup:
    """A base backup folder and what its ``backup_manifest`` / ``backup_label`` say."""

    path: Path
    manifest: Path
    incremental: bool
    #: Where replay starts and ends (``0/3000028``), timeline of the end.
    start_lsn: str
    end_lsn: str
    #: When the backup started (the server's clock, UTC).
    start_time: datetime
    timeline: int = 1


_LABEL_START_LSN = re.compile(r"^START WAL LOCATION: ([0-9A-F]+/[0-9A-F]+)", re.MULTILINE)
_LABEL_START_TIME = re.compile(
    r"^START TIME: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) ?(\S*)\s*$", re.MULTILINE
)
_UTC_NAMES = {"UTC", "GMT", "Z", "UCT", "Etc/UTC", "+00", ""}


def _label_time(label: str, fallback: datetime) -> datetime:
    match = _LABEL_START_TIME.search(label)
    if match is None:
        return fallback
    when = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
    zone = match.group(2)
    if zone in _UTC_NAMES:
        return when.replace(tzinfo=UTC)
    offset = re.fullmatch(r"([+-])(\d\d)(?::?(\d\d))?", zone)
    if offset is not None:
        from datetime import timedelta

        sign = 1 if offset.group(1) == "+" else -1
        delta = timedelta(hours=int(offset.group(2)), minutes=int(offset.group(3) or 0))
        return (when - sign * delta).replace(tzinfo=UTC)
    # A zone abbreviation (IST, CEST) names no offset for sure: the caller's fallback.
    return fallback


def read_backup(path: Path, *, start_time: datetime | None = None) -> BaseBackup:
    """What the base backup folder ``path`` holds (``BACKUP_FILE_CORRUPT`` when its
    ``backup_manifest`` or ``backup_label`` is missing or unreadable).

    The start time comes from ``backup_label`` when the server's ``log_timezone`` is UTC
    or a numeric offset; otherwise from ``start_time`` (the caller's clock when it
    started the backup), else the label file's modification time (later than the
    start: conservative for the "too early" check of a recovery)."""
    manifest = path / "backup_manifest"
    try:
        data = json.loads(manifest.read_text())
        ranges = data["WAL-Ranges"]
        label = (path / "backup_label").read_text()
        start_lsn = _LABEL_START_LSN.search(label)
        if start_lsn is None or not ranges:
            raise ValueError("no start WAL location")
        fallback = start_time or datetime.fromtimestamp(
            (path / "backup_label").stat().st_mtime, UTC
        )
        return BaseBackup(
            path=path,
            manifest=manifest,
            incremental="INCREMENTAL FROM LSN:" in label,
            start_lsn=start_lsn.group(1),
            end_lsn=str(ranges[-1]["End-LSN"]),
            start_time=_label_time(label, fallback),
            timeline=int(ranges[-1]["Timeline"]),
        )
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise BackupError(
            "BACKUP_FILE_CORRUPT", f"{path} is not a base backup ({type(exc).__name__}: {exc})"
        ) from None


def _parent_manifest(parent: Path) -> Path:
    manifest = parent / "backup_manifest" if parent.is_dir() else parent
    if not manifest.is_file():
        raise BackupError("BACKUP_FILE_MISSING", f"no backup_manifest at {parent}")
    return manifest


def _check_empty(dest: Path) -> None:
    if dest.exists() and any(dest.iterdir()):
        raise BackupError("BACKUP_DEST_UNWRITABLE", f"{dest} is not empty")


def _basebackup_failure(stderr: bytes) -> BackupError:
    text = tail(stderr)
    if "WAL summarization is enabled" in text or "summarize_wal" in text:
        return BackupError(
            "BACKUP_WAL_SUMMARIES_OFF",
            "the server does not summarize WAL, which incremental backups need: set "
            f"summarize_wal = on (pg_basebackup: {text})",
        )
    if "system identifier" in text:
        return BackupError(
            "BACKUP_PARENT_FOREIGN",
            f"the parent backup is of another cluster (pg_basebackup: {text})",
        )
    if "WAL summaries are required" in text or "WAL summaries" in text:
        return BackupError(
            "BACKUP_WAL_SUMMARIES_MISSING",
            "the server lacks WAL summaries since the parent backup (summarize_wal was "
            f"off, or they were removed): take a full backup (pg_basebackup: {text})",
        )
    return BackupError("BACKUP_BASEBACKUP_FAILED", f"pg_basebackup failed: {text}")


async def take_base_backup(
    settings: Settings,
    dest: Path,
    *,
    incremental_from: Path | None = None,
    url: str | None = None,
    label: str = "gencharge",
    timeout_seconds: float = DEFAULT_TIMEOUT,
) -> BaseBackup:
    """Take a base backup of the server at ``url`` (default ``GENCHARGE_DATABASE_URL``;
    its role needs ``REPLICATION``) into the new folder ``dest``.

    ``incremental_from``: a parent backup (its folder or its ``backup_manifest``): only
    blocks changed since it are copied (the server needs ``summarize_wal = on`` since
    the parent: ``BACKUP_WAL_SUMMARIES_OFF`` / ``BACKUP_WAL_SUMMARIES_MISSING``; a
    parent of another cluster: ``BACKUP_PARENT_FOREIGN``).
    Other failures: ``BACKUP_BASEBACKUP_FAILED`` with the tool's last words; nothing is
    left at ``dest``.
    """
    conn = connection(database_url(settings, url))
    _check_empty(dest)
    args = [
        "-d",
        conn.conninfo,
        "-D",
        str(dest),
        "-Fp",
        "-X",
        "stream",
        "--checkpoint=fast",
        "--manifest-checksums=SHA256",
        "--no-password",
        "-l",
        label,
    ]
    if incremental_from is not None:
        args.append(f"--incremental={_parent_manifest(incremental_from)}")
    started = datetime.now(UTC)
    try:
        ran = await run_tool(
            settings,
            "pg_basebackup",
            args,
            timeout_seconds=timeout_seconds,
            env=conn.env,
            reason="BACKUP_BASEBACKUP_FAILED",
        )
        if ran.returncode != 0:
            raise _basebackup_failure(ran.stderr)
        return read_backup(dest, start_time=started)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


_VERIFY_PREFIX = re.compile(r"^pg_verifybackup: (error: |warning: |detail: |hint: )?")


async def verify_base_backup(
    settings: Settings,
    path: Path,
    wal_dir: Path | None = None,
    *,
    timeout_seconds: float = DEFAULT_TIMEOUT,
) -> list[str]:
    """Check the base backup folder ``path`` against its ``backup_manifest`` with
    ``pg_verifybackup``: every file present, of its size and SHA-256, no file added, and
    the WAL from its start to its end parses (from ``wal_dir`` when given, else the
    backup's own ``pg_wal``). Returns the problems, one line each (empty: good).

    An incremental backup's files are checked the same way, but its WAL cannot be
    parsed without the chain: it is skipped (``--no-parse-wal``); verify the combined
    backup (:func:`combine`) for a whole check of a chain.
    """
    backup = read_backup(path)
    args = ["--quiet", "--format=plain"]
    if backup.incremental:
        args.append("--no-parse-wal")
    elif wal_dir is not None:
        args += ["--wal-directory", str(wal_dir)]
    args.append(str(path))
    ran = await run_tool(
        settings,
        "pg_verifybackup",
        args,
        timeout_seconds=timeout_seconds,
        reason="BACKUP_VERIFY_FAILED",
    )
    if ran.returncode == 0:
        return []
    lines = [
        _VERIFY_PREFIX.sub("", line).strip()
        for line in (ran.stderr + ran.stdout).decode("utf-8", "replace").splitlines()
    ]
    return [line for line in lines if line] or [f"pg_verifybackup exited {ran.returncode}"]


async def combine(
    settings: Settings,
    chain: Sequence[Path],
    out: Path,
    *,
    timeout_seconds: float = DEFAULT_TIMEOUT,
) -> Path:
    """Combine a chain (the full backup first, then its incrementals in order) into the
    full backup ``out`` with ``pg_combinebackup`` (a new folder; SHA-256 manifest).
    A broken chain (a missing link, the wrong order) fails with
    ``BACKUP_COMBINE_FAILED`` and leaves nothing at ``out``."""
    if not chain:
        raise ValueError("an empty chain")
    if len(chain) == 1:
        raise ValueError("a chain of one backup: nothing to combine, restore it directly")
    args = ["-o", str(out), "--manifest-checksums=SHA256", *(str(p) for p in chain)]
    try:
        ran = await run_tool(
            settings,
            "pg_combinebackup",
            args,
            timeout_seconds=timeout_seconds,
            reason="BACKUP_COMBINE_FAILED",
        )
        if ran.returncode != 0:
            raise BackupError(
                "BACKUP_COMBINE_FAILED", f"pg_combinebackup failed: {tail(ran.stderr)}"
            )
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return out
