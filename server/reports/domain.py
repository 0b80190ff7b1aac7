"""Reports: their parameters, where each type's rows come from, and ``ReportsLogs``.

Plain functions over the connection they are given (``conn=``, and the MongoDB
database for the types that read it); the file writing and the bookkeeping around it
are server/reports/flows.py.

Parameters: a ranged report takes ``from`` and ``to`` (``YYYY-MM-DD``, both days
included, UTC days); missing ``to`` is today, missing ``from`` is 29 days before ``to``
(30 days, the DDS pipelines' window); at most :data:`MAX_RANGE_DAYS` days. A snapshot
report (content usage, active plans, user permissions) takes no parameters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from pymongo.asynchronous.database import AsyncDatabase
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core import pagination
from server.core.errors import FieldViolation, InvalidArgument, NotFound
from server.reports import pipelines, queries
from server.reports.catalog import BY_ID, ReportFormat, ReportType

Document = dict[str, Any]
Rows = list[tuple[Any, ...]]

#: The longest date range of a ranged report (one year, leap day included).
MAX_RANGE_DAYS: Final = 366
#: Dates a report may name.
FIRST_DAY: Final = date(2000, 1, 1)
LAST_DAY: Final = date(2999, 12, 31)
#: The DDS pipelines' window, the default range.
DEFAULT_RANGE_DAYS: Final = 30
#: Rows fetched (and written) per batch.
BATCH_ROWS: Final = 1000


@dataclass(frozen=True)
class Parameters:
    """A validated request: the report type, its format, and its UTC day range."""

    report_type: ReportType
    format: ReportFormat
    first_day: date | None = None
    last_day: date | None = None

    @property
    def start(self) -> datetime:
        assert self.first_day is not None
        return datetime.combine(self.first_day, time(), UTC)

    @property
    def end(self) -> datetime:
        """Exclusive: midnight after the last day."""
        assert self.last_day is not None
        return datetime.combine(self.last_day + timedelta(days=1), time(), UTC)

    def as_details(self) -> dict[str, str]:
        if self.first_day is None or self.last_day is None:
            return {}
        return {"from": self.first_day.isoformat(), "to": self.last_day.isoformat()}


def _day(value: Any, name: str, problems: list[FieldViolation]) -> date | None:
    path = f"parameters.{name}"
    if not isinstance(value, str):
        problems.append(FieldViolation(path, "must be a date as text, YYYY-MM-DD"))
        return None
    try:
        if len(value) != 10:
            raise ValueError
        day = date.fromisoformat(value)
    except ValueError:
        problems.append(FieldViolation(path, "must be a date, YYYY-MM-DD"))
        return None
    if not FIRST_DAY <= day <= LAST_DAY:
        problems.append(FieldViolation(path, f"must be between {FIRST_DAY} and {LAST_DAY}"))
        return None
    return day


def validate(
    report_type_id: int,
    fmt: ReportFormat | None,
    parameters: Mapping[str, Any],
    *,
    today: date,
) -> Parameters:
    """The request checked: INVALID_ARGUMENT with one violation per bad field."""
    problems: list[FieldViolation] = []
    report_type = BY_ID.get(report_type_id)
    if report_type is None:
        known = ", ".join(f"{t.report_type_id} ({t.name})" for t in BY_ID.values())
        problems.append(FieldViolation("report_type_id", f"must be a report type: {known}"))
    if fmt is None:
        problems.append(FieldViolation("format", "must be PDF, EXCEL or CSV"))
    allowed = ("from", "to") if report_type is None or report_type.ranged else ()
    for key in parameters:
        if key not in allowed:
            takes = ", ".join(allowed) if allowed else "no parameters"
            problems.append(
                FieldViolation(f"parameters.{key[:40]}", f"unknown; this report takes {takes}")
            )
    first = _day(parameters["from"], "from", problems) if "from" in parameters else None
    last = _day(parameters["to"], "to", problems) if "to" in parameters else None
    if report_type is None or fmt is None or problems:
        raise InvalidArgument.of(problems)
    if not report_type.ranged:
        return Parameters(report_type, fmt)
    last = last or today
    first = first or last - timedelta(days=DEFAULT_RANGE_DAYS - 1)
    if first > last:
        raise InvalidArgument.field("parameters.from", "must not be after parameters.to")
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise InvalidArgument.field(
            "parameters.to", f"the range may cover at most {MAX_RANGE_DAYS} days"
        )
    return Parameters(report_type, fmt, first, last)


# --------------------------------------------------------------------- the rows


def _statement(params: Parameters) -> Any:
    name = params.report_type.name
    if params.report_type.ranged:
        return _RANGED[name](params.start, params.end)
    return _SNAPSHOT[name]()


async def count_rows(params: Parameters, *, conn: AsyncConnection) -> int | None:
    """The report's row count before it is written; None for the MongoDB reports."""
    if params.report_type.name in _MONGO:
        return None
    return await queries.count_rows(_statement(params), conn=conn)


async def rows(
    params: Parameters,
    *,
    conn: AsyncConnection,
    mongo: AsyncDatabase[Document],
    batch: int = BATCH_ROWS,
) -> AsyncIterator[Rows]:
    """The report's rows, in batches, in the order of its columns."""
    name = params.report_type.name
    if name in _MONGO:
        async for part in _mongo_rows(params, conn=conn, mongo=mongo, batch=batch):
            yield part
        return
    async for part in queries.stream_rows(_statement(params), batch=batch, conn=conn):
        yield part


