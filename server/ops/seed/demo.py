"""Demo data: development only (``gencharge seed --demo`` / ``load_demo_data``).

DDS 13.10-13.15 plus a realistic plan and offer catalogue. The passwords below are
documented development passwords (docs/mongodb.md, "Seed data at a glance"): never
load this data into a database that faces users; :func:`server.ops.seed.load_demo` is
only called in development mode.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, NamedTuple

from server.ops.seed.reference import ROLE_ADMIN, ROLE_SUPPORT


def _ts(text: str) -> datetime:
    """A DDS timestamp (``YYYY-MM-DD HH:MM:SS``), read as UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# ------------------------------------------------------------------- accounts


class DemoAdmin(NamedTuple):
    admin_id: int
    name: str
    email: str
    phone_number: str
    role_id: int
    created_at: datetime
    password: str


class DemoUser(NamedTuple):
    user_id: int
    name: str
    email: str
    phone_number: str
    referral_code: str
    referred_by: str | None
    user_type: str
    wallet_balance: Decimal
    created_at: datetime
    password: str


#: DDS 13.15, with development passwords.
DEMO_ADMINS: Final[tuple[DemoAdmin, ...]] = (
    DemoAdmin(
        1,
        "Admin User",
        "admin@example.com",
        "9999999999",
        ROLE_ADMIN,
        _ts("2025-10-10 07:00:00"),
        "GenCharge#Admin1",
    ),
    DemoAdmin(
        2,
        "Support User",
        "support@example.com",
        "8888888888",
        ROLE_SUPPORT,
        _ts("2025-10-10 07:30:00"),
        "GenCharge#Support1",
    ),
)

#: DDS 13.14, with development passwords. ``wallet_balance`` is not written to the
#: row: the user is created with 0 and one wallet top-up ledger row of this amount
#: moves the balance through the wallet trigger.
DEMO_USERS: Final[tuple[DemoUser, ...]] = (
    DemoUser(
        1,
        "Saravanan",
        "saravanan@example.com",
        "9876543210",
        "REF123",
        None,
        "prepaid",
        Decimal("100.50"),
        _ts("2025-10-10 08:00:00"),
        "GenCharge#User1",
    ),
    DemoUser(
        2,
        "Vijay",
        "vijay@example.com",
        "8765432109",
        "REF456",
        "REF123",
        "postpaid",
        Decimal("50.00"),
        _ts("2025-10-10 09:00:00"),
        "GenCharge#User2",
    ),
)


def topup_reference(user: DemoUser) -> str:
    """Natural key (``payment_transaction_id``) of a demo user's opening top-up."""
    return f"DEMO-TOPUP-{user.referral_code}"


# ------------------------------------------------------------------- catalogue

GB: Final = 1024  # MB


def _plan(
    plan_id: int,
    name: str,
    price: str,
    validity: int,
    plan_type: str,
    group_id: int,
    description: str,
    *,
    data_mb_per_day: int | None = None,
    data_mb: int | None = None,
    unlimited_voice: bool = False,
    voice_minutes: int | None = None,
    sms_per_day: int = 0,
    sms_count: int | None = None,
    most_popular: bool = False,
    status: str = "active",
    criteria: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "plan_id": plan_id,
        "plan_name": name,
        "price": Decimal(price),
        "currency": "INR",
        "validity": validity,
        "plan_type": plan_type,
        "group_id": group_id,
        "description": description,
        "data_mb_per_day": data_mb_per_day,
        "data_mb": data_mb,
        "unlimited_data": False,
        "unlimited_voice": unlimited_voice,
        "voice_minutes": voice_minutes,
        # sms_count is the total included over the validity.
        "sms_count": sms_count if sms_count is not None else sms_per_day * validity,
        "most_popular": most_popular,
        "status": status,
        "criteria": criteria,
    }


