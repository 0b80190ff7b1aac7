"""Point-in-time recovery from a base backup and the WAL archive of a real cluster."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from server.backup.errors import BackupError
from server.backup.physical.basebackup import take_base_backup
from server.backup.physical.pitr import restore_to_point
from server.backup.physical.wal import lay_out, list_segments
from tests.backup.physical.conftest import ArchivingCluster


async def _commit_batch(
    cluster: ArchivingCluster, database: str, first: int, last: int
) -> datetime:
    """Insert rows first..last in one transaction; the server's clock after the commit."""
    conn = await asyncpg.connect(cluster.url(database))
    try:
        await conn.execute(f"INSERT INTO t SELECT generate_series({first}, {last})")
        when = await conn.fetchval("SELECT clock_timestamp()")
        assert isinstance(when, datetime)
        return when
    finally:
        await conn.close()


async def _rows(url: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        return [r["n"] for r in await conn.fetch("SELECT n FROM t ORDER BY n")]
    finally:
        await conn.close()


async def test_recovery_to_a_time_between_two_batches_keeps_exactly_the_first(
    archiving_cluster: ArchivingCluster, database: str, scratch: Path
) -> None:
    settings = archiving_cluster.settings
    backup = await take_base_backup(settings, scratch / "full")
    between = await _commit_batch(archiving_cluster, database, 1, 40)
    after_all = await _commit_batch(archiving_cluster, database, 41, 90)
    last_segment = await archiving_cluster.switch_and_archive()

    segments = list_segments(archiving_cluster.archive_dir, from_lsn=backup.start_lsn)
    assert segments[-1].name == last_segment
    assert list_segments(archiving_cluster.archive_dir, after=last_segment) == []
    wal_dir = scratch / "wal"
    lay_out(segments, wal_dir)

    async with await restore_to_point(
        settings, backup.path, wal_dir, between, scratch / "restored"
    ) as recovered:
        assert await _rows(recovered.url_for(database)) == list(range(1, 41))
        assert recovered.recovered_to is not None
        assert recovered.recovered_to <= between
    assert not (scratch / "restored").exists()

    # The same backup and WAL, no target: everything archived.
    async with await restore_to_point(
        settings, backup.path, wal_dir, None, scratch / "restored"
    ) as recovered:
        assert await _rows(recovered.url_for(database)) == list(range(1, 91))
        assert recovered.recovered_to is not None
        assert recovered.recovered_to > between  # (autovacuum may have committed later)

    # Past the last archived transaction: refused, with the way out in the message.
    with pytest.raises(BackupError) as unreachable:
        await restore_to_point(
            settings, backup.path, wal_dir, after_all + timedelta(hours=1), scratch / "late"
        )
    assert unreachable.value.reason == "BACKUP_PITR_TARGET_UNREACHABLE", unreachable.value
    assert "no target" in str(unreachable.value)
    assert not (scratch / "late").exists()


async def test_a_target_before_the_backup_is_refused(
    archiving_cluster: ArchivingCluster, scratch: Path
) -> None:
    settings = archiving_cluster.settings
    backup = await take_base_backup(settings, scratch / "full")
    with pytest.raises(BackupError) as early:
        await restore_to_point(
            settings,
            backup.path,
            scratch,
            backup.start_time - timedelta(minutes=1),
            scratch / "restored",
        )
    assert early.value.reason == "BACKUP_PITR_TARGET_TOO_EARLY"
    assert not (scratch / "restored").exists()
