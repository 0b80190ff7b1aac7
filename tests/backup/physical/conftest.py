"""A dedicated PostgreSQL cluster for the physical-backup tests, with WAL archiving
(``archive_mode = on`` and our ``archive_command``) and WAL summaries
(``summarize_wal = on``), started once for this folder: the shared session cluster of
tests/conftest.py is never reconfigured."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from server.core.config import Settings
from server.ops.embedded import EmbeddedPostgres
from tests.helpers.clock import HANG_SECONDS, eventually


def private_dir(prefix: str) -> Path:
    """A folder the embedded PostgreSQL's system user may pass through (when root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    return path


@dataclass
class ArchivingCluster:
    server: EmbeddedPostgres
    archive_dir: Path

    def url(self, database: str = "postgres") -> str:
        return self.server.url(database)

    @property
    def settings(self) -> Settings:
        return Settings(database_url=self.url(), data_dir=Path("/nonexistent"))

    async def execute(self, database: str, sql: str) -> None:
        conn = await asyncpg.connect(self.url(database))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def fetchval(self, database: str, sql: str) -> object:
        conn = await asyncpg.connect(self.url(database))
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    async def switch_and_archive(self) -> str:
        """Close the current WAL segment and wait (bounded by a hang timeout) until the
        archiver has copied it; returns its name."""
        conn = await asyncpg.connect(self.url())
        try:
            name = await conn.fetchval("SELECT pg_walfile_name(pg_switch_wal())")

            async def archived() -> bool:
                row = await conn.fetchrow(
                    "SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver"
                )
                assert row is not None
                return row["last_archived_wal"] is not None and row["last_archived_wal"] >= name

            assert await eventually(archived, within=HANG_SECONDS, every=0.1), (
                f"{name} was not archived"
            )
            return str(name)
        finally:
            await conn.close()


@pytest.fixture(scope="module")
def archiving_cluster() -> Iterator[ArchivingCluster]:
    folder = private_dir("gencharge-test-pitr-")
    archive = folder / "archive"
    server = EmbeddedPostgres(
        folder / "data", durable=False, wal_archive_dir=archive, summarize_wal=True
    ).start()
    try:
        yield ArchivingCluster(server, archive)
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A folder for backups, WAL copies and recovered data folders."""
    path = private_dir("gencharge-test-pitr-scratch-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def database(archiving_cluster: ArchivingCluster) -> AsyncIterator[str]:
    """A fresh database on the archiving cluster with a table ``t (n int)``."""
    import uuid

    name = f"p_{uuid.uuid4().hex[:10]}"
    await archiving_cluster.execute("postgres", f'CREATE DATABASE "{name}"')
    await archiving_cluster.execute(name, "CREATE TABLE t (n int PRIMARY KEY)")
    yield name
    await archiving_cluster.execute("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
