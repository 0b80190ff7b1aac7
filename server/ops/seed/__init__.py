"""Seed data: reference data (every environment) and demo data (development only).

Both loaders are idempotent and safe to run at every start, also by several
processes at once: rows are keyed by their DDS ids (or natural keys) and inserted
only when absent, never updated. The load order follows DDS section 12.

* :func:`load_reference`: roles, permissions, role permissions, plan groups, offer
  types, notification (recipient) types and the default backup schedule (inactive) in
  PostgreSQL; ``ContentTypes`` and
  ``ReportTypes`` in MongoDB. Never loads demo data.
* :func:`load_demo`: the DDS 13.10-13.15 samples and a plan/offer catalogue. Only
  call it in development mode (the CLI and runtime refuse in production).

MongoDB collections must exist first (``migrations.mongo.upgrade``), PostgreSQL must
be migrated to head.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from migrations.mongo.steps import step_0008_seed_counters
from server.auth.passwords import hash_password
from server.core.schema import (
    admins,
    backup,
    notificationrecipienttypes,
    notificationtypes,
    offers,
    offertypes,
    permissions,
    plangroups,
    plans,
    rolepermissions,
    roles,
    schedule,
    users,
)
from server.ledger import domain as ledger
from server.ops.seed import demo, queries, reference

__all__ = [
    "load_demo",
    "load_demo_mongo",
    "load_demo_postgres",
    "load_reference",
    "load_reference_mongo",
    "load_reference_postgres",
]

Document = dict[str, Any]

# MongoDB collection names (see migrations/mongo/collections.py).
_CONTENT_TYPES = "ContentTypes"
_REPORT_TYPES = "ReportTypes"
_CONTENT = "Content"
_BACKUP_RESTORE_LOGS = "BackupRestoreLogs"


# =========================================================================== reference


async def load_reference(engine: AsyncEngine, db: AsyncDatabase[Document]) -> None:
    """Load the reference data into PostgreSQL and MongoDB (idempotent)."""
    await load_reference_postgres(engine)
    await load_reference_mongo(db)


async def load_reference_postgres(engine: AsyncEngine) -> None:
    """DDS 12 steps 1-5 (and the notification lookups, the default backup schedule), in
    one transaction."""
    async with engine.begin() as conn:
        await queries.insert_all_if_absent(conn, roles, (r._asdict() for r in reference.ROLES))
        await queries.insert_all_if_absent(
            conn, permissions, (p._asdict() for p in reference.PERMISSIONS)
        )
        await queries.insert_all_if_absent(
            conn, rolepermissions, (rp._asdict() for rp in reference.ROLE_PERMISSIONS)
        )
        await queries.insert_all_if_absent(
            conn,
            plangroups,
            (
                {"group_id": g.id, "group_name": g.name, "description": g.description}
                for g in reference.PLAN_GROUPS
            ),
        )
        await queries.insert_all_if_absent(
            conn,
            offertypes,
            (
                {"offer_type_id": t.id, "offer_type_name": t.name, "description": t.description}
                for t in reference.OFFER_TYPES
            ),
        )
        await queries.insert_all_if_absent(
            conn,
            notificationtypes,
            (
                {"type_id": t.id, "type_name": t.name, "description": t.description}
                for t in reference.NOTIFICATION_TYPES
            ),
        )
        await queries.insert_all_if_absent(
            conn,
            notificationrecipienttypes,
            (
                {
                    "recipient_type_id": t.id,
                    "recipient_type_name": t.name,
                    "description": t.description,
                }
                for t in reference.NOTIFICATION_RECIPIENT_TYPES
            ),
        )
        await queries.insert_all_if_absent(conn, schedule, reference.SCHEDULES)
        for column in (
            roles.c.role_id,
            permissions.c.permission_id,
            rolepermissions.c.id,
            plangroups.c.group_id,
            offertypes.c.offer_type_id,
            notificationtypes.c.type_id,
            notificationrecipienttypes.c.recipient_type_id,
        ):
            await queries.advance_identity(conn, column)


async def _upsert_absent(
    db: AsyncDatabase[Document], collection: str, key: str, doc: Document
) -> None:
    """Insert ``doc`` unless a document with the same ``key`` value exists."""
    # DuplicateKeyError: a concurrent seeder inserted it first (unique index on key).
    with contextlib.suppress(DuplicateKeyError):
        await db[collection].update_one({key: doc[key]}, {"$setOnInsert": doc}, upsert=True)


async def load_reference_mongo(db: AsyncDatabase[Document]) -> None:
    """``ContentTypes`` and ``ReportTypes`` (the lookups of the DDS 6.2 views)."""
    for content_type_id, name in reference.CONTENT_TYPES:
        await _upsert_absent(
            db,
            _CONTENT_TYPES,
            "content_type_id",
            {"content_type_id": content_type_id, "content_type_name": name},
        )
    for report_type_id, name in reference.REPORT_TYPES:
        await _upsert_absent(
            db,
            _REPORT_TYPES,
            "report_type_id",
            {"report_type_id": report_type_id, "report_type_name": name},
        )


# =========================================================================== demo


async def load_demo(engine: AsyncEngine, db: AsyncDatabase[Document]) -> None:
    """Load the development demo data set (idempotent; reference data first)."""
    await load_reference(engine, db)
    admin_id = await load_demo_postgres(engine)
    await load_demo_mongo(db, admin_id=admin_id)


async def _missing_password_hashes(
    emails_missing: list[str], passwords: dict[str, str]
) -> dict[str, str]:
    hashes = await asyncio.gather(
        *(asyncio.to_thread(hash_password, passwords[email]) for email in emails_missing)
    )
    return dict(zip(emails_missing, hashes, strict=True))


async def _load_demo_admins(conn: AsyncConnection) -> None:
    missing = [
        a.email for a in demo.DEMO_ADMINS if await queries.admin_id_by_email(conn, a.email) is None
    ]
    hashes = await _missing_password_hashes(
        missing, {a.email: a.password for a in demo.DEMO_ADMINS}
    )
    for a in demo.DEMO_ADMINS:
        if a.email not in hashes:
            continue
        await queries.insert_account(
            conn,
            admins,
            admins.c.admin_id,
            {
                "admin_id": a.admin_id,
                "name": a.name,
                "email": a.email,
                "phone_number": a.phone_number,
                "status": "active",
                "role_id": a.role_id,
                "password_hash": hashes[a.email],
                "created_at": a.created_at,
                "updated_at": a.created_at,
                "email_verified_at": a.created_at if a.email else None,
                "phone_verified_at": a.created_at if a.phone_number else None,
            },
        )
    await queries.advance_identity(conn, admins.c.admin_id)


async def _load_demo_users(conn: AsyncConnection) -> None:
    missing = [
        u.email for u in demo.DEMO_USERS if await queries.user_id_by_email(conn, u.email) is None
    ]
    hashes = await _missing_password_hashes(missing, {u.email: u.password for u in demo.DEMO_USERS})
    for u in demo.DEMO_USERS:
        if u.email not in hashes:
            continue
        await queries.insert_account(
            conn,
            users,
            users.c.user_id,
            {
                "user_id": u.user_id,
                "name": u.name,
                "email": u.email,
                "phone_number": u.phone_number,
                "referral_code": u.referral_code,
                "referred_by": u.referred_by,
                "user_type": u.user_type,
                "status": "active",
                "wallet_balance": 0,  # moved by the ledger rows below, never set here
                "role_id": reference.ROLE_USER,
                "password_hash": hashes[u.email],
                "created_at": u.created_at,
                "updated_at": u.created_at,
                # Demo customers log in by OTP and reset passwords like verified ones.
                "email_verified_at": u.created_at if u.email else None,
                "phone_verified_at": u.created_at if u.phone_number else None,
            },
        )
    await queries.advance_identity(conn, users.c.user_id)


async def _load_demo_ledger(conn: AsyncConnection) -> None:
    """One wallet top-up per demo user, so that balance = credits - debits."""
    for u in demo.DEMO_USERS:
        user_id = await queries.user_id_by_email(conn, u.email)
        if user_id is None:
            continue
        await queries.lock_user(conn, user_id)
        reference_id = demo.topup_reference(u)
        if await ledger.get_by_payment_id(reference_id, conn=conn) is not None:
            continue
        # A plain insert (no ON CONFLICT): the wallet trigger would move the balance even
        # for a row ON CONFLICT then skipped. The user is locked and the row looked for.
        await ledger.insert(
            {
                "user_id": user_id,
                "category": "wallet",
                "txn_type": "credit",
                "amount": u.wallet_balance,
                "source": "wallet_topup",
                "status": "success",
                "payment_method": "UPI",
                "payment_transaction_id": reference_id,
            },
            conn=conn,
        )


async def load_demo_postgres(engine: AsyncEngine) -> int | None:
    """DDS 12 steps 6-19 for the demo set; returns the demo admin's id (for MongoDB)."""
    async with engine.begin() as conn:
        await _load_demo_admins(conn)
        await _load_demo_users(conn)
        admin_id = await queries.admin_id_by_email(conn, demo.DEMO_ADMINS[0].email)
        await queries.insert_all_if_absent(
            conn, plans, ({**p, "created_by": admin_id} for p in demo.DEMO_PLANS)
        )
        await queries.advance_identity(conn, plans.c.plan_id)
        await queries.insert_all_if_absent(
            conn, offers, ({**o, "created_by": admin_id} for o in demo.DEMO_OFFERS)
        )
        await queries.advance_identity(conn, offers.c.offer_id)
        await _load_demo_ledger(conn)
        await queries.insert_all_if_absent(
            conn, backup, ({**b, "created_by": admin_id} for b in demo.DEMO_BACKUPS)
        )
        await queries.insert_all_if_absent(conn, schedule, demo.DEMO_SCHEDULES)
    return admin_id


async def load_demo_mongo(db: AsyncDatabase[Document], *, admin_id: int | None = 1) -> None:
    """DDS 13.13 ``Content`` and 13.12 ``BackupRestoreLogs``, keyed by their ids."""
    for doc in demo.DEMO_CONTENT:
        await _upsert_absent(db, _CONTENT, "content_id", {**doc, "created_by": admin_id})
    for doc in demo.DEMO_BACKUP_RESTORE_LOGS:
        await _upsert_absent(db, _BACKUP_RESTORE_LOGS, "log_id", {**doc, "action_by": admin_id})
    # The demo content carries its own ids: the counters move past them, or the next
    # CreateContent would be handed an id already taken.
    await step_0008_seed_counters(db)
