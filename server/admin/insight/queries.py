"""The reads behind ListAuditLogs (MongoDB ``AuditLog``) and GetDashboardStats
(PostgreSQL): the only database code of the insight topic.

Every audit query is served by one of the step-0006 indexes (migrations/mongo/steps.py
``AUDIT_QUERY_INDEXES``): the filter's equality, then ``created_at`` and ``_id``
descending, the page order. Every dashboard statement is served by an index (the plans
checked are in docs/dashboard.md; tests/admin/test_dashboard.py runs EXPLAIN on them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from bson import ObjectId
from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from sqlalchemy import Select, and_, bindparam, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from migrations.mongo.collections import AUDIT_LOG
from server.core.schema import TimestampTZ, currentactiveplans, plans, transactions, users

Document = dict[str, Any]

# ----------------------------------------------------------------- audit log

#: The filters ``AuditLog`` documents are searched by, most selective first: the
#: index of the first one present serves the query (``auditlog_<field>_page``).
AUDIT_EQUALITY_FIELDS: Final = ("customer_id", "user_id", "rpc", "table_name", "action_type")
#: The earliest time a BSON date of the AuditLog may hold for our purposes.
EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
AUDIT_SORT: Final = [("created_at", DESCENDING), ("_id", DESCENDING)]
#: Only what an entry shows is read.
AUDIT_PROJECTION: Final = {
    "audit_id": 1,
    "user_id": 1,
    "table_name": 1,
    "action_type": 1,
    "details": 1,
    "created_at": 1,
    "rpc": 1,
    "request_id": 1,
    "outcome": 1,
    "peer": 1,
    "customer_id": 1,
}


@dataclass(frozen=True)
class AuditQuery:
    """Equality filters (field -> value), the time range [after, before) and the
    keyset position (created_at, _id) of the last entry of the previous page."""

    equals: Mapping[str, Any]
    created_after: datetime | None
    created_before: datetime | None
    position: tuple[datetime, ObjectId] | None
    limit: int


def audit_filter(query: AuditQuery) -> Document:
    """The MongoDB filter of ``query``.

    The keyset condition is written so that the index range stays one range: the
    bound ``created_at <= at`` narrows the scan, and the ``$or`` only drops the entries
    at exactly ``at`` up to and including the last one shown.
    """
    found: Document = dict(query.equals)
    # Only events with a time: one without (not written by the relay) has no place in
    # "newest first". The bound also keeps the index range on created_at explicit.
    created: Document = {"$gte": query.created_after or EARLIEST}
    if query.created_before is not None:
        created["$lt"] = query.created_before
    if query.position is not None:
        at, last_id = query.position
        created["$lte"] = at
        found["$or"] = [{"created_at": {"$lt": at}}, {"_id": {"$lt": last_id}}]
    found["created_at"] = created
    return found


def audit_index(query: AuditQuery) -> str:
    """The index that serves ``query`` (its most selective equality, else the page
    order alone)."""
    for name in AUDIT_EQUALITY_FIELDS:
        if name in query.equals:
            return f"auditlog_{name}_page"
    return "auditlog_page"


async def find_audit_logs(db: AsyncDatabase[Document], query: AuditQuery) -> list[Document]:
    """Up to ``query.limit`` documents, newest first (``created_at``, then ``_id``)."""
    cursor = (
        db[AUDIT_LOG]
        .find(audit_filter(query), AUDIT_PROJECTION)
        .sort(AUDIT_SORT)
        .hint(audit_index(query))
        .limit(query.limit)
    )
    return [document async for document in cursor]


async def explain_audit_logs(db: AsyncDatabase[Document], query: AuditQuery) -> Document:
    """The server's query plan of :func:`find_audit_logs` (for the index checks)."""
    cursor = (
        db[AUDIT_LOG]
        .find(audit_filter(query), AUDIT_PROJECTION)
        .sort(AUDIT_SORT)
        .hint(audit_index(query))
        .limit(query.limit)
    )
    plan: Document = await cursor.explain()
    return plan


# ----------------------------------------------------------------- dashboard

RECHARGE_SOURCES: Final = ("recharge", "autopay")

_t = transactions.c
_start = bindparam("start", type_=TimestampTZ)
_end = bindparam("end", type_=TimestampTZ)
_now = bindparam("now", type_=TimestampTZ)
_in_range = and_(_t.created_at >= _start, _t.created_at < _end)
# Equalities, not IN: an expanding IN cannot be compiled for EXPLAIN without values.
_recharge = and_(
    _t.status == "success",
    or_(*(_t.source == source for source in RECHARGE_SOURCES)),
    _t.txn_type == "debit",
)
_topup = and_(_t.status == "success", _t.source == "wallet_topup", _t.txn_type == "credit")
_refund = and_(_t.status == "success", _t.source == "refund")


