"""Generating a report file and handing it out: the work around the domain.

A generation (GenerateReport and ``gencharge generate-report`` share it):

1. the request is validated (nothing is written for bad input);
2. a slot is taken: at most ``reports_max_concurrent`` generations run at once in a
   process, the next is RESOURCE_EXHAUSTED ``REPORTS_BUSY`` (reports are heavy: they
   hold a database cursor and a worker thread for their whole run);
3. the rows stream from the database in batches (a server-side cursor, or a MongoDB
   cursor) and each batch is written to a scratch file in a worker thread, so the
   event loop keeps serving and no more than one batch is ever in memory;
4. the file's SHA-256 is computed, the file stored under its key, the ``ReportsLogs``
   document inserted and the audit event committed; a failure at any step removes
   what the earlier steps left (the scratch file, the stored file, the document).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from server.audit.scope import audit_change
from server.core.config import Settings
from server.core.db import Database
from server.core.errors import FailedPrecondition, NotFound, ResourceExhausted
from server.core.resources import Resources
from server.reports import domain
from server.reports.catalog import ReportFormat
from server.reports.domain import Parameters, Report
from server.reports.storage import LocalReportStorage, ReportStorage
from server.reports.writers import Heading, ReportFile, Summary

Document = dict[str, Any]
#: Called with the number of rows written so far, after each batch.
Progress = Callable[[int], None]


def _now() -> datetime:
    return datetime.now(UTC)


def _sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def create_storage(resources: Resources) -> ReportStorage:
    """The configured report storage (a local directory: GENCHARGE_REPORTS_DIR)."""
    return LocalReportStorage(resources.settings.report_storage_dir)


@dataclass
class Reports:
    """Report generation and download for one process (its slots are per process)."""

    db: Database
    mongo: AsyncDatabase[Document]
    storage: ReportStorage
    #: Read at each generation (``reports_max_concurrent``, ``reports_pdf_max_rows``).
    settings: Settings
    now: Callable[[], datetime] = _now
    running: int = field(default=0, init=False)

    @classmethod
    def of(cls, resources: Resources) -> Reports:
        return cls(
            resources.db,
            resources.mongo_db,
            create_storage(resources),
            resources.settings,
        )

    @property
    def max_concurrent(self) -> int:
        return self.settings.reports_max_concurrent

    @property
    def pdf_max_rows(self) -> int:
        return self.settings.reports_pdf_max_rows

    async def count(
        self, report_type_id: int, fmt: ReportFormat | None, parameters: Mapping[str, Any]
    ) -> int | None:
        """The rows a generation would write now (None: not known in advance)."""
        params = domain.validate(report_type_id, fmt, parameters, today=self.now().date())
        async with self.db.read_only() as conn:
            return await domain.count_rows(params, conn=conn)

    async def generate(
        self,
        report_type_id: int,
        fmt: ReportFormat | None,
        parameters: Mapping[str, Any],
        *,
        generated_by: int | None,
        actor: str,
        progress: Progress | None = None,
    ) -> Report:
        params = domain.validate(report_type_id, fmt, parameters, today=self.now().date())
        if params.format is ReportFormat.PDF:
            async with self.db.read_only() as conn:
                counted = await domain.count_rows(params, conn=conn)
            if counted is not None and counted > self.pdf_max_rows:
                raise self._too_large_for_pdf(counted)
        if self.running >= self.max_concurrent:
            raise ResourceExhausted(
                f"{self.max_concurrent} reports are being generated; try again shortly",
                reason="REPORTS_BUSY",
                metadata={"max_concurrent": str(self.max_concurrent)},
            )
        self.running += 1
        try:
            return await self._generate(params, generated_by, actor, progress)
        finally:
            self.running -= 1

    async def _generate(
        self,
        params: Parameters,
        generated_by: int | None,
        actor: str,
        progress: Progress | None,
    ) -> Report:
        report_type, fmt = params.report_type, params.format
        report_id = await domain.next_report_id(mongo=self.mongo)
        created_at = domain.mongo_time(self.now())
        key = f"report-{report_id}-{report_type.name}.{fmt.extension}"
        span = params.as_details()
        scope = f"{span['from']} to {span['to']} (UTC days)" if span else "current state"
        heading = Heading(
            report_type.title,
            (
                f"Report {report_id} ({report_type.name}): {scope}",
                f"Generated {created_at:%Y-%m-%d %H:%M:%S} UTC by {actor}",
            ),
        )
        scratch = self.storage.scratch(f".{fmt.extension}")
        try:
            summary = await self._write(params, scratch, heading, progress)
            sha256, size = await asyncio.to_thread(_sha256, scratch)
            await self.storage.put(key, scratch)
        except BaseException:
            scratch.unlink(missing_ok=True)
            raise
        report = Report(
            report_id=report_id,
            report_type_id=report_type.report_type_id,
            report_type_name=report_type.name,
            generated_by=generated_by,
            format=fmt,
            created_at=created_at,
            download_uri=self.storage.uri(key),
            details={
                "parameters": span,
                "row_count": summary.row_count,
                "totals": {k: str(v) for k, v in summary.totals.items()},
                "chart_points": len(summary.series),
                "sha256": sha256,
                "size_bytes": size,
                "file_name": key,
                "content_type": fmt.content_type,
                "storage_key": key,
                "generated_by": actor,
            },
        )
        try:
            await domain.record(report, mongo=self.mongo)
            try:
                audit_change(
                    "ReportsLogs",
                    "INSERT",
                    {
                        "report_id": report_id,
                        "report_type": report_type.name,
                        "format": fmt.value,
                        "parameters": span,
                        "row_count": summary.row_count,
                        "sha256": sha256,
                    },
                )
                async with self.db.transaction():
                    pass  # the unit of work writes the audit event named above
            except BaseException:
                await domain.forget(report_id, mongo=self.mongo)
                raise
        except BaseException:
            await self.storage.delete(key)
            raise
        return report

    async def _write(
        self, params: Parameters, path: Path, heading: Heading, progress: Progress | None
    ) -> Summary:
        file = await asyncio.to_thread(ReportFile, path, params.report_type, params.format, heading)
        try:
            async with self.db.read_only() as conn:
                async for batch in domain.rows(params, conn=conn, mongo=self.mongo):
                    written = file.summary.row_count + len(batch)
                    if params.format is ReportFormat.PDF and written > self.pdf_max_rows:
                        # Rows arrived after the count (or a report counted only as it
                        # is written): the same refusal, and the scratch file goes.
                        raise self._too_large_for_pdf(written)
                    await asyncio.to_thread(file.write, batch)
                    if progress is not None:
                        progress(file.summary.row_count)
            return await asyncio.to_thread(file.close)
        except BaseException:
            await asyncio.to_thread(file.discard)
            raise

    def _too_large_for_pdf(self, rows: int) -> FailedPrecondition:
        """``rows``: the count, or the rows reached when the limit was passed."""
        return FailedPrecondition(
            f"a PDF report holds at most {self.pdf_max_rows:,} rows and this one has "
            f"{rows:,} or more: choose CSV or Excel, or a shorter range",
            reason="REPORT_TOO_LARGE_FOR_PDF",
            metadata={"max_rows": str(self.pdf_max_rows), "rows": str(rows)},
        )

    async def download(self, report_id: int) -> tuple[Report, AsyncIterator[bytes]]:
        """The report and its file's bytes (NOT_FOUND if either is gone)."""
        report = await domain.get(report_id, mongo=self.mongo)
        chunks = self.storage.chunks(report.storage_key)
        try:
            first = await anext(chunks)
        except (FileNotFoundError, StopAsyncIteration, ValueError):
            raise NotFound(
                f"the file of report {report_id} is no longer stored",
                reason="REPORT_FILE_MISSING",
            ) from None

        async def rest() -> AsyncIterator[bytes]:
            yield first
            async for chunk in chunks:
                yield chunk

        return report, rest()
