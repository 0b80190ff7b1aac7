"""Peak memory of a transactions report of 100,000 rows, in each format (not a test).

    .venv/bin/python -m bench.report_memory [--rows 100000] [--formats csv,excel,pdf]

Starts its own embedded PostgreSQL and SecantusDB in a temporary folder, migrates,
loads reference data, inserts ``--rows`` ledger rows (top-ups of 200 customers), then
generates the ``transactions`` report (DDS transaction_summary_v) with the same flow
GenerateReport uses (server/reports/flows.py), once per format, and prints for each:
rows, file size, seconds, the peak of Python allocations during the generation
(tracemalloc, reset before each) and the process's resident set (VmRSS before/after,
VmHWM). For comparison it also measures loading the same rows at once
(``.all()``), what the streaming avoids.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from bench.run import DATABASE, insert_ledger_rows, prepare
from server.audit.scope import CLI_ACTOR, job_scope, unit_of_work
from server.core import db, mongo
from server.core.config import Settings
from server.core.resources import Resources
from server.ops.embedded import EmbeddedMongo, EmbeddedPostgres
from server.reports import queries
from server.reports.catalog import ReportFormat
from server.reports.flows import Reports


def _status(field: str) -> int:
    """A /proc/self/status figure in KiB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _mib(kib_or_bytes: float, *, kib: bool = False) -> str:
    value = kib_or_bytes / 1024 if kib else kib_or_bytes / (1024 * 1024)
    return f"{value:7.1f} MiB"


async def _measure(label: str, work: Callable[[], Any], results: list[tuple[str, ...]]) -> Any:
    rss_before = _status("VmRSS")
    tracemalloc.reset_peak()
    began = time.perf_counter()
    value = await work()
    seconds = time.perf_counter() - began
    _, peak = tracemalloc.get_traced_memory()
    results.append(
        (
            label,
            f"{seconds:6.1f} s",
            _mib(peak),
            _mib(rss_before, kib=True),
            _mib(_status("VmRSS"), kib=True),
            _mib(_status("VmHWM"), kib=True),
        )
    )
    return value


async def run(database_url: str, mongo_url: str, folder: Path, formats: list[str]) -> None:
    settings = Settings(
        database_url=database_url,
        mongo_url=mongo_url,
        data_dir=folder / "data",
        reports_dir=folder / "reports",
        # Measure the PDF beyond the service's default cap (docs/operations.md).
        reports_pdf_max_rows=1_000_000,
    )
    engine = db.create_engine(database_url, pool_size=2)
    client: AsyncMongoClient[dict[str, Any]] = mongo.create_client(mongo_url)
    resources = Resources(
        settings=settings,
        db=unit_of_work(engine),
        mongo_db=mongo.get_database(client, mongo_url, DATABASE),
    )
    reports = Reports.of(resources)
    results: list[tuple[str, ...]] = []
    sizes: list[str] = []
    try:
        for name in formats:
            fmt = ReportFormat(name)

            async def generate(fmt: ReportFormat = fmt) -> Any:
                with job_scope("report-memory", actor=CLI_ACTOR):
                    return await reports.generate(2, fmt, {}, generated_by=None, actor=CLI_ACTOR)

            report = await _measure(f"stream {name}", generate, results)
            sizes.append(f"{name}: {report.row_count} rows, {report.size_bytes:,} bytes")

        async def load_all() -> Any:
            async with resources.db.read_only() as conn:
                statement = queries.transactions_rows(
                    datetime(2000, 1, 1, tzinfo=UTC), datetime(2999, 12, 31, tzinfo=UTC)
                )
                rows = (await conn.execute(statement)).all()
                return len(rows)

        loaded = await _measure("load all rows (.all())", load_all, results)
        sizes.append(f"load all: {loaded} rows")
    finally:
        await client.close()
        await engine.dispose()
    header = ("what", "time", "py peak", "rss before", "rss after", "rss high")
    widths = [max(len(r[i]) for r in [header, *results]) for i in range(len(header))]
    for row in [header, *results]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    for line in sizes:
        print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--formats", default="csv,excel,pdf")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="gencharge-report-memory-"))
    folder.chmod(0o711)
    pg = EmbeddedPostgres(folder / "postgres")
    mongo_server = EmbeddedMongo(folder / "mongo")
    try:
        pg.start()
        mongo_server.start()
        database_url, mongo_url = pg.url(DATABASE), mongo_server.url(DATABASE)
        fixture = asyncio.run(prepare(pg, mongo_url, 200))
        asyncio.run(
            insert_ledger_rows(
                database_url, args.rows - len(fixture.user_ids), fixture.user_ids, prefix="mem"
            )
        )
        tracemalloc.start()
        asyncio.run(run(database_url, mongo_url, folder, args.formats.split(",")))
    finally:
        mongo_server.stop()
        pg.stop()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