#: Plan groups: 1 talktime, 2 unlimited, 3 roaming, 4 other, 5 data.
DEMO_PLANS: Final[tuple[dict[str, Any], ...]] = (
    _plan(
        1,
        "Unlimited 199",
        "199.00",
        28,
        "prepaid",
        2,
        "1.5 GB/day, unlimited calls, 100 SMS/day for 28 days",
        data_mb_per_day=1536,
        unlimited_voice=True,
        sms_per_day=100,
    ),
    _plan(
        2,
        "Unlimited 299",
        "299.00",
        28,
        "prepaid",
        2,
        "2 GB/day, unlimited calls, 100 SMS/day for 28 days",
        data_mb_per_day=2 * GB,
        unlimited_voice=True,
        sms_per_day=100,
        most_popular=True,
    ),
    _plan(
        3,
        "Unlimited 479",
        "479.00",
        56,
        "prepaid",
        2,
        "1.5 GB/day, unlimited calls, 100 SMS/day for 56 days",
        data_mb_per_day=1536,
        unlimited_voice=True,
        sms_per_day=100,
        most_popular=True,
    ),
    _plan(
        4,
        "Unlimited 719",
        "719.00",
        84,
        "prepaid",
        2,
        "2 GB/day, unlimited calls, 100 SMS/day for 84 days",
        data_mb_per_day=2 * GB,
        unlimited_voice=True,
        sms_per_day=100,
        most_popular=True,
    ),
    _plan(
        5,
        "Annual 2999",
        "2999.00",
        365,
        "prepaid",
        2,
        "2.5 GB/day, unlimited calls, 100 SMS/day for 365 days",
        data_mb_per_day=2560,
        unlimited_voice=True,
        sms_per_day=100,
    ),
    _plan(
        6,
        "Talktime 100",
        "100.00",
        28,
        "prepaid",
        1,
        "300 minutes of calls for 28 days",
        voice_minutes=300,
    ),
    _plan(
        7,
        "Talktime 50",
        "50.00",
        14,
        "prepaid",
        1,
        "120 minutes of calls for 14 days",
        voice_minutes=120,
    ),
    _plan(
        8,
        "Data Booster 19",
        "19.00",
        1,
        "prepaid",
        5,
        "1 GB extra data for 1 day (needs an active base plan)",
        data_mb=1 * GB,
    ),
    _plan(
        9,
        "Data Pack 61",
        "61.00",
        28,
        "prepaid",
        5,
        "6 GB extra data for 28 days (needs an active base plan)",
        data_mb=6 * GB,
    ),
    _plan(
        10,
        "International Roaming 2875",
        "2875.00",
        10,
        "prepaid",
        3,
        "5 GB data, 100 minutes, 100 SMS in 30+ countries for 10 days",
        data_mb=5 * GB,
        voice_minutes=100,
        sms_count=100,
    ),
    _plan(
        11,
        "Validity 99",
        "99.00",
        28,
        "prepaid",
        4,
        "Keeps the number active: 200 MB, 50 minutes for 28 days",
        data_mb=200,
        voice_minutes=50,
    ),
    _plan(
        12,
        "Postpaid 399",
        "399.00",
        30,
        "postpaid",
        2,
        "40 GB per bill cycle, unlimited calls, 100 SMS/day",
        data_mb=40 * GB,
        unlimited_voice=True,
        sms_per_day=100,
    ),
    _plan(
        13,
        "Postpaid 699",
        "699.00",
        30,
        "postpaid",
        2,
        "75 GB per bill cycle, unlimited calls, 100 SMS/day",
        data_mb=75 * GB,
        unlimited_voice=True,
        sms_per_day=100,
        most_popular=True,
    ),
    _plan(
        14,
        "Unlimited 349 (retired)",
        "349.00",
        28,
        "prepaid",
        2,
        "2.5 GB/day, unlimited calls, 100 SMS/day for 28 days; no longer sold",
        data_mb_per_day=2560,
        unlimited_voice=True,
        sms_per_day=100,
        status="inactive",
    ),
)

#: Offer types: 1 cashback, 2 bonus_data, 3 festive_special, 4 discount, 5 bonus.
DEMO_OFFERS: Final[tuple[dict[str, Any], ...]] = (
    {
        "offer_id": 1,
        "offer_name": "10% cashback on 199 and above",
        "offer_type_id": 1,
        "offer_validity": 30,
        "is_special": False,
        "cashback_percent": Decimal("10.00"),
        "max_benefit_amount": Decimal("50.00"),
        "criteria": {"min_amount_minor": 19900},
        "description": "10% back to the wallet (up to INR 50) on recharges of INR 199 or more",
    },
    {
        "offer_id": 2,
        "offer_name": "INR 20 off on 479 and above",
        "offer_type_id": 4,
        "offer_validity": 30,
        "is_special": False,
        "discount_amount": Decimal("20.00"),
        "criteria": {"min_amount_minor": 47900},
        "description": "Flat INR 20 off on any recharge of INR 479 or more",
    },
    {
        "offer_id": 3,
        "offer_name": "Diwali festive special",
        "offer_type_id": 3,
        "offer_validity": 15,
        "is_special": True,
        "discount_percent": Decimal("15.00"),
        "max_benefit_amount": Decimal("100.00"),
        "valid_from": _ts("2025-10-15 00:00:00"),
        "valid_to": _ts("2025-10-30 00:00:00"),
        "criteria": {"user_types": ["prepaid"]},
        "description": "15% off (up to INR 100) on prepaid recharges during Diwali",
    },
    {
        "offer_id": 4,
        "offer_name": "2 GB bonus data",
        "offer_type_id": 2,
        "offer_validity": 30,
        "is_special": False,
        "criteria": {"min_amount_minor": 29900},
        "bonus": {"data_mb": 2 * GB},
        "description": "2 GB extra data with any recharge of INR 299 or more",
    },
    {
        "offer_id": 5,
        "offer_name": "First recharge bonus",
        "offer_type_id": 5,
        "offer_validity": 90,
        "is_special": False,
        "cashback_amount": Decimal("25.00"),
        "criteria": {"first_recharge_only": True},
        "description": "INR 25 wallet bonus on the first recharge",
        "status": "inactive",
    },
)