def _zero(value: Any) -> Any:
    return func.coalesce(value, 0)


#: Counts of customers by status, as of now: every customer is read (a sequential
#: scan, the cheapest way to count a whole table).
USER_COUNTS: Final[Select[Any]] = select(users.c.status, func.count().label("n")).group_by(
    users.c.status
)

#: Customers registered in [start, end) (idx_users_created_at).
NEW_USERS: Final[Select[Any]] = select(func.count()).where(
    users.c.created_at >= _start, users.c.created_at < _end
)

#: The transaction figures of [start, end), one pass over the range
#: (idx_transactions_created_at).
TRANSACTION_FIGURES: Final[Select[Any]] = select(
    func.count().filter(_recharge).label("recharge_count"),
    _zero(func.sum(_t.amount).filter(_recharge)).label("recharge_amount"),
    func.count().filter(_topup).label("topup_count"),
    _zero(func.sum(_t.amount).filter(_topup)).label("topup_amount"),
    _zero(func.sum(_t.amount).filter(_refund)).label("refund_amount"),
    func.count().filter(_t.status == "failed").label("failed_count"),
).where(_in_range)

#: Plan periods active now (idx_currentactiveplans_status).
ACTIVE_PLANS: Final[Select[Any]] = select(func.count()).where(
    currentactiveplans.c.status == "active",
    (currentactiveplans.c.valid_to.is_(None)) | (currentactiveplans.c.valid_to > _now),
)

TOP_PLAN_LIMIT: Final = 10
_recharges = func.count().label("recharge_count")
_amount = func.sum(_t.amount).label("recharge_amount")
_sales = (
    select(_t.plan_id, _recharges, _amount)
    .where(_in_range, _recharge, _t.plan_id.is_not(None))
    .group_by(_t.plan_id)
    .order_by(_recharges.desc(), _amount.desc(), _t.plan_id)
    .limit(TOP_PLAN_LIMIT)
    .subquery("sales")
)
#: The best-selling plans of [start, end) (idx_transactions_created_at, then the plan
#: names by primary key).
TOP_PLANS: Final[Select[Any]] = (
    select(_sales.c.plan_id, plans.c.plan_name, _sales.c.recharge_count, _sales.c.recharge_amount)
    .join_from(_sales, plans, plans.c.plan_id == _sales.c.plan_id)
    .order_by(_sales.c.recharge_count.desc(), _sales.c.recharge_amount.desc(), _sales.c.plan_id)
)

#: Every dashboard statement by name, for EXPLAIN.
DASHBOARD_STATEMENTS: Final[dict[str, Select[Any]]] = {
    "user_counts": USER_COUNTS,
    "new_users": NEW_USERS,
    "transaction_figures": TRANSACTION_FIGURES,
    "active_plans": ACTIVE_PLANS,
    "top_plans": TOP_PLANS,
}


@dataclass(frozen=True)
class DashboardRows:
    users_by_status: dict[str, int]
    new_users: int
    figures: Any
    active_plans: int
    top_plans: list[Any]


async def dashboard_rows(
    conn: AsyncConnection, start: datetime, end: datetime, now: datetime
) -> DashboardRows:
    """Every figure of the dashboard from one snapshot (REPEATABLE READ, read only):
    the counts agree with each other even while customers register and pay."""
    await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
    bounds = {"start": start, "end": end}
    by_status = {row.status: int(row.n) for row in await conn.execute(USER_COUNTS)}
    new_users = int((await conn.execute(NEW_USERS, bounds)).scalar_one())
    figures = (await conn.execute(TRANSACTION_FIGURES, bounds)).one()
    active = int((await conn.execute(ACTIVE_PLANS, {"now": now})).scalar_one())
    top = list((await conn.execute(TOP_PLANS, bounds)).all())
    return DashboardRows(by_status, new_users, figures, active, top)


async def explain(conn: AsyncConnection, name: str, params: Mapping[str, Any]) -> Any:
    """The plan (``EXPLAIN (FORMAT JSON)``) of one dashboard statement with these
    parameters (docs/dashboard.md)."""
    compiled = DASHBOARD_STATEMENTS[name].compile(dialect=conn.dialect)
    values = compiled.construct_params(dict(params))
    result = await conn.exec_driver_sql(
        f"EXPLAIN (FORMAT JSON) {compiled}",
        tuple(values[n] for n in compiled.positiontup or []),
    )
    return result.scalar_one()
