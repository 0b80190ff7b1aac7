"""The reports' SQL (SQLAlchemy Core over the tables and the DDS 6.1 views) and their
MongoDB reads and writes (``ReportsLogs`` and its id counter; the DDS 7.2 pipelines are
in server/reports/pipelines.py).

Row sources stream: PostgreSQL through a server-side cursor (``AsyncConnection.stream``,
``yield_per``), MongoDB through a cursor with a batch size; both hand rows over in
batches of ``batch`` and never hold more than one batch.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, Final

from pymongo.asynchronous.database import AsyncDatabase
from sqlalchemy import Date, Select, and_, case, cast, column, func, literal, select, table
from sqlalchemy.ext.asyncio import AsyncConnection

from migrations.mongo.collections import REPORT_ID_COUNTER
from server.core.mongo import next_in_sequence
from server.core.schema import (
    backup,
    offers,
    offertypes,
    plans,
    recharges,
    referralrewards,
    transactions,
    users,
)

Document = dict[str, Any]
Rows = list[tuple[Any, ...]]

REPORTS_LOGS: Final = "ReportsLogs"

_SUCCESS = "success"
#: Ledger sources of a plan purchase (a recharge, or one autopay made).
_RECHARGE_SOURCES = ("recharge", "autopay")


# ------------------------------------------------------------------ the DDS 6.1 views

transaction_summary_v = table(
    "transaction_summary_v",
    *(
        column(name)
        for name in (
            "txn_id",
            "user_id",
            "user_name",
            "category",
            "txn_type",
            "amount",
            "service_type",
            "plan_name",
            "transaction_status",
            "payment_method",
            "created_at",
        )
    ),
)
active_plans_v = table(
    "active_plans_v",
    *(
        column(name)
        for name in (
            "id",
            "user_id",
            "user_name",
            "plan_id",
            "plan_name",
            "phone_number",
            "valid_from",
            "valid_to",
            "plan_status",
        )
    ),
)
user_permissions_v = table(
    "user_permissions_v",
    *(
        column(name)
        for name in (
            "user_id",
            "user_name",
            "role_name",
            "permission_name",
            "read",
            "write",
            "delete",
            "edit",
        )
    ),
)


# ------------------------------------------------------------------ row statements


def transactions_rows(start: datetime, end: datetime) -> Select[Any]:
    v = transaction_summary_v.c
    return (
        select(
            v.txn_id,
            v.user_id,
            v.user_name,
            v.category,
            v.txn_type,
            v.amount,
            v.service_type,
            v.plan_name,
            v.transaction_status,
            v.payment_method,
            v.created_at,
        )
        .where(v.created_at >= start, v.created_at < end)
        .order_by(v.created_at, v.txn_id)
    )


def recharges_rows(start: datetime, end: datetime) -> Select[Any]:
    t, r, p = transactions.c, recharges.c, plans.c
    return (
        select(
            t.txn_id,
            t.user_id,
            t.to_phone_number,
            p.plan_name,
            t.amount,
            r.discount,
            r.cashback,
            t.status,
            t.payment_method,
            t.created_at,
        )
        .select_from(
            recharges.join(transactions, t.txn_id == r.txn_id).outerjoin(
                plans, p.plan_id == t.plan_id
            )
        )
        .where(t.created_at >= start, t.created_at < end)
        .order_by(t.created_at, t.txn_id)
    )


def _sales(start: datetime, end: datetime, key: Any) -> Any:
    """Successful plan purchases in [start, end): count and amount per ``key``."""
    t = transactions.c
    return (
        select(
            key.label("key"),
            func.count().label("n"),
            func.coalesce(func.sum(t.amount), 0).label("amount"),
        )
        .where(
            t.status == _SUCCESS,
            t.txn_type == "debit",
            t.source.in_(_RECHARGE_SOURCES),
            t.created_at >= start,
            t.created_at < end,
            key.is_not(None),
        )
        .group_by(key)
        .subquery()
    )


def plans_rows(start: datetime, end: datetime) -> Select[Any]:
    p = plans.c
    sales = _sales(start, end, transactions.c.plan_id)
    return (
        select(
            p.plan_id,
            p.plan_name,
            p.plan_type,
            p.price,
            p.validity,
            p.status,
            func.coalesce(sales.c.n, 0),
            func.coalesce(sales.c.amount, 0),
        )
        .select_from(plans.outerjoin(sales, sales.c.key == p.plan_id))
        .order_by(p.plan_id)
    )


def offers_rows(start: datetime, end: datetime) -> Select[Any]:
    o, ot = offers.c, offertypes.c
    t = transactions.c
    uses = (
        select(
            t.offer_id.label("key"),
            func.count().label("n"),
            func.coalesce(func.sum(t.amount), 0).label("amount"),
        )
        .where(
            t.status == _SUCCESS,
            t.offer_id.is_not(None),
            t.created_at >= start,
            t.created_at < end,
        )
        .group_by(t.offer_id)
        .subquery()
    )
    return (
        select(
            o.offer_id,
            o.offer_name,
            ot.offer_type_name,
            o.status,
            o.valid_from,
            o.valid_to,
            func.coalesce(uses.c.n, 0),
            func.coalesce(uses.c.amount, 0),
        )
        .select_from(
            offers.outerjoin(offertypes, ot.offer_type_id == o.offer_type_id).outerjoin(
                uses, uses.c.key == o.offer_id
            )
        )
        .order_by(o.offer_id)
    )


def referrals_rows(start: datetime, end: datetime) -> Select[Any]:
    r = referralrewards.c
    return (
        select(r.reward_id, r.referrer_id, r.referred_id, r.reward_amount, r.status, r.created_at)
        .where(r.created_at >= start, r.created_at < end)
        .order_by(r.created_at, r.reward_id)
    )


def revenue_rows(start: datetime, end: datetime) -> Select[Any]:
    t = transactions.c
    day = cast(func.timezone("UTC", t.created_at), Date).label("day")
    recharge = and_(t.txn_type == "debit", t.source.in_(_RECHARGE_SOURCES))
    topup = and_(t.txn_type == "credit", t.source == "wallet_topup")

    def total(condition: Any, value: Any) -> Any:
        return func.coalesce(func.sum(case((condition, value), else_=literal(0))), 0)

    return (
        select(
            day,
            total(recharge, 1),
            total(recharge, t.amount),
            total(topup, 1),
            total(topup, t.amount),
        )
        .where(
            t.status == _SUCCESS,
            t.created_at >= start,
            t.created_at < end,
            (recharge | topup),
        )
        .group_by(day)
        .order_by(day)
    )


def users_rows(start: datetime, end: datetime) -> Select[Any]:
    u = users.c
    return (
        select(
            u.user_id,
            u.name,
            u.email,
            u.phone_number,
            u.user_type,
            u.status,
            u.wallet_balance,
            u.created_at,
        )
        .where(u.created_at >= start, u.created_at < end)
        .order_by(u.created_at, u.user_id)
    )


def active_plans_rows() -> Select[Any]:
    v = active_plans_v.c
    return select(*active_plans_v.c).order_by(v.id)


def user_permissions_rows() -> Select[Any]:
    v = user_permissions_v.c
    return select(*user_permissions_v.c).order_by(v.user_id, v.permission_name)


async def count_rows(statement: Select[Any], *, conn: AsyncConnection) -> int:
    """How many rows ``statement`` returns (for a progress bar)."""
    counted = select(func.count()).select_from(statement.order_by(None).subquery())
    return int((await conn.execute(counted)).scalar_one())


async def stream_rows(
    statement: Select[Any], *, batch: int, conn: AsyncConnection
) -> AsyncIterator[Rows]:
    """The statement's rows in batches, through a server-side cursor."""
    result = await conn.stream(statement.execution_options(yield_per=batch))
    async for partition in result.partitions(batch):
        yield [tuple(row) for row in partition]


