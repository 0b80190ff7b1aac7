"""Base backups against a real archiving cluster: full and incremental, verified,
packed and unpacked, combined and restored."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from server.backup.errors import BackupError
from server.backup.physical.basebackup import (
    combine,
    read_backup,
    take_base_backup,
    verify_base_backup,
)
from server.backup.physical.packing import pack_to_file, unpack
from server.backup.physical.pitr import restore_to_point
from server.backup.physical.wal import lsn_to_int
from server.core.config import Settings
from server.ops.embedded import EmbeddedPostgres
from tests.backup.physical.conftest import ArchivingCluster


async def _insert(cluster: ArchivingCluster, database: str, first: int, last: int) -> None:
    await cluster.execute(database, f"INSERT INTO t SELECT generate_series({first}, {last})")


async def _rows(url: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        return [r["n"] for r in await conn.fetch("SELECT n FROM t ORDER BY n")]
    finally:
        await conn.close()


async def test_a_full_backup_verifies_survives_packing_and_a_damaged_file_is_caught(
    archiving_cluster: ArchivingCluster, database: str, scratch: Path
) -> None:
    await _insert(archiving_cluster, database, 1, 100)
    backup = await take_base_backup(archiving_cluster.settings, scratch / "full")

    assert not backup.incremental
    assert backup.manifest == scratch / "full" / "backup_manifest"
    assert lsn_to_int(backup.start_lsn) <= lsn_to_int(backup.end_lsn)
    assert backup.start_time.tzinfo is not None
    assert await verify_base_backup(archiving_cluster.settings, backup.path) == []

    # Packed into one tar and unpacked elsewhere: the same backup, still verified.
    tar = scratch / "full.tar"
    await pack_to_file(backup.path, tar)
    names = await unpack(tar, scratch / "unpacked")
    assert "backup_manifest" in names and "PG_VERSION" in names
    assert await verify_base_backup(archiving_cluster.settings, scratch / "unpacked") == []

    # One flipped byte in a table file, one file gone: both named.
    oid = await archiving_cluster.fetchval(database, "SELECT pg_relation_filepath('t')")
    table_file = scratch / "unpacked" / str(oid)
    data = bytearray(table_file.read_bytes())
    data[100] ^= 0xFF
    table_file.write_bytes(bytes(data))
    (scratch / "unpacked" / "PG_VERSION").unlink()
    problems = await verify_base_backup(archiving_cluster.settings, scratch / "unpacked")
    assert any(str(oid) in line and "checksum" in line for line in problems), problems
    assert any("PG_VERSION" in line for line in problems), problems


async def test_an_incremental_chain_combines_and_restores_exactly_the_rows_up_to_it(
    archiving_cluster: ArchivingCluster, database: str, scratch: Path
) -> None:
    settings = archiving_cluster.settings
    await _insert(archiving_cluster, database, 1, 100)
    full = await take_base_backup(settings, scratch / "full")
    await _insert(archiving_cluster, database, 101, 150)
    incremental = await take_base_backup(settings, scratch / "incr", incremental_from=full.path)
    await _insert(archiving_cluster, database, 151, 175)  # after the incremental

    assert incremental.incremental
    assert lsn_to_int(incremental.start_lsn) > lsn_to_int(full.end_lsn)
    assert await verify_base_backup(settings, incremental.path) == []
    full_size = sum(p.stat().st_size for p in full.path.rglob("*") if p.is_file())
    incr_size = sum(p.stat().st_size for p in incremental.path.rglob("*") if p.is_file())
    assert incr_size < full_size

    combined = await combine(settings, [full.path, incremental.path], scratch / "combined")
    assert not read_backup(combined).incremental
    assert await verify_base_backup(settings, combined) == []

    # An incremental alone is not restorable; the combined one is, as of the incremental.
    with pytest.raises(BackupError) as refused:
        await restore_to_point(settings, incremental.path, None, None, scratch / "bad")
    assert refused.value.reason == "BACKUP_PITR_NEEDS_FULL"
    async with await restore_to_point(
        settings, combined, None, None, scratch / "restored"
    ) as recovered:
        assert await _rows(recovered.url_for(database)) == list(range(1, 151))
    assert not (scratch / "restored").exists()


async def test_a_broken_chain_is_refused(
    archiving_cluster: ArchivingCluster, database: str, scratch: Path
) -> None:
    settings = archiving_cluster.settings
    full = await take_base_backup(settings, scratch / "full")
    first = await take_base_backup(settings, scratch / "i1", incremental_from=full.path)
    second = await take_base_backup(settings, scratch / "i2", incremental_from=first.path)
    with pytest.raises(BackupError) as skipped:
        await combine(settings, [full.path, second.path], scratch / "out")
    assert skipped.value.reason == "BACKUP_COMBINE_FAILED"
    assert not (scratch / "out").exists()
    await combine(settings, [full.path, first.path, second.path], scratch / "out")
    assert await verify_base_backup(settings, scratch / "out") == []


async def test_an_incremental_needs_wal_summaries_and_a_parent_of_the_same_cluster(
    archiving_cluster: ArchivingCluster, scratch: Path
) -> None:
    """A small cluster of its own running without ``summarize_wal`` (the default)."""
    plain = EmbeddedPostgres(scratch / "plain", durable=False).start()
    try:
        settings = Settings(database_url=plain.admin_url, data_dir=Path("/nonexistent"))
        full = await take_base_backup(settings, scratch / "full")
        with pytest.raises(BackupError) as off:
            await take_base_backup(settings, scratch / "incr", incremental_from=full.path)
        assert off.value.reason == "BACKUP_WAL_SUMMARIES_OFF", off.value
        assert not (scratch / "incr").exists()

        foreign = await take_base_backup(archiving_cluster.settings, scratch / "foreign")
        with pytest.raises(BackupError) as mixed:
            await take_base_backup(settings, scratch / "incr", incremental_from=foreign.path)
        assert mixed.value.reason == "BACKUP_PARENT_FOREIGN", mixed.value
    finally:
        plain.stop()
