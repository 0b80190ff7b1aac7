"""Seed data (DDS sections 12 and 13) against real PostgreSQL and MongoDB servers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.auth.passwords import verify_password
from server.core import db as pg
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
    transactions,
    users,
)
from server.ops import seed
from server.ops.seed import demo, reference

Document = dict[str, Any]
PROTO_DIR = Path(__file__).resolve().parents[2] / "protos" / "gencharge" / "v1"

REFERENCE_TABLES = (
    roles,
    permissions,
    rolepermissions,
    plangroups,
    offertypes,
    notificationtypes,
    notificationrecipienttypes,
)
DEMO_TABLES = (admins, users, plans, offers, transactions, backup, schedule)


@pytest.fixture
async def engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    eng = pg.create_engine(pg_url, pool_size=2)
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
async def mdb(mongo_url: str) -> AsyncIterator[AsyncDatabase[Document]]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongo_url, tz_aware=True)
    try:
        yield client.get_default_database()
    finally:
        await client.close()


async def _rows(engine: AsyncEngine, query: Any) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        return [tuple(row) for row in (await conn.execute(query)).all()]


async def _counts(engine: AsyncEngine, mdb: AsyncDatabase[Document]) -> dict[str, int]:
    counts: dict[str, int] = {}
    async with engine.connect() as conn:
        for table in REFERENCE_TABLES + DEMO_TABLES:
            counts[table.name] = (
                await conn.execute(select(func.count()).select_from(table))
            ).scalar_one()
    for name in ("ContentTypes", "ReportTypes", "Content", "BackupRestoreLogs"):
        counts[name] = await mdb[name].count_documents({})
    return counts


# ------------------------------------------------------------------- reference


async def test_reference_data_matches_dds_section_13(engine: AsyncEngine) -> None:
    assert await _rows(engine, select(roles).order_by(roles.c.role_id)) == [
        (1, "Admin", "System administrator with full access to all data and operations"),
        (2, "User", "Customer with access to their own profile, transactions, and plans"),
        (3, "Support", "Support staff with limited access to user data and reports"),
        (4, "Service", "Internal service accounts"),
    ]
    perms = await _rows(
        engine,
        select(permissions).where(permissions.c.permission_id <= 4).order_by("permission_id"),
    )
    assert perms == [
        (1, "Users", True, True, True, True),
        (2, "Transactions", True, False, False, False),
        (3, "Plans", True, True, False, True),
        (4, "Reports", True, True, True, True),
    ]
    role_perms = await _rows(
        engine, select(rolepermissions).where(rolepermissions.c.id <= 4).order_by("id")
    )
    assert role_perms == [(1, 1, 1), (2, 1, 4), (3, 2, 2), (4, 3, 2)]
    groups = await _rows(
        engine,
        select(plangroups.c.group_id, plangroups.c.group_name).order_by("group_id"),
    )
    assert groups[:4] == [(1, "talktime"), (2, "unlimited"), (3, "roaming"), (4, "other")]
    types = await _rows(
        engine,
        select(offertypes.c.offer_type_id, offertypes.c.offer_type_name).order_by("offer_type_id"),
    )
    assert types[:3] == [(1, "cashback"), (2, "bonus_data"), (3, "festive_special")]
    assert {"discount", "bonus"} <= {name for _, name in types}
    notification_types = {
        name for (name,) in await _rows(engine, select(notificationtypes.c.type_name))
    }
    assert {"recharge_success", "bill_reminder", "plan_expiry", "wallet_topup"} <= (
        notification_types
    )
    recipients = await _rows(
        engine,
        select(notificationrecipienttypes.c.recipient_type_name).order_by("recipient_type_id"),
    )
    assert [r for (r,) in recipients] == ["user", "all_users", "prepaid_users", "postpaid_users"]


async def test_mongo_reference_data(mdb: AsyncDatabase[Document]) -> None:
    content_types = await mdb.ContentTypes.find({}, {"_id": 0}).sort("content_type_id").to_list()
    assert content_types[0] == {"content_type_id": 1, "content_type_name": "faq"}
    assert content_types[2] == {"content_type_id": 3, "content_type_name": "terms_of_service"}
    names = {d["report_type_name"] for d in await mdb.ReportTypes.find().to_list()}
    assert {"user_activity", "transactions", "plans", "offers", "referrals", "revenue"} <= names


async def test_load_reference_is_idempotent(
    engine: AsyncEngine, mdb: AsyncDatabase[Document]
) -> None:
    before = await _counts(engine, mdb)
    assert before["roles"] == len(reference.ROLES)
    assert before["permissions"] == len(reference.PERMISSIONS)
    await seed.load_reference(engine, mdb)
    await seed.load_reference(engine, mdb)
    assert await _counts(engine, mdb) == before


async def test_load_reference_never_loads_demo_data(
    engine: AsyncEngine, mdb: AsyncDatabase[Document]
) -> None:
    await seed.load_reference(engine, mdb)
    counts = await _counts(engine, mdb)
    for name in [t.name for t in DEMO_TABLES] + ["Content", "BackupRestoreLogs"]:
        # The one reference schedule: the DDS default daily backup (inactive).
        assert counts[name] == (1 if name == "schedule" else 0), name


async def test_default_backup_schedule(engine: AsyncEngine) -> None:
    """The DDS default schedule: a full backup of both databases daily at 02:00 UTC,
    inactive (no next run) until an admin enables it; Admin holds full Backup and
    Schedule permissions (16, 17), nobody else any."""
    rows = await _rows(
        engine,
        select(
            schedule.c.schedule_id,
            schedule.c.task_name,
            schedule.c.cron_expression,
            schedule.c.job,
            schedule.c.backup_id,
            schedule.c.isactive,
            schedule.c.next_run,
        ),
    )
    assert rows == [
        ("sched_daily_backup", "daily_backup", "0 2 * * *", "backup", None, "inactive", None)
    ]
    granted = await _rows(
        engine,
        select(rolepermissions.c.role_id, permissions.c.resource, permissions.c.permission_id)
        .join(permissions, permissions.c.permission_id == rolepermissions.c.permission_id)
        .where(permissions.c.resource.in_(["Backup", "Schedule"])),
    )
    assert sorted(granted) == [(1, "Backup", 16), (1, "Schedule", 17)]
    full = await _rows(
        engine,
        select(
            permissions.c.read, permissions.c.write, permissions.c.delete, permissions.c.edit
        ).where(permissions.c.permission_id.in_([16, 17])),
    )
    assert full == [(True, True, True, True)] * 2


async def test_identity_sequences_advanced(engine: AsyncEngine) -> None:
    """Inserts without an id get a fresh one instead of colliding with seeded ids."""
    async with engine.begin() as conn:
        new_role = (
            await conn.execute(insert(roles).values(role_name="Auditor").returning(roles.c.role_id))
        ).scalar_one()
        new_perm = (
            await conn.execute(
                insert(permissions)
                .values(resource="Wallet", read=True)
                .returning(permissions.c.permission_id)
            )
        ).scalar_one()
        new_link = (
            await conn.execute(
                insert(rolepermissions)
                .values(role_id=new_role, permission_id=new_perm)
                .returning(rolepermissions.c.id)
            )
        ).scalar_one()
        new_group = (
            await conn.execute(
                insert(plangroups).values(group_name="5g").returning(plangroups.c.group_id)
            )
        ).scalar_one()
        new_type = (
            await conn.execute(
                insert(offertypes)
                .values(offer_type_name="loyalty")
                .returning(offertypes.c.offer_type_id)
            )
        ).scalar_one()
        new_ntype = (
            await conn.execute(
                insert(notificationtypes)
                .values(type_name="kyc")
                .returning(notificationtypes.c.type_id)
            )
        ).scalar_one()
        new_recipient = (
            await conn.execute(
                insert(notificationrecipienttypes)
                .values(recipient_type_name="admins")
                .returning(notificationrecipienttypes.c.recipient_type_id)
            )
        ).scalar_one()
    assert new_role == len(reference.ROLES) + 1
    assert new_perm == len(reference.PERMISSIONS) + 1
    assert new_link == len(reference.ROLE_PERMISSIONS) + 1
    assert new_group == len(reference.PLAN_GROUPS) + 1
    assert new_type == len(reference.OFFER_TYPES) + 1
    assert new_ntype == len(reference.NOTIFICATION_TYPES) + 1
    assert new_recipient == len(reference.NOTIFICATION_RECIPIENT_TYPES) + 1


def _contract_resources() -> set[str]:
    found: set[str] = set()
    for proto in sorted(PROTO_DIR.glob("*.proto")):
        body = "\n".join(
            line.split("//", 1)[0] for line in proto.read_text(encoding="utf-8").splitlines()
        )
        found.update(re.findall(r'\bresource:\s*"([^"]*)"', body))
    return found


async def _granted(engine: AsyncEngine, role_id: int) -> list[tuple[str, bool, bool, bool, bool]]:
    query = (
        select(
            permissions.c.resource,
            permissions.c.read,
            permissions.c.write,
            permissions.c.delete,
            permissions.c.edit,
        )
        .join(rolepermissions, rolepermissions.c.permission_id == permissions.c.permission_id)
        .where(rolepermissions.c.role_id == role_id)
    )
    return [(r, bool(a), bool(b), bool(c), bool(d)) for r, a, b, c, d in await _rows(engine, query)]


async def test_admin_has_full_access_to_every_contract_resource(engine: AsyncEngine) -> None:
    resources = _contract_resources()
    assert resources, f"no access rules found in {PROTO_DIR}"
    assert resources <= set(reference.CONTRACT_RESOURCES), (
        "add the new resources to server/ops/seed/reference.py CONTRACT_RESOURCES and PERMISSIONS"
    )
    full = {resource for resource, *flags in await _granted(engine, 1) if all(flags)}
    missing = sorted(resources - full)
    assert not missing, f"Admin lacks full access to {missing}"
    assert set(reference.CONTRACT_RESOURCES) <= full


async def test_support_reads_and_edits_only_contact_forms(engine: AsyncEngine) -> None:
    granted = await _granted(engine, 3)
    assert all(read and not (write or delete) for _, read, write, delete, _edit in granted)
    assert {resource for resource, *_ in granted} == set(reference.SUPPORT_READ_RESOURCES)
    edited = {resource for resource, _r, _w, _d, edit in granted if edit}
    assert edited == set(reference.SUPPORT_EDIT_RESOURCES) == {"ContactForm"}


# ------------------------------------------------------------------- demo


async def test_demo_data(engine: AsyncEngine, mdb: AsyncDatabase[Document]) -> None:
    await seed.load_demo(engine, mdb)
    first = await _counts(engine, mdb)
    await seed.load_demo(engine, mdb)
    assert await _counts(engine, mdb) == first, "load_demo is idempotent"

    assert first["admins"] == 2
    assert first["users"] == 2
    assert first["plans"] == len(demo.DEMO_PLANS)
    assert first["offers"] == len(demo.DEMO_OFFERS)
    assert first["backup"] == 2
    assert first["schedule"] == 2
    assert first["Content"] == 2
    assert first["BackupRestoreLogs"] == 2
    # The content counter is past the demo content's own ids (the next one is free).
    counter = await mdb["Counters"].find_one({"_id": "Content.content_id"})
    assert counter is not None
    assert counter["seq"] >= max(c["content_id"] for c in demo.DEMO_CONTENT)

    # Accounts of DDS 13.14/13.15 with their documented development passwords.
    account_rows = await _rows(
        engine, select(admins.c.admin_id, admins.c.email, admins.c.role_id, admins.c.password_hash)
    )
    by_email = {email: (admin_id, role, pw) for admin_id, email, role, pw in account_rows}
    for a in demo.DEMO_ADMINS:
        admin_id, role_id, password_hash = by_email[a.email]
        assert (admin_id, role_id) == (a.admin_id, a.role_id)
        assert verify_password(password_hash, a.password)

    user_rows = await _rows(
        engine,
        select(
            users.c.user_id,
            users.c.email,
            users.c.referred_by,
            users.c.wallet_balance,
            users.c.password_hash,
        ).order_by(users.c.user_id),
    )
    assert [(u[0], u[1], u[2]) for u in user_rows] == [
        (1, "saravanan@example.com", None),
        (2, "vijay@example.com", "REF123"),
    ]
    assert [u[3] for u in user_rows] == [Decimal("100.50"), Decimal("50.00")]
    for u, row in zip(demo.DEMO_USERS, user_rows, strict=True):
        assert verify_password(row[4], u.password)

    # Balances are made by ledger rows: sum(credits) - sum(debits) == balance.
    ledger = await _rows(
        engine,
        text(
            "SELECT u.user_id, u.wallet_balance,"
            " coalesce(sum(CASE WHEN t.txn_type = 'credit' THEN t.amount ELSE -t.amount END), 0)"
            " FROM users u LEFT JOIN transactions t ON t.user_id = u.user_id"
            " AND t.category = 'wallet' AND t.status = 'success'"
            " GROUP BY u.user_id, u.wallet_balance ORDER BY u.user_id"
        ),
    )
    for user_id, balance, ledger_sum in ledger:
        assert balance == ledger_sum, user_id

    # The catalogue: priced plans over every plan group, some popular, one inactive.
    catalogue = await _rows(
        engine, select(plans.c.group_id, plans.c.status, plans.c.most_popular, plans.c.price)
    )
    assert {g for g, *_ in catalogue} == {g.id for g in reference.PLAN_GROUPS}
    assert sum(1 for _, status, *_ in catalogue if status == "inactive") == 1
    assert any(popular for _, _, popular, _ in catalogue)
    assert {Decimal("199"), Decimal("299"), Decimal("479"), Decimal("719"), Decimal("2999")} <= {
        price for *_, price in catalogue
    }

    # Ids of later rows do not collide with the demo ids.
    async with engine.begin() as conn:
        plan_id = (
            await conn.execute(
                insert(plans)
                .values(plan_name="New", validity=28, plan_type="prepaid", price=Decimal("10"))
                .returning(plans.c.plan_id)
            )
        ).scalar_one()
        user_id = (
            await conn.execute(
                insert(users)
                .values(name="New", email="new@example.com", user_type="prepaid", role_id=2)
                .returning(users.c.user_id)
            )
        ).scalar_one()
    assert plan_id == len(demo.DEMO_PLANS) + 1
    assert user_id == 3

    # MongoDB: DDS 13.12 / 13.13 through the DDS views and pipelines.
    summary = await mdb.content_summary_v.find().sort("content_id").to_list()
    assert [(d["title"], d["content_type_name"]) for d in summary] == [
        ("How to Recharge Your Plan", "faq"),
        ("Terms of Service", "terms_of_service"),
    ]
    logs = await mdb.BackupRestoreLogs.find({}, {"_id": 0}).sort("log_id").to_list()
    assert [(d["log_id"], d["job_type"], d["status"], d["action_by"]) for d in logs] == [
        ("log_2025_10_10_0200", "backup", "completed", 1),
        ("log_2025_10_11_0300", "restore", "failed", 1),
    ]
    assert all("expires_at" not in d for d in logs), "DDS sample logs are permanent"


async def test_demo_after_a_bootstrap_admin(
    engine: AsyncEngine, mdb: AsyncDatabase[Document]
) -> None:
    """An admin created first (taking admin_id 1) does not stop the demo set loading."""
    async with engine.begin() as conn:
        await conn.execute(insert(admins).values(name="Boot", email="boot@example.com", role_id=1))
    await seed.load_demo(engine, mdb)
    rows = dict(await _rows(engine, select(admins.c.email, admins.c.admin_id)))
    assert rows["boot@example.com"] == 1
    assert {"admin@example.com", "support@example.com"} <= rows.keys()
    plan_creators = {c for (c,) in await _rows(engine, select(plans.c.created_by).distinct())}
    assert plan_creators == {rows["admin@example.com"]}


def test_demo_catalogue_criteria_follow_the_offer_rules() -> None:
    """Every demo plan and offer uses only criteria the rule set understands."""
    from server.ops.seed.demo import DEMO_OFFERS, DEMO_PLANS
    from server.plans.offers import validate_criteria, validate_plan_criteria

    for plan in DEMO_PLANS:
        assert validate_plan_criteria(plan.get("criteria") or {}, "criteria") == [], plan
    for offer in DEMO_OFFERS:
        assert validate_criteria(offer.get("criteria") or {}, "criteria") == [], offer