# ------------------------------------------------------------------- backups

#: DDS 13.10 (``created_by`` is resolved to the demo admin).
DEMO_BACKUPS: Final[tuple[dict[str, Any], ...]] = (
    {
        "backup_id": "backup_2025_10_10_0200",
        "backup_data": "users",
        "snapshot_name": "backup_2025_10_10_0200",
        "source_db": "PostgreSQL",
        "storage_uri": "s3://telecom-backups/2025_10_10",
        "backup_status": "success",
        "size_bytes": 104857600,
        "description": "Daily user data backup",
        "details": {"tables": ["Users", "UsersArchive"]},
        "created_at": _ts("2025-10-10 02:00:00"),
    },
    {
        "backup_id": "backup_2025_10_11_0200",
        "backup_data": "transactions",
        "snapshot_name": "backup_2025_10_11_0200",
        "source_db": "PostgreSQL",
        "storage_uri": "s3://telecom-backups/2025_10_11",
        "backup_status": "success",
        "size_bytes": 209715200,
        "description": "Daily transaction data backup",
        "details": {"tables": ["Transactions"]},
        "created_at": _ts("2025-10-11 02:00:00"),
    },
)

#: DDS 13.11, with the cron expression of the task name. Its ``sched_001``
#: (``daily_backup``) is the reference data's default schedule ``sched_daily_backup``
#: (server/ops/seed/reference.py: daily at 02:00 UTC, inactive until an admin enables
#: it), so the demo adds only the weekly one (Saturdays at 00:00 UTC, like its times).
DEMO_SCHEDULES: Final[tuple[dict[str, Any], ...]] = (
    {
        "schedule_id": "sched_002",
        "backup_id": "backup_2025_10_11_0200",
        "task_name": "weekly_backup",
        "time": _ts("2025-10-11 00:00:00"),
        "next_run": _ts("2025-10-18 00:00:00"),
        "isactive": "active",
        "created_at": _ts("2025-10-09 10:00:00"),
        "cron_expression": "0 0 * * 6",
        "job": "backup",
    },
)

# ------------------------------------------------------------------- MongoDB

#: DDS 13.12 (``action_by`` is resolved to the demo admin).
DEMO_BACKUP_RESTORE_LOGS: Final[tuple[dict[str, Any], ...]] = (
    {
        "log_id": "log_2025_10_10_0200",
        "job_type": "backup",
        "job_id": "backup_2025_10_10_0200",
        "status": "completed",
        "details": {"tables": ["Users"], "notes": "Full backup completed successfully"},
        "created_at": _ts("2025-10-10 02:00:00"),
    },
    {
        "log_id": "log_2025_10_11_0300",
        "job_type": "restore",
        "job_id": "backup_2025_10_10_0200",
        "status": "failed",
        "details": {"tables": ["Users"], "notes": "Restore failed due to incomplete snapshot"},
        "created_at": _ts("2025-10-11 03:00:00"),
    },
)

#: DDS 13.13 (``created_by`` is resolved to the demo admin).
DEMO_CONTENT: Final[tuple[dict[str, Any], ...]] = (
    {
        "content_id": 1,
        "content_type_id": 1,
        "title": "How to Recharge Your Plan",
        "body": {"content": "Step-by-step guide to recharge your prepaid or postpaid plan..."},
        "updated_at": _ts("2025-10-10 10:00:00"),
    },
    {
        "content_id": 2,
        "content_type_id": 3,
        "title": "Terms of Service",
        "body": {"content": "Terms and conditions for using our telecom services..."},
        "updated_at": _ts("2025-10-10 10:00:00"),
    },
)
