"""VerifyBackup: is a backup whole and readable, and which backups a restore needs.

A backup verifies when its manifest is present and authentic (under a key we hold, in
its own folder), every file it lists is present with the recorded size and SHA-256,
was sealed under the recorded key, decrypts and decompresses to the end, and parses as
what it claims to be (:func:`_parse`); an
incremental backup also needs its parent chain, back to a full backup, present and
successful. Nothing is written and no lock is taken: a verification can run beside a
backup.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from server.backup import domain
from server.backup.archive import check_file, open_file
from server.backup.context import JobContext, domain_error
from server.backup.domain import Backup
from server.backup.dumps import mongo as mongo_dumps
from server.backup.dumps import postgres as pg_dumps
from server.backup.errors import BackupError
from server.backup.manifest import Manifest, ManifestFile, read_manifest
from server.backup.physical import basebackup, packing
from server.core.errors import FailedPrecondition, NotFound

#: The longest incremental chain followed (a loop in stored data ends here).
MAX_CHAIN = 1000


@dataclass(frozen=True)
class Verification:
    backup: Backup
    manifest: Manifest | None
    problems: list[str]
    at: datetime

    @property
    def valid(self) -> bool:
        return not self.problems


def not_restorable(backup: Backup) -> FailedPrecondition:
    return FailedPrecondition(
        f"backup {backup.backup_id} is {backup.status or 'unknown'}; only a successful "
        "backup can be verified or restored",
        reason="BACKUP_NOT_SUCCESSFUL",
        metadata={"backup_id": backup.backup_id, "status": backup.status or ""},
    )


async def backup_chain(ctx: JobContext, backup_id: str) -> list[Backup]:
    """The backups a restore of ``backup_id`` applies, full first. NOT_FOUND for an
    unknown id; FAILED_PRECONDITION ``BACKUP_NOT_SUCCESSFUL`` when it (or a backup it
    builds on) did not succeed, ``BACKUP_CHAIN_BROKEN`` when a parent is gone."""
    chain: list[Backup] = []
    async with ctx.resources.db.read_only() as conn:
        current = await domain.get_backup(backup_id, conn=conn)
        while True:
            if current.status != "success":
                raise not_restorable(current)
            chain.append(current)
            parent_id = current.parent_backup_id
            if parent_id is None:
                break
            if len(chain) >= MAX_CHAIN:
                raise FailedPrecondition(
                    f"backup {backup_id}'s chain is longer than {MAX_CHAIN}",
                    reason="BACKUP_CHAIN_BROKEN",
                )
            try:
                current = await domain.get_backup(parent_id, conn=conn)
            except NotFound:
                raise FailedPrecondition(
                    f"backup {current.backup_id} builds on {parent_id}, which is gone",
                    reason="BACKUP_CHAIN_BROKEN",
                    metadata={"backup_id": current.backup_id, "parent_backup_id": parent_id},
                ) from None
    chain.reverse()
    return chain


async def verify_one(ctx: JobContext, backup: Backup) -> Verification:
    """Check one backup's manifest and files (module docstring). A storage out of reach
    is UNAVAILABLE: it says nothing about the backup."""
    problems: list[str] = []
    manifest: Manifest | None = None
    try:
        manifest = await read_manifest(ctx.storage, backup.backup_id, ctx.keys)
    except BackupError as exc:
        if exc.reason == "BACKUP_STORAGE_UNAVAILABLE":
            raise domain_error(exc) from None
        problems.append(f"{exc.reason}: {exc}")
    if manifest is not None:
        for item in manifest.files:
            try:
                found = await check_file(ctx.storage, item.sealed(), ctx.keys)
                problems.extend(found or await _parse(ctx, item))
            except BackupError as exc:
                raise domain_error(exc) from None
        if manifest.kind != (backup.kind or "full") or manifest.parent_backup_id != (
            backup.parent_backup_id
        ):
            problems.append(
                "BACKUP_MANIFEST_MISMATCH: the manifest and the Backup row disagree on the "
                "backup's kind or parent"
            )
    return Verification(backup, manifest, problems, ctx.clock())


async def _parse(ctx: JobContext, item: ManifestFile) -> list[str]:
    """Open a sound file and read it as what it claims to be: a PostgreSQL dump lists
    every table the manifest names (``pg_restore --list``); a MongoDB export holds
    exactly the documents the manifest counts, each BSON; a base backup passes
    ``pg_verifybackup``; a WAL or base-backup tar unpacks. Problems as lines."""
    work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="gencharge-verify-"))
    leaf = item.name.rsplit("/", 1)[-1]
    try:
        path = work / leaf
        await open_file(ctx.storage, item.name, ctx.keys, path)
        if item.format == "pg_dump-custom":
            listed = set(await pg_dumps.dump_tables(ctx.tool_settings, path))
            missing = sorted(set(item.objects) - listed)
            if missing:
                return [f"BACKUP_DUMP_INCOMPLETE: {leaf} lacks the data of {', '.join(missing)}"]
        elif item.format in ("bson", "bson-incremental"):
            counted = await asyncio.to_thread(mongo_dumps.count_records, path)
            wrong = sorted(
                name
                for name in set(counted) | set(item.rows)
                if counted.get(name, 0) != item.rows.get(name, 0)
            )
            if wrong:
                return [
                    f"BACKUP_DUMP_INCOMPLETE: {leaf} does not hold the documents counted "
                    f"for {', '.join(wrong)}"
                ]
        elif item.format in ("pg_basebackup-tar", "wal-tar"):
            folder = work / "unpacked"
            await packing.unpack(path, folder)
            if item.format == "pg_basebackup-tar":
                found = await basebackup.verify_base_backup(ctx.tool_settings, folder)
                return [f"BACKUP_BASEBACKUP_INVALID: {leaf}: {p}" for p in found]
    except BackupError as exc:
        if exc.reason == "BACKUP_STORAGE_UNAVAILABLE":
            raise
        return [f"{exc.reason}: {exc}"]
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
    return []


async def verify_backup(ctx: JobContext, backup_id: str) -> Verification:
    """VerifyBackup: the backup and, for an incremental, every backup of its chain
    (problems of a parent are prefixed with its id)."""
    chain = await backup_chain(ctx, backup_id)
    target = await verify_one(ctx, chain[-1])
    problems = list(target.problems)
    for parent in chain[:-1]:
        result = await verify_one(ctx, parent)
        problems.extend(f"{parent.backup_id}: {p}" for p in result.problems)
    return Verification(target.backup, target.manifest, problems, target.at)