_RANGED = {
    "transactions": queries.transactions_rows,
    "recharges": queries.recharges_rows,
    "plans": queries.plans_rows,
    "offers": queries.offers_rows,
    "referrals": queries.referrals_rows,
    "revenue": queries.revenue_rows,
    "users": queries.users_rows,
}
_SNAPSHOT = {
    "active_plans": queries.active_plans_rows,
    "user_permissions": queries.user_permissions_rows,
}
_MONGO = ("user_activity", "content_usage", "backup_activity")


def _within(pipeline: list[Document], params: Parameters) -> list[Document]:
    """A DDS pipeline whose leading ``$match`` on ``created_at`` also ends at ``end``."""
    first = dict(pipeline[0]["$match"])
    first["created_at"] = {"$gte": params.start, "$lt": params.end}
    return [{"$match": first}, *pipeline[1:]]


async def _mongo_rows(
    params: Parameters,
    *,
    conn: AsyncConnection,
    mongo: AsyncDatabase[Document],
    batch: int,
) -> AsyncIterator[Rows]:
    name = params.report_type.name
    keys = params.report_type.keys
    if name == "user_activity":
        collection = pipelines.AUDIT_LOG
        pipeline = _within(pipelines.user_activity_summary_pipeline(params.start), params)
    elif name == "content_usage":
        collection = pipelines.CONTENT
        pipeline = pipelines.content_usage_report_pipeline()
    else:
        collection = pipelines.BACKUP_RESTORE_LOGS
        pipeline = _within(pipelines.recent_backup_restore_activity_pipeline(params.start), params)
        # Oldest first, like every other report (the DDS view is newest first).
        pipeline = [s if "$sort" not in s else {"$sort": {"created_at": 1}} for s in pipeline]
    async for documents in queries.stream_pipeline(mongo, collection, pipeline, batch=batch):
        if name == "backup_activity":
            job_ids = sorted({str(d["job_id"]) for d in documents if d.get("job_id") is not None})
            names = await queries.snapshot_names(job_ids, conn=conn)
            for document in documents:
                document["snapshot_name"] = names.get(str(document.get("job_id")))
        yield [tuple(_plain(d.get(key)) for key in keys) for d in documents]


def _plain(value: Any) -> Any:
    """A MongoDB value as a report cell: text unless it is a number or a time."""
    if value is None or isinstance(value, (int, datetime)):
        return value
    return str(value)


# --------------------------------------------------------------------- ReportsLogs


@dataclass(frozen=True)
class Report:
    """A ``ReportsLogs`` document."""

    report_id: int
    report_type_id: int
    report_type_name: str
    generated_by: int | None
    format: ReportFormat
    created_at: datetime
    download_uri: str
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return str(self.details.get("sha256", ""))

    @property
    def size_bytes(self) -> int:
        return int(self.details.get("size_bytes", 0))

    @property
    def row_count(self) -> int:
        return int(self.details.get("row_count", 0))

    @property
    def file_name(self) -> str:
        return str(self.details.get("file_name", ""))

    @property
    def storage_key(self) -> str:
        return str(self.details.get("storage_key", ""))

    @property
    def content_type(self) -> str:
        return str(self.details.get("content_type", self.format.content_type))


def to_document(report: Report) -> Document:
    document: Document = {
        "report_id": report.report_id,
        "report_type_id": report.report_type_id,
        "report_type_name": report.report_type_name,
        "format": report.format.value,
        "details": dict(report.details),
        "created_at": report.created_at,
        "download_uri": report.download_uri,
    }
    if report.generated_by is not None:
        document["generated_by"] = report.generated_by
    return document


def _of(document: Document) -> Report:
    created = document["created_at"]
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    type_id = int(document["report_type_id"])
    known = BY_ID.get(type_id)
    generated_by = document.get("generated_by")
    return Report(
        report_id=int(document["report_id"]),
        report_type_id=type_id,
        report_type_name=str(
            document.get("report_type_name") or (known.name if known else str(type_id))
        ),
        generated_by=int(generated_by) if generated_by is not None else None,
        format=ReportFormat(document["format"]),
        created_at=created,
        download_uri=str(document.get("download_uri", "")),
        details=document.get("details") or {},
    )


def mongo_time(moment: datetime) -> datetime:
    """``moment`` at the millisecond precision MongoDB keeps (so keyset tokens match)."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


async def next_report_id(*, mongo: AsyncDatabase[Document]) -> int:
    return await queries.next_report_id(mongo)


async def record(report: Report, *, mongo: AsyncDatabase[Document]) -> None:
    await queries.insert_report(mongo, to_document(report))


async def forget(report_id: int, *, mongo: AsyncDatabase[Document]) -> None:
    """Remove a report's document (its generation failed after it was inserted)."""
    await queries.delete_report(mongo, report_id)


async def get(report_id: int, *, mongo: AsyncDatabase[Document]) -> Report:
    if report_id <= 0:
        raise InvalidArgument.field("report_id", "must be a positive id")
    document = await queries.find_report(mongo, report_id)
    if document is None:
        raise NotFound(f"report {report_id} not found", reason="REPORT_NOT_FOUND")
    return _of(document)


async def list_reports(
    *,
    report_type_id: int,
    page_size: int,
    page_token: str,
    mongo: AsyncDatabase[Document],
) -> tuple[list[Report], str]:
    """Reports newest first, one page; ``report_type_id`` 0: every type."""
    if report_type_id < 0 or (report_type_id and report_type_id not in BY_ID):
        raise InvalidArgument.field("report_type_id", "must be 0 (all) or a report type")
    page = pagination.parse(page_size, page_token, {"report_type_id": report_type_id})
    documents = await queries.list_reports(
        mongo,
        report_type_id=report_type_id or None,
        after=pagination.time_keyset(page.after),
        limit=page.fetch,
    )
    reports = [_of(d) for d in documents]
    return pagination.time_page(reports, page, "created_at", "report_id")
