"""The insight rules: searching the audit log and the dashboard figures.

Plain async functions over the database handle they are given (``db=`` for MongoDB,
``conn=`` for PostgreSQL); no grpc, no transactions opened here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from bson import ObjectId
from bson.errors import InvalidId
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure
from sqlalchemy.ext.asyncio import AsyncConnection

from server.admin.insight import queries
from server.admin.insight.masking import mask_details
from server.audit.outbox import redact
from server.core import pagination
from server.core.errors import FieldViolation, InvalidArgument, Unavailable

Document = dict[str, Any]

#: The longest range GetDashboardStats sums over (its statements read every ledger
#: row of the range).
MAX_DASHBOARD_RANGE: Final = timedelta(days=366)
#: The range when the request names no start.
DEFAULT_DASHBOARD_RANGE: Final = timedelta(days=30)


# ----------------------------------------------------------------- audit log


@dataclass(frozen=True)
class AuditFilters:
    """What ListAuditLogs searches for; None (or empty): no filtering."""

    actor: str = ""
    customer_id: int = 0
    table_name: str = ""
    action_type: str | None = None
    rpc: str = ""
    created_after: datetime | None = None
    created_before: datetime | None = None

    def check(self) -> None:
        problems: list[FieldViolation] = []
        if self.customer_id < 0:
            problems.append(FieldViolation("customer_id", "must be a positive id (0: any)"))
        if (
            self.created_after is not None
            and self.created_before is not None
            and self.created_after >= self.created_before
        ):
            problems.append(FieldViolation("created_before", "must be after created_after"))
        if problems:
            raise InvalidArgument.of(problems)

    def equals(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if self.customer_id:
            found["customer_id"] = self.customer_id
        if self.actor:
            found["user_id"] = self.actor
        if self.rpc:
            found["rpc"] = self.rpc
        if self.table_name:
            found["table_name"] = self.table_name
        if self.action_type:
            found["action_type"] = self.action_type
        return found

    def fingerprint(self) -> dict[str, Any]:
        return {
            **self.equals(),
            "after": self.created_after.isoformat() if self.created_after else None,
            "before": self.created_before.isoformat() if self.created_before else None,
        }


@dataclass(frozen=True)
class AuditRecord:
    """One AuditLog entry as an operator sees it (details masked when asked)."""

    audit_id: str
    actor: str
    table_name: str
    action_type: str
    details: Mapping[str, Any]
    created_at: datetime | None
    rpc: str
    request_id: str
    outcome: str
    customer_id: int
    peer: str


def _position(after: Any) -> tuple[datetime, ObjectId] | None:
    """The keyset position of a ListAuditLogs token ([created_at iso, _id hex])."""
    values = pagination.position(after, str, str)
    if values is None:
        return None
    try:
        at = datetime.fromisoformat(values[0])
        if at.tzinfo is None:
            raise ValueError
        return at, ObjectId(values[1])
    except (ValueError, InvalidId):
        raise InvalidArgument.field("page_token", "is not a token this service issued") from None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _record(document: Document, *, personal_data: bool) -> AuditRecord:
    raw = document.get("details")
    details = redact(raw) if isinstance(raw, Mapping) else {}
    customer = document.get("customer_id")
    created = document.get("created_at")
    return AuditRecord(
        audit_id=_text(document.get("audit_id")) or str(document["_id"]),
        actor=_text(document.get("user_id")),
        table_name=_text(document.get("table_name")),
        action_type=_text(document.get("action_type")),
        details=details if personal_data else mask_details(details),
        created_at=created.astimezone(UTC) if isinstance(created, datetime) else None,
        rpc=_text(document.get("rpc")),
        request_id=_text(document.get("request_id")),
        outcome=_text(document.get("outcome")),
        customer_id=customer if isinstance(customer, int) and not isinstance(customer, bool) else 0,
        peer=_text(document.get("peer")) if personal_data else "",
    )


async def list_audit_logs(
    filters: AuditFilters,
    *,
    page_size: int,
    page_token: str,
    personal_data: bool,
    db: AsyncDatabase[Document],
) -> tuple[list[AuditRecord], str]:
    """One page of the events matching ``filters``, newest first, and the next page's
    token. ``personal_data``: whether the caller sees e-mails, phone numbers and client
    addresses unmasked. UNAVAILABLE ``AUDIT_LOG_UNAVAILABLE`` when MongoDB does not
    answer."""
    filters.check()
    page = pagination.parse(page_size, page_token, filters.fingerprint())
    query = queries.AuditQuery(
        equals=filters.equals(),
        created_after=filters.created_after,
        created_before=filters.created_before,
        position=_position(page.after),
        limit=page.fetch,
    )
    try:
        documents = await queries.find_audit_logs(db, query)
    except ConnectionFailure as exc:
        raise Unavailable(
            "the audit log (MongoDB) does not answer; try again later "
            "(the rest of AdminService works without it)",
            reason="AUDIT_LOG_UNAVAILABLE",
        ) from exc
    shown, more = pagination.split(documents, page)
    token = ""
    if more and shown:
        last = shown[-1]
        token = page.next_token(
            [last["created_at"].astimezone(UTC).isoformat(), str(last["_id"])], more
        )
    return [_record(d, personal_data=personal_data) for d in shown], token


# ----------------------------------------------------------------- dashboard


@dataclass(frozen=True)
class PlanSales:
    plan_id: int
    plan_name: str
    recharge_count: int
    recharge_amount: Decimal


@dataclass(frozen=True)
class DashboardStats:
    start: datetime
    end: datetime
    total_users: int
    active_users: int
    blocked_users: int
    new_users: int
    recharge_count: int
    recharge_amount: Decimal
    topup_count: int
    topup_amount: Decimal
    refund_amount: Decimal
    failed_transaction_count: int
    active_plan_count: int
    top_plans: tuple[PlanSales, ...]


def dashboard_range(
    start: datetime | None, end: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """The range [start, end) a request asks for: end defaults to ``now``, start to 30
    days before end. INVALID_ARGUMENT ``INVALID_RANGE`` unless start < end and the
    range is at most :data:`MAX_DASHBOARD_RANGE`."""
    end = end if end is not None else now
    if start is None:
        # 30 days before an end in the first days of year 1 is before any datetime.
        earliest = datetime.min.replace(tzinfo=UTC)
        start = (
            end - DEFAULT_DASHBOARD_RANGE if end - earliest > DEFAULT_DASHBOARD_RANGE else earliest
        )
    if start >= end:
        raise InvalidArgument(
            "start_time must be before end_time",
            reason="INVALID_RANGE",
            violations=[FieldViolation("start_time", "must be before end_time")],
        )
    if end - start > MAX_DASHBOARD_RANGE:
        raise InvalidArgument(
            f"the range may span at most {MAX_DASHBOARD_RANGE.days} days",
            reason="INVALID_RANGE",
            violations=[
                FieldViolation(
                    "end_time", f"at most {MAX_DASHBOARD_RANGE.days} days after start_time"
                )
            ],
        )
    return start, end


async def dashboard(
    start: datetime, end: datetime, now: datetime, *, conn: AsyncConnection
) -> DashboardStats:
    """The headline figures: customers and active plans as of now, money over
    [start, end) (a ledger row at exactly ``start`` counts, one at ``end`` does not)."""
    rows = await queries.dashboard_rows(conn, start, end, now)
    figures = rows.figures
    by_status = rows.users_by_status
    return DashboardStats(
        start=start,
        end=end,
        total_users=sum(by_status.values()),
        active_users=by_status.get("active", 0),
        blocked_users=by_status.get("blocked", 0),
        new_users=rows.new_users,
        recharge_count=int(figures.recharge_count),
        recharge_amount=Decimal(figures.recharge_amount),
        topup_count=int(figures.topup_count),
        topup_amount=Decimal(figures.topup_amount),
        refund_amount=Decimal(figures.refund_amount),
        failed_transaction_count=int(figures.failed_count),
        active_plan_count=rows.active_plans,
        top_plans=tuple(
            PlanSales(
                plan_id=int(row.plan_id),
                plan_name=row.plan_name,
                recharge_count=int(row.recharge_count),
                recharge_amount=Decimal(row.recharge_amount),
            )
            for row in rows.top_plans
        ),
    )
