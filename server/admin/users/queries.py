"""Reads for the operators' user RPCs (SQLAlchemy Core, and one MongoDB query).

Only reads: the identity domain (server/auth) writes ``users``, ``usersarchive`` and
``sessions``; the other tables read here belong to the ledger, recharge, payments and
notifications domains, which write them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from sqlalchemy import Row, Table, and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core import pagination
from server.core.schema import (
    autopay,
    billreminders,
    currentactiveplans,
    notifications,
    payment_attempts,
    plans,
    recharges,
    referralrewards,
    roles,
    sessions,
    transactions,
    users,
    usersarchive,
)

RowT = Row[Any]

#: MongoDB AuditLog (server/audit/relay.py ships it).
AUDIT_LOG = "AuditLog"


def _live_users() -> Any:
    """Users with their role's name, archived users left out."""
    archived = exists().where(usersarchive.c.user_id == users.c.user_id)
    return (
        select(*users.c, roles.c.role_name)
        .select_from(users.outerjoin(roles, users.c.role_id == roles.c.role_id))
        .where(~archived)
    )


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_users(
    conn: AsyncConnection,
    *,
    status: str | None,
    user_type: str | None,
    text: str | None,
    phone: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> Sequence[RowT]:
    """Live users, newest first (created_at, then user_id)."""
    u = users.c
    query = _live_users()
    if status is not None:
        query = query.where(u.status == status)
    if user_type is not None:
        query = query.where(u.user_type == user_type)
    if created_after is not None:
        query = query.where(u.created_at >= created_after)
    if created_before is not None:
        query = query.where(u.created_at < created_before)
    if text:
        pattern = _like(text)
        matches: list[Any] = [
            u.name.ilike(pattern, escape="\\"),
            u.email.ilike(pattern, escape="\\"),
            u.phone_number.ilike(pattern, escape="\\"),
        ]
        if phone is not None:
            matches.append(u.phone_number == phone)
        query = query.where(or_(*matches))
    result = await conn.execute(
        pagination.keyset_query(query, u.created_at, u.user_id, after, limit, newest_first=True)
    )
    rows: Sequence[RowT] = result.all()
    return rows


async def is_archived(conn: AsyncConnection, user_id: int) -> bool:
    result = await conn.execute(select(exists().where(usersarchive.c.user_id == user_id)))
    return bool(result.scalar_one())


async def session_summary(conn: AsyncConnection, user_id: int) -> RowT:
    """The user's last login and number of live sessions."""
    live = and_(sessions.c.is_active, sessions.c.refresh_token_expires_at > func.now())
    result = await conn.execute(
        select(
            func.max(sessions.c.login_time).label("last_login_at"),
            func.count().filter(live).label("active_sessions"),
        ).where(sessions.c.user_id == user_id)
    )
    row: RowT = result.one()
    return row


async def current_plans(conn: AsyncConnection, user_id: int, limit: int) -> Sequence[RowT]:
    """The user's active and queued plans, by valid_from, with their names."""
    cap = currentactiveplans.c
    result: Any = await conn.execute(
        select(*currentactiveplans.c, plans.c.plan_name)
        .select_from(currentactiveplans.join(plans, plans.c.plan_id == cap.plan_id))
        .where(cap.user_id == user_id, cap.status.in_(("active", "queued")))
        .order_by(cap.valid_from, cap.id)
        .limit(limit)
    )
    rows: Sequence[RowT] = result.all()
    return rows


async def money_in_flight(conn: AsyncConnection, user_id: int) -> RowT:
    """What keeps a user from being archived: pending ledger rows, charges left
    between the gateway and the ledger, enabled AutoPay mandates."""
    result: Any = await conn.execute(
        select(
            select(func.count())
            .where(transactions.c.user_id == user_id, transactions.c.status == "pending")
            .scalar_subquery()
            .label("pending_transactions"),
            select(func.count())
            .where(
                payment_attempts.c.user_id == user_id,
                payment_attempts.c.state == "charging",
            )
            .scalar_subquery()
            .label("charging_payments"),
            select(func.count())
            .where(autopay.c.user_id == user_id, autopay.c.status == "enabled")
            .scalar_subquery()
            .label("enabled_autopays"),
        )
    )
    row: RowT = result.one()
    return row


# --- the data export --------------------------------------------------------------------

#: Columns never exported: secrets and what only verifies them.
SECRET_COLUMNS = frozenset({"password_hash", "refresh_token", "request_hash", "code_hash"})


def _public(table: Table) -> list[Any]:
    return [c for c in table.c if c.name not in SECRET_COLUMNS]


async def _rows(conn: AsyncConnection, statement: Any) -> list[dict[str, Any]]:
    result = await conn.execute(statement)
    return [dict(row._mapping) for row in result.all()]


async def export_rows(conn: AsyncConnection, user_id: int) -> dict[str, list[dict[str, Any]]]:
    """Every PostgreSQL row about the user, by section, secrets left out."""
    return {
        "users": await _rows(conn, select(*_public(users)).where(users.c.user_id == user_id)),
        "usersarchive": await _rows(
            conn, select(*_public(usersarchive)).where(usersarchive.c.user_id == user_id)
        ),
        "sessions": await _rows(
            conn,
            select(*_public(sessions))
            .where(sessions.c.user_id == user_id)
            .order_by(sessions.c.login_time, sessions.c.session_id),
        ),
        "transactions": await _rows(
            conn,
            select(*_public(transactions))
            .where(transactions.c.user_id == user_id)
            .order_by(transactions.c.txn_id),
        ),
        "recharges": await _rows(
            conn,
            select(*_public(recharges))
            .select_from(recharges.join(transactions, transactions.c.txn_id == recharges.c.txn_id))
            .where(transactions.c.user_id == user_id)
            .order_by(recharges.c.txn_id),
        ),
        "plans": await _rows(
            conn,
            select(*_public(currentactiveplans), plans.c.plan_name)
            .select_from(
                currentactiveplans.join(plans, plans.c.plan_id == currentactiveplans.c.plan_id)
            )
            .where(currentactiveplans.c.user_id == user_id)
            .order_by(currentactiveplans.c.id),
        ),
        "autopays": await _rows(
            conn,
            select(*_public(autopay))
            .where(autopay.c.user_id == user_id)
            .order_by(autopay.c.autopay_id),
        ),
        "bill_reminders": await _rows(
            conn,
            select(*_public(billreminders))
            .where(billreminders.c.user_id == user_id)
            .order_by(billreminders.c.reminder_id),
        ),
        "payments": await _rows(
            conn,
            select(*_public(payment_attempts))
            .where(payment_attempts.c.user_id == user_id)
            .order_by(payment_attempts.c.created_at, payment_attempts.c.reference),
        ),
        "notifications": await _rows(
            conn,
            select(*_public(notifications))
            .where(notifications.c.recipient_id == user_id)
            .order_by(notifications.c.notification_id),
        ),
        "referral_rewards": await _rows(
            conn,
            select(*_public(referralrewards))
            .where(
                or_(
                    referralrewards.c.referrer_id == user_id,
                    referralrewards.c.referred_id == user_id,
                )
            )
            .order_by(referralrewards.c.reward_id),
        ),
    }


async def audit_events(
    mongo_db: AsyncDatabase[dict[str, Any]], user_id: int, limit: int
) -> list[dict[str, Any]]:
    """AuditLog events by the user or naming them (details.user_id), newest first."""
    cursor = (
        mongo_db[AUDIT_LOG]
        .find(
            {
                "$or": [
                    {"user_id": f"user:{user_id}"},
                    {"customer_id": user_id},
                    {"details.user_id": user_id},
                ]
            },
            projection={"_id": False},
        )
        .sort([("created_at", -1), ("audit_id", -1)])
        .limit(limit)
    )
    return [dict(doc) async for doc in cursor]
