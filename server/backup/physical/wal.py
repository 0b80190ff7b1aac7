"""The WAL archive: the ``archive_command`` that fills it, the segments a backup needs
from it, and the ``restore_command`` that reads them back.

Names in an archive folder (what PostgreSQL's archiver hands ``archive_command``):

- segments ``TTTTTTTTXXXXXXXXYYYYYYYY`` (timeline, then the segment number in two
  halves), all of ``wal_segment_size`` bytes (16 MiB unless initdb was told otherwise);
- timeline history files ``TTTTTTTT.history`` (tiny; a recovery that follows timelines
  needs them);
- backup history files ``<segment>.XXXXXXXX.backup`` (informational; not needed).

Our ``archive_command`` writes each file under a hidden temporary name and renames it,
so a listing never sees half a segment; hidden names are skipped here.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from pathlib import Path

SEGMENT_NAME = re.compile(r"^[0-9A-F]{24}$")
HISTORY_NAME = re.compile(r"^[0-9A-F]{8}\.history$")
DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024


def _conf_escape(path: Path) -> str:
    # ``%`` is the placeholder character of archive_command/restore_command.
    return shlex.quote(str(path)).replace("%", "%%")


def archive_command(archive_dir: Path) -> str:
    """The ``archive_command`` copying a completed segment into ``archive_dir``.

    Run by PostgreSQL through ``/bin/sh`` with ``%p`` (the file, relative to the data
    folder) and ``%f`` (its name). A file already archived under that name succeeds only
    if it is byte for byte the same (PostgreSQL may archive a segment again after a
    crash; a different file is never overwritten: two clusters pointed at one folder
    fail loudly). A new file is copied to a hidden temporary name, flushed to disk, then
    renamed, so a reader never sees half a segment.
    """
    folder = _conf_escape(archive_dir)
    return (
        f'f={folder}/"%f"; t={folder}/".%f.tmp"; '
        'if [ -f "$f" ]; then cmp -s "%p" "$f"; '
        'else cp "%p" "$t" && { sync "$t" 2>/dev/null || sync; } && mv "$t" "$f"; fi'
    )


def restore_command(wal_dir: Path) -> str:
    """The ``restore_command`` of a recovery reading segments laid out in ``wal_dir``."""
    return f'cp {_conf_escape(wal_dir)}/"%f" "%p"'


def lsn_to_int(lsn: str) -> int:
    """``'0/3000028'`` -> its byte position."""
    high, _, low = lsn.partition("/")
    if not low:
        raise ValueError(f"not an LSN: {lsn!r}")
    return (int(high, 16) << 32) | int(low, 16)


def segment_number(name: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """The segment number of a segment file name (the timeline left out)."""
    return int(name[8:16], 16) * (0x1_0000_0000 // segment_size) + int(name[16:24], 16)


def segment_name(timeline: int, number: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    per_id = 0x1_0000_0000 // segment_size
    return f"{timeline:08X}{number // per_id:08X}{number % per_id:08X}"


def segment_size_of(archive_dir: Path) -> int:
    """The cluster's segment size, read off an archived segment's size (the default
    when there is none yet)."""
    for path in archive_dir.iterdir():
        if SEGMENT_NAME.match(path.name):
            return path.stat().st_size
    return DEFAULT_SEGMENT_SIZE


def list_segments(
    archive_dir: Path, *, from_lsn: str | None = None, after: str | None = None
) -> list[Path]:
    """The archived files a restore needs, oldest first: every timeline history file,
    then the segments in order (by segment number, then timeline).

    ``from_lsn``: leave out segments wholly before the one holding this LSN (a base
    backup's start LSN: what replay after it needs). ``after``: leave out segments up to
    and including this segment name (those already copied to storage by an earlier
    run). Temporary files of a copy in progress and backup history files are skipped.
    """
    size = segment_size_of(archive_dir)
    first = lsn_to_int(from_lsn) // size if from_lsn is not None else None
    last_copied = (segment_number(after, size), after[:8]) if after is not None else None
    histories: list[Path] = []
    segments: list[tuple[tuple[int, str], Path]] = []
    for path in archive_dir.iterdir():
        if HISTORY_NAME.match(path.name):
            histories.append(path)
        elif SEGMENT_NAME.match(path.name):
            key = (segment_number(path.name, size), path.name[:8])
            if first is not None and key[0] < first:
                continue
            if last_copied is not None and key <= last_copied:
                continue
            segments.append((key, path))
    return sorted(histories) + [path for _, path in sorted(segments)]


def lay_out(files: Iterable[Path], wal_dir: Path) -> list[Path]:
    """Put archived files (e.g. unpacked from storage) flat into ``wal_dir`` for
    :func:`restore_command`, by hard link where possible, else by copy; returns the
    paths laid out. Names that are not WAL files are refused."""
    import os
    import shutil

    wal_dir.mkdir(parents=True, exist_ok=True)
    placed = []
    for source in files:
        if not (SEGMENT_NAME.match(source.name) or HISTORY_NAME.match(source.name)):
            raise ValueError(f"not a WAL file name: {source.name!r}")
        target = wal_dir / source.name
        if not target.exists():
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)
        placed.append(target)
    return placed


def prune(archive_dir: Path, before_lsn: str) -> list[str]:
    """Delete the archived segments wholly before the one holding ``before_lsn`` (every
    timeline; history files stay): what no recovery from a base backup that started at
    ``before_lsn`` or later can need. Returns the names removed, oldest first."""
    size = segment_size_of(archive_dir)
    first_needed = lsn_to_int(before_lsn) // size
    removed: list[str] = []
    for path in sorted(archive_dir.iterdir()):
        if SEGMENT_NAME.match(path.name) and segment_number(path.name, size) < first_needed:
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed
