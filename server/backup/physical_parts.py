"""The physical part of a backup (``GENCHARGE_BACKUP_PHYSICAL``): what makes
PostgreSQL incrementals and point-in-time recovery possible.

A backup with a physical part holds, beside its logical files:

- ``base.tar``: a ``pg_basebackup`` of the cluster (full, or incremental against its
  parent's ``backup_manifest``), verified with ``pg_verifybackup`` before it is sealed;
- ``backup_manifest``: that base backup's own manifest, stored apart so that a child
  incremental needs no restore of its parent;
- ``wal.tar`` (when ``GENCHARGE_BACKUP_WAL_ARCHIVE_DIR`` is set): the archived WAL
  segments since the chain's previous backup (since its own start for a full one).

The manifest's ``extra["physical"]`` records ``start_lsn``, ``end_lsn``, ``start_time``,
``timeline`` and ``last_segment`` (the newest WAL segment copied so far in the chain).

Recovery (:func:`recovered`) opens a chain's base backups, combines them
(``pg_combinebackup``), lays out every stored ``wal.tar`` plus the segments still only
in the archive folder, and recovers into a scratch cluster, to a point in time or to
the end of the WAL. The restore then dumps the recovered database and loads it into the
live one with the same atomic live restore as a logical backup; the drill checks the
recovered database in place.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from server.backup.archive import open_file, seal_chunks, seal_file
from server.backup.context import JobContext
from server.backup.errors import BackupError
from server.backup.manifest import Manifest, ManifestFile
from server.backup.physical import basebackup, packing, pitr, wal
from server.backup.physical.pitr import RecoveredCluster
from server.backup.tools import connection

BASE_TAR: Final = "base.tar"
BASE_MANIFEST: Final = "backup_manifest"
WAL_TAR: Final = "wal.tar"
DATABASE: Final = "postgres-physical"


def physical_of(manifest: Manifest) -> dict[str, Any] | None:
    """The physical part recorded in ``manifest`` (None: a logical-only backup)."""
    value = manifest.extra.get("physical")
    return dict(value) if isinstance(value, dict) else None


def _file(manifest: Manifest, leaf: str) -> ManifestFile | None:
    name = f"{manifest.backup_id}/{leaf}"
    return next((f for f in manifest.files if f.name == name), None)


async def take(
    ctx: JobContext,
    backup_id: str,
    work: Path,
    *,
    parent: Manifest | None,
) -> tuple[list[ManifestFile], dict[str, Any]]:
    """Take, verify, seal and store the physical part of backup ``backup_id`` (an
    incremental one when ``parent``, whose own physical part it builds on)."""
    await asyncio.to_thread(work.mkdir, mode=0o700, parents=True, exist_ok=True)
    parent_manifest: Path | None = None
    parent_part = physical_of(parent) if parent is not None else None
    if parent is not None:
        stored = _file(parent, BASE_MANIFEST)
        if stored is None or parent_part is None:
            raise BackupError(
                "BACKUP_NO_PHYSICAL_PARENT",
                f"backup {parent.backup_id} has no physical part to build an incremental on",
            )
        parent_manifest = work / "parent_backup_manifest"
        await open_file(ctx.storage, stored.name, ctx.keys, parent_manifest)
    base = await basebackup.take_base_backup(
        ctx.tool_settings,
        work / "base",
        incremental_from=parent_manifest,
        url=ctx.tool_settings.database_url,
        label=f"gencharge {backup_id}",
    )
    problems = await basebackup.verify_base_backup(ctx.tool_settings, base.path)
    if problems:
        raise BackupError(
            "BACKUP_BASEBACKUP_INVALID", f"the base backup fails pg_verifybackup: {problems[0]}"
        )
    files = [
        ManifestFile.of(
            await seal_chunks(
                packing.pack(base.path), ctx.storage, f"{backup_id}/{BASE_TAR}", ctx.keys
            ),
            database=DATABASE,
            format="pg_basebackup-tar",
        ),
        ManifestFile.of(
            await seal_file(base.manifest, ctx.storage, f"{backup_id}/{BASE_MANIFEST}", ctx.keys),
            database=DATABASE,
            format="pg_basebackup-manifest",
        ),
    ]
    last_segment = parent_part.get("last_segment") if parent_part else None
    archive = ctx.settings.backup_wal_archive_dir
    if archive is not None and await asyncio.to_thread(archive.is_dir):
        segments = await asyncio.to_thread(
            wal.list_segments,
            archive,
            from_lsn=None if parent_part else base.start_lsn,
            after=last_segment,
        )
        if segments:
            files.append(
                ManifestFile.of(
                    await seal_chunks(
                        packing.pack(archive, names=[p.name for p in segments]),
                        ctx.storage,
                        f"{backup_id}/{WAL_TAR}",
                        ctx.keys,
                    ),
                    database=DATABASE,
                    format="wal-tar",
                    objects=[p.name for p in segments],
                )
            )
            names = [p.name for p in segments if wal.SEGMENT_NAME.match(p.name)]
            last_segment = names[-1] if names else last_segment
    part = {
        "start_lsn": base.start_lsn,
        "end_lsn": base.end_lsn,
        "start_time": base.start_time.isoformat(),
        "timeline": base.timeline,
        "incremental": base.incremental,
        "last_segment": last_segment,
    }
    return files, part


@asynccontextmanager
async def recovered(
    ctx: JobContext, chain: Sequence[Manifest], target_time: datetime | None
) -> AsyncIterator[RecoveredCluster]:
    """The chain's PostgreSQL recovered into a scratch cluster (stopped and removed on
    leaving, with every file it took): at ``target_time`` (replaying the WAL the chain
    stored and what the archive holds since), or as the newest backup of the chain was
    when it ended (``target_time`` None: its own WAL only). BackupError
    ``BACKUP_PITR_UNAVAILABLE`` when a backup of the chain has no physical part.

    The work folder is a fresh temporary folder of its own, traversable but not
    listable (0711: when we run as root, the scratch server runs as the embedded
    server's system user and must reach its data folder); everything inside is 0700 /
    0600, the WAL copies and the data folder owned by the server's user."""
    work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="gencharge-pitr-"))
    try:
        await asyncio.to_thread(work.chmod, 0o711)
        async with _recovered(ctx, chain, target_time, work) as cluster:
            yield cluster
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)


@asynccontextmanager
async def _recovered(
    ctx: JobContext, chain: Sequence[Manifest], target_time: datetime | None, work: Path
) -> AsyncIterator[RecoveredCluster]:
    bases: list[Path] = []
    wal_tars: list[Path] = []
    for index, manifest in enumerate(chain):
        base_file = _file(manifest, BASE_TAR)
        if base_file is None or physical_of(manifest) is None:
            raise BackupError(
                "BACKUP_PITR_UNAVAILABLE",
                f"backup {manifest.backup_id} has no physical part (GENCHARGE_BACKUP_PHYSICAL "
                "was off when it was taken): it restores only as it was taken",
            )
        tar = work / f"base-{index}.tar"
        await open_file(ctx.storage, base_file.name, ctx.keys, tar)
        folder = work / f"base-{index}"
        await packing.unpack(tar, folder)
        await asyncio.to_thread(tar.unlink)
        bases.append(folder)
        wal_file = _file(manifest, WAL_TAR)
        if wal_file is not None and target_time is not None:
            tar = work / f"wal-{index}.tar"
            await open_file(ctx.storage, wal_file.name, ctx.keys, tar)
            wal_tars.append(tar)
    if len(bases) > 1:
        full = await basebackup.combine(ctx.tool_settings, bases, work / "combined")
    else:
        full = bases[0]
    wal_dir: Path | None = None
    if target_time is not None:
        wal_dir = await _gather_wal(ctx, chain, wal_tars, work)
    source = connection(ctx.tool_settings.database_url)
    cluster = await pitr.restore_to_point(
        ctx.tool_settings,
        full,
        wal_dir,
        target_time,
        work / "recovered",
        database=source.database,
        user=source.user,
        move=True,
    )
    async with cluster:
        yield cluster


async def _gather_wal(
    ctx: JobContext, chain: Sequence[Manifest], wal_tars: Sequence[Path], work: Path
) -> Path:
    """Every WAL segment recovery to a point in time may replay, in one folder: those
    the chain's backups copied into storage, then those still only in the archive."""
    wal_dir = work / "wal"
    await asyncio.to_thread(wal_dir.mkdir, mode=0o700)
    for index, tar in enumerate(wal_tars):
        unpacked = work / f"wal-{index}"
        await packing.unpack(tar, unpacked)
        await asyncio.to_thread(
            wal.lay_out, sorted(p for p in unpacked.iterdir() if p.is_file()), wal_dir
        )
    archive = ctx.settings.backup_wal_archive_dir
    last = physical_of(chain[-1]) or {}
    if archive is not None and await asyncio.to_thread(archive.is_dir):
        # What the archive holds past the last copy: recovery to "now" needs it.
        newer = await asyncio.to_thread(
            wal.list_segments, archive, after=last.get("last_segment") or None
        )
        await asyncio.to_thread(wal.lay_out, newer, wal_dir)
    return wal_dir