async def snapshot_names(backup_ids: Sequence[str], *, conn: AsyncConnection) -> dict[str, str]:
    """``Backup.snapshot_name`` of these backups (those that have one)."""
    if not backup_ids:
        return {}
    b = backup.c
    rows = await conn.execute(
        select(b.backup_id, b.snapshot_name).where(
            b.backup_id.in_(list(backup_ids)), b.snapshot_name.is_not(None)
        )
    )
    return {row.backup_id: row.snapshot_name for row in rows}


# ------------------------------------------------------------------ MongoDB


async def stream_pipeline(
    db: AsyncDatabase[Document], collection: str, pipeline: list[Document], *, batch: int
) -> AsyncIterator[list[Document]]:
    """An aggregation's documents in batches (the cursor fetches ``batch`` at a time)."""
    cursor = await db[collection].aggregate(pipeline, batchSize=batch)
    pending: list[Document] = []
    async for document in cursor:
        pending.append(document)
        if len(pending) >= batch:
            yield pending
            pending = []
    if pending:
        yield pending


async def next_report_id(db: AsyncDatabase[Document]) -> int:
    """The next ``ReportsLogs.report_id`` (the ``Counters`` sequence)."""
    return await next_in_sequence(db, REPORT_ID_COUNTER)


async def insert_report(db: AsyncDatabase[Document], document: Document) -> None:
    await db[REPORTS_LOGS].insert_one(dict(document))


async def delete_report(db: AsyncDatabase[Document], report_id: int) -> None:
    await db[REPORTS_LOGS].delete_one({"report_id": report_id})


async def find_report(db: AsyncDatabase[Document], report_id: int) -> Document | None:
    return await db[REPORTS_LOGS].find_one({"report_id": report_id}, {"_id": 0})


async def list_reports(
    db: AsyncDatabase[Document],
    *,
    report_type_id: int | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[Document]:
    """Reports newest first (``created_at``, then ``report_id``, descending), after the
    keyset position ``after``."""
    query: Document = {}
    if report_type_id is not None:
        query["report_type_id"] = report_type_id
    if after is not None:
        at, report_id = after
        query["$or"] = [
            {"created_at": {"$lt": at}},
            {"created_at": at, "report_id": {"$lt": report_id}},
        ]
    cursor = (
        db[REPORTS_LOGS]
        .find(query, {"_id": 0})
        .sort([("created_at", -1), ("report_id", -1)])
        .limit(limit)
    )
    return [document async for document in cursor]
