"""The migrated PostgreSQL schema matches the DDS (sections 4.1, 5.1, 6.1, 8.1, 9.1).

The expectations below are written from the DDS (plus the documented GenCharge
extensions in docs/data-model.md), not from server/core/schema.py; a final test checks
that server/core/schema.py and the migrated database agree (alembic compare_metadata).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from server.core.dburl import to_async_url
from server.core.schema import metadata

# column name -> PostgreSQL udt_name. DDS columns first, then GenCharge extensions.
INT, VARCHAR, TEXT, BOOL, TSTZ = "int4", "varchar", "text", "bool", "timestamptz"
MONEY, BIGINT, JSONB, CHAR = "numeric", "int8", "jsonb", "bpchar"

_USER_COLUMNS = {
    "user_id": INT,
    "name": VARCHAR,
    "email": VARCHAR,
    "phone_number": VARCHAR,
    "referral_code": VARCHAR,
    "referred_by": VARCHAR,
    "user_type": "user_type_enum",
    "status": "user_status_enum",
    "wallet_balance": MONEY,
    "created_at": TSTZ,
    "updated_at": TSTZ,
    "role_id": INT,
    # extension
    "password_hash": TEXT,
    # migration 0009: verified contacts
    "email_verified_at": TSTZ,
    "phone_verified_at": TSTZ,
}

EXPECTED_COLUMNS: dict[str, dict[str, str]] = {
    "users": _USER_COLUMNS,
    "usersarchive": {**_USER_COLUMNS, "archived_at": TSTZ},
    "sessions": {
        "session_id": "uuid",
        "user_id": INT,
        "refresh_token": TEXT,
        "refresh_token_expires_at": TSTZ,
        "login_time": TSTZ,
        "last_active": TSTZ,
        "is_active": BOOL,
        "revoked_at": TSTZ,
        # migration 0004: admin sessions and session metadata
        "admin_id": INT,
        "user_agent": TEXT,
        "ip_address": TEXT,
        "revoked_reason": TEXT,
    },
    "admins": {
        "admin_id": INT,
        "name": VARCHAR,
        "email": VARCHAR,
        "phone_number": VARCHAR,
        "status": "admin_status_enum",
        "created_at": TSTZ,
        "updated_at": TSTZ,
        "role_id": INT,
        "password_hash": TEXT,
        "totp_secret": TEXT,
        "mfa_enabled": BOOL,
        "totp_last_step": "int8",
        # migration 0009: verified contacts
        "email_verified_at": TSTZ,
        "phone_verified_at": TSTZ,
    },
    # migration 0004: identity and access
    "session_rotated_tokens": {"token_hash": TEXT, "session_id": "uuid", "rotated_at": TSTZ},
    "service_accounts": {
        "service_account_id": INT,
        "client_id": VARCHAR,
        "name": VARCHAR,
        "secret_hash": TEXT,
        "role_id": INT,
        "status": "service_account_status_enum",
        "created_at": TSTZ,
        "created_by": INT,
        "last_used_at": TSTZ,
        # migration 0008: service-account scopes
        "scopes": "_text",
        # migration 0015: the account's description
        "description": TEXT,
        # migration 0017: the cut-off of its access tokens
        "tokens_valid_after": TSTZ,
    },
    "otp_codes": {
        "otp_id": "int8",
        "phone_number": VARCHAR,
        "purpose": VARCHAR,
        "code_hash": TEXT,
        "attempts": INT,
        "expires_at": TSTZ,
        "consumed_at": TSTZ,
        "created_at": TSTZ,
    },
    # migration 0009: codes that verify or change a contact
    "contact_codes": {
        "code_id": "int8",
        "user_id": INT,
        "admin_id": INT,
        "purpose": VARCHAR,
        "channel": VARCHAR,
        "destination": VARCHAR,
        "code_hash": TEXT,
        "attempts": INT,
        "expires_at": TSTZ,
        "consumed_at": TSTZ,
        "created_at": TSTZ,
    },
    "password_reset_tokens": {
        "token_hash": TEXT,
        "user_id": INT,
        "expires_at": TSTZ,
        "used_at": TSTZ,
        "created_at": TSTZ,
    },
    "mfa_challenges": {
        "challenge_hash": TEXT,
        "admin_id": INT,
        "enrolment": BOOL,
        "pending_secret": TEXT,
        "attempts": INT,
        "expires_at": TSTZ,
        "consumed_at": TSTZ,
        "user_agent": TEXT,
        "ip_address": TEXT,
        "created_at": TSTZ,
    },
    "auth_throttle": {
        "throttle_key": TEXT,
        "window_start": TSTZ,
        "failures": INT,
        "blocked_until": TSTZ,
        "updated_at": TSTZ,
    },
    "audit_outbox": {
        "outbox_id": "int8",
        "event": "jsonb",
        "created_at": TSTZ,
        "event_id": "uuid",
    },
    "roles": {"role_id": INT, "role_name": VARCHAR, "description": TEXT},
    "permissions": {
        "permission_id": INT,
        "resource": VARCHAR,
        "read": BOOL,
        "write": BOOL,
        "delete": BOOL,
        "edit": BOOL,
    },
    "rolepermissions": {"id": INT, "role_id": INT, "permission_id": INT},
    "transactions": {
        "txn_id": INT,
        "user_id": INT,
        "category": "txn_category_enum",
        "txn_type": "txn_type_enum",
        "amount": MONEY,
        "service_type": "user_type_enum",
        "plan_id": INT,
        "offer_id": INT,
        "from_phone_number": VARCHAR,
        "to_phone_number": VARCHAR,
        "source": "txn_source_enum",
        "status": "txn_status_enum",
        "payment_method": "payment_method_enum",
        "payment_transaction_id": VARCHAR,
        "created_at": TSTZ,
        "balance_after": MONEY,
        "currency": CHAR,
        # migration 0013
        "refund_of_txn_id": INT,
    },
    "plans": {
        "plan_id": INT,
        "plan_name": VARCHAR,
        "validity": INT,
        "most_popular": BOOL,
        "plan_type": "user_type_enum",
        "group_id": INT,
        "description": TEXT,
        "criteria": JSONB,
        "created_at": TSTZ,
        "created_by": INT,
        "status": "record_status_enum",
        "price": MONEY,
        "currency": CHAR,
        "data_mb": BIGINT,
        "data_mb_per_day": BIGINT,
        "unlimited_data": BOOL,
        "voice_minutes": INT,
        "unlimited_voice": BOOL,
        "sms_count": INT,
        "sms_per_day": INT,
        "talktime": MONEY,
        "extras": JSONB,
        "updated_at": TSTZ,
    },
    "offers": {
        "offer_id": INT,
        "offer_name": VARCHAR,
        "offer_validity": INT,
        "offer_type_id": INT,
        "is_special": BOOL,
        "criteria": JSONB,
        "description": TEXT,
        "created_at": TSTZ,
        "created_by": INT,
        "status": "record_status_enum",
        "discount_percent": MONEY,
        "discount_amount": MONEY,
        "cashback_percent": MONEY,
        "cashback_amount": MONEY,
        "max_benefit_amount": MONEY,
        "min_plan_price": MONEY,
        "bonus": JSONB,
        "valid_from": TSTZ,
        "valid_to": TSTZ,
        "updated_at": TSTZ,
    },
    "currentactiveplans": {
        "id": INT,
        "user_id": INT,
        "plan_id": INT,
        "phone_number": VARCHAR,
        "valid_from": TSTZ,
        "valid_to": TSTZ,
        "status": "active_plan_status_enum",
        "created_at": TSTZ,
    },
    "notifications": {
        "notification_id": INT,
        "sender_type": "sender_type_enum",
        "sender_id": INT,
        "description": TEXT,
        "recipient_type_id": INT,
        "recipient_id": INT,
        "status": "notification_status_enum",
        "type_id": INT,
        "attachments": JSONB,
        "timestamp": TSTZ,
    },
    "notificationrecipienttypes": {
        "recipient_type_id": INT,
        "recipient_type_name": VARCHAR,
        "description": TEXT,
    },
    "notificationtypes": {"type_id": INT, "type_name": VARCHAR, "description": TEXT},
    "referralrewards": {
        "reward_id": INT,
        "referrer_id": INT,
        "referred_id": INT,
        "reward_amount": MONEY,
        "status": "referral_status_enum",
        "created_at": TSTZ,
    },
    "autopay": {
        "autopay_id": INT,
        "user_id": INT,
        "plan_id": INT,
        "status": "autopay_status_enum",
        "tag": "autopay_tag_enum",
        "next_due_date": TSTZ,
        "created_at": TSTZ,
        # migration 0005
        "phone_number": VARCHAR,
        "updated_at": TSTZ,
        "last_run_at": TSTZ,
        "last_error": TEXT,
    },
    "billreminders": {
        "reminder_id": INT,
        "user_id": INT,
        "plan_id": INT,
        "due_date": TSTZ,
        "status": "reminder_status_enum",
        "sent_at": TSTZ,
        # migration 0005
        "amount": MONEY,
        "phone_number": VARCHAR,
        "paid_txn_id": INT,
    },
    "idempotency_keys": {
        "caller": TEXT,
        "request_id": TEXT,
        "rpc": TEXT,
        "request_hash": TEXT,
        "result": "jsonb",
        "created_at": TSTZ,
        "expires_at": TSTZ,
    },
    # migration 0011
    "payment_attempts": {
        "reference": TEXT,
        "kind": TEXT,
        "caller": TEXT,
        "request_id": TEXT,
        "rpc": TEXT,
        "request_hash": TEXT,
        "user_id": INT,
        "intent": "jsonb",
        "state": TEXT,
        "payment_id": TEXT,
        "txn_id": INT,
        "charges": INT,
        "checks": INT,
        "next_check_at": TSTZ,
        "last_error": TEXT,
        "created_at": TSTZ,
        "updated_at": TSTZ,
    },
    # migration 0013
    "wallet_adjustments": {
        "txn_id": INT,
        "user_id": INT,
        "requested_by": INT,
        "reason": TEXT,
        "status": TEXT,
        "decided_by": INT,
        "decided_at": TSTZ,
        "decision_note": TEXT,
        "created_at": TSTZ,
    },
    "plangroups": {"group_id": INT, "group_name": VARCHAR, "description": TEXT},
    "offertypes": {"offer_type_id": INT, "offer_type_name": VARCHAR, "description": TEXT},
    "backup": {
        "backup_id": VARCHAR,
        "backup_data": VARCHAR,
        "snapshot_name": VARCHAR,
        "source_db": VARCHAR,
        "storage_uri": VARCHAR,
        "backup_status": "backup_status_enum",
        "size_bytes": BIGINT,
        "description": VARCHAR,
        "details": JSONB,
        "created_at": TSTZ,
        "created_by": INT,
    },
    "schedule": {
        "schedule_id": VARCHAR,
        "backup_id": VARCHAR,
        "task_name": VARCHAR,
        "time": TSTZ,
        "next_run": TSTZ,
        "isactive": "schedule_status_enum",
        "created_at": TSTZ,
        "interval_seconds": INT,
        # migration 0016: cron schedules and restore drills
        "cron_expression": TEXT,
        "job": TEXT,
        "last_run_at": TSTZ,
    },
}

EXPECTED_PK: dict[str, list[str]] = {
    "users": ["user_id"],
    "usersarchive": ["user_id"],
    "sessions": ["session_id"],
    "admins": ["admin_id"],
    "roles": ["role_id"],
    "permissions": ["permission_id"],
    "rolepermissions": ["id"],
    "transactions": ["txn_id"],
    "plans": ["plan_id"],
    "offers": ["offer_id"],
    "currentactiveplans": ["id"],
    "notifications": ["notification_id"],
    "notificationrecipienttypes": ["recipient_type_id"],
    "notificationtypes": ["type_id"],
    "referralrewards": ["reward_id"],
    "autopay": ["autopay_id"],
    "billreminders": ["reminder_id"],
    "plangroups": ["group_id"],
    "offertypes": ["offer_type_id"],
    "backup": ["backup_id"],
    "schedule": ["schedule_id"],
}

# DDS 5.1: FK name -> (table, column, referenced table, referenced column)
EXPECTED_FKS: dict[str, tuple[str, str, str, str]] = {
    "fk_users_role": ("users", "role_id", "roles", "role_id"),
    "fk_users_referred_by": ("users", "referred_by", "users", "referral_code"),
    "fk_usersarchive_role": ("usersarchive", "role_id", "roles", "role_id"),
    "fk_usersarchive_referred_by": ("usersarchive", "referred_by", "users", "referral_code"),
    "fk_sessions_user": ("sessions", "user_id", "users", "user_id"),
    "fk_admins_role": ("admins", "role_id", "roles", "role_id"),
    "fk_rolepermissions_role": ("rolepermissions", "role_id", "roles", "role_id"),
    "fk_rolepermissions_permission": (
        "rolepermissions",
        "permission_id",
        "permissions",
        "permission_id",
    ),
    "fk_transactions_user": ("transactions", "user_id", "users", "user_id"),
    "fk_transactions_plan": ("transactions", "plan_id", "plans", "plan_id"),
    "fk_transactions_offer": ("transactions", "offer_id", "offers", "offer_id"),
    "fk_plans_group": ("plans", "group_id", "plangroups", "group_id"),
    "fk_plans_created_by": ("plans", "created_by", "admins", "admin_id"),
    "fk_offers_offer_type": ("offers", "offer_type_id", "offertypes", "offer_type_id"),
    "fk_offers_created_by": ("offers", "created_by", "admins", "admin_id"),
    "fk_currentactiveplans_user": ("currentactiveplans", "user_id", "users", "user_id"),
    "fk_currentactiveplans_plan": ("currentactiveplans", "plan_id", "plans", "plan_id"),
    "fk_notifications_sender": ("notifications", "sender_id", "admins", "admin_id"),
    "fk_notifications_recipient": ("notifications", "recipient_id", "users", "user_id"),
    "fk_notifications_recipient_type": (
        "notifications",
        "recipient_type_id",
        "notificationrecipienttypes",
        "recipient_type_id",
    ),
    "fk_notifications_type": ("notifications", "type_id", "notificationtypes", "type_id"),
    "fk_referralrewards_referrer": ("referralrewards", "referrer_id", "users", "user_id"),
    "fk_referralrewards_referred": ("referralrewards", "referred_id", "users", "user_id"),
    "fk_autopay_user": ("autopay", "user_id", "users", "user_id"),
    "fk_autopay_plan": ("autopay", "plan_id", "plans", "plan_id"),
    "fk_billreminders_user": ("billreminders", "user_id", "users", "user_id"),
    "fk_billreminders_plan": ("billreminders", "plan_id", "plans", "plan_id"),
    "fk_backup_created_by": ("backup", "created_by", "admins", "admin_id"),
    "fk_schedule_backup": ("schedule", "backup_id", "backup", "backup_id"),
}

# DDS 5.1 unique constraints (plus GenCharge's, marked) -> (table, columns)
EXPECTED_UNIQUE: dict[str, tuple[str, list[str]]] = {
    "uq_users_email": ("users", ["email"]),
    "uq_users_phone_number": ("users", ["phone_number"]),
    "uq_users_referral_code": ("users", ["referral_code"]),
    "uq_usersarchive_email": ("usersarchive", ["email"]),
    "uq_usersarchive_phone_number": ("usersarchive", ["phone_number"]),
    "uq_usersarchive_referral_code": ("usersarchive", ["referral_code"]),
    "uq_sessions_refresh_token": ("sessions", ["refresh_token"]),
    "uq_admins_email": ("admins", ["email"]),
    "uq_admins_phone_number": ("admins", ["phone_number"]),
    "uq_plangroups_group_name": ("plangroups", ["group_name"]),
    "uq_offertypes_offer_type_name": ("offertypes", ["offer_type_name"]),
    # GenCharge extensions
    "uq_roles_role_name": ("roles", ["role_name"]),
    "uq_rolepermissions_role_permission": ("rolepermissions", ["role_id", "permission_id"]),
    "uq_notificationrecipienttypes_recipient_type_name": (
        "notificationrecipienttypes",
        ["recipient_type_name"],
    ),
    "uq_notificationtypes_type_name": ("notificationtypes", ["type_name"]),
    "uq_referralrewards_referred_id": ("referralrewards", ["referred_id"]),
}

# DDS 9.1: index name -> (table, key as written in the index definition)
EXPECTED_INDEXES: dict[str, tuple[str, str]] = {
    "idx_users_email": ("users", "email"),
    "idx_users_phone_number": ("users", "phone_number"),
    "idx_users_referral_code": ("users", "referral_code"),
    "idx_users_role_id": ("users", "role_id"),
    "idx_usersarchive_email": ("usersarchive", "email"),
    "idx_usersarchive_phone_number": ("usersarchive", "phone_number"),
    "idx_usersarchive_referral_code": ("usersarchive", "referral_code"),
    "idx_sessions_refresh_token": ("sessions", "refresh_token"),
    "idx_sessions_user_id": ("sessions", "user_id"),
    "idx_sessions_refresh_token_expires_at": ("sessions", "refresh_token_expires_at"),
    "idx_admins_email": ("admins", "email"),
    "idx_admins_role_id": ("admins", "role_id"),
    "idx_rolepermissions_role_id": ("rolepermissions", "role_id"),
    "idx_rolepermissions_permission_id": ("rolepermissions", "permission_id"),
    "idx_transactions_user_id": ("transactions", "user_id"),
    "idx_transactions_plan_id": ("transactions", "plan_id"),
    "idx_transactions_offer_id": ("transactions", "offer_id"),
    "idx_transactions_created_at": ("transactions", "created_at DESC"),
    "idx_plans_group_id": ("plans", "group_id"),
    "idx_plans_status": ("plans", "status"),
    "idx_plans_plan_type": ("plans", "plan_type"),
    "idx_offers_offer_type_id": ("offers", "offer_type_id"),
    "idx_offers_status": ("offers", "status"),
    "idx_currentactiveplans_user_id": ("currentactiveplans", "user_id"),
    "idx_currentactiveplans_plan_id": ("currentactiveplans", "plan_id"),
    "idx_currentactiveplans_status": ("currentactiveplans", "status"),
    "idx_currentactiveplans_valid_to": ("currentactiveplans", "valid_to"),
    "idx_notifications_recipient_id": ("notifications", "recipient_id"),
    "idx_notifications_recipient_type_id": ("notifications", "recipient_type_id"),
    "idx_notifications_timestamp": ("notifications", '"timestamp" DESC'),
    "idx_referralrewards_referrer_id": ("referralrewards", "referrer_id"),
    "idx_referralrewards_referred_id": ("referralrewards", "referred_id"),
    "idx_referralrewards_status": ("referralrewards", "status"),
    "idx_backup_backup_status": ("backup", "backup_status"),
    "idx_backup_created_at": ("backup", "created_at DESC"),
    "idx_schedule_backup_id": ("schedule", "backup_id"),
    "idx_schedule_next_run": ("schedule", "next_run"),
    "idx_autopay_user_id": ("autopay", "user_id"),
    "idx_autopay_plan_id": ("autopay", "plan_id"),
    "idx_autopay_status": ("autopay", "status"),
    "idx_billreminders_user_id": ("billreminders", "user_id"),
    "idx_billreminders_due_date": ("billreminders", "due_date"),
    "idx_billreminders_status": ("billreminders", "status"),
    # GenCharge extensions
    "idx_currentactiveplans_phone_number_status": ("currentactiveplans", "phone_number, status"),
}

# DDS 6.1 views -> columns in order
EXPECTED_VIEWS: dict[str, list[str]] = {
    "user_permissions_v": [
        "user_id",
        "user_name",
        "role_name",
        "permission_name",
        "read",
        "write",
        "delete",
        "edit",
    ],
    "transaction_summary_v": [
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
    ],
    "active_plans_v": [
        "id",
        "user_id",
        "user_name",
        "plan_id",
        "plan_name",
        "phone_number",
        "valid_from",
        "valid_to",
        "plan_status",
    ],
}

# DDS 8.1 triggers -> (table, function, timing/events as pg_get_triggerdef prints them)
EXPECTED_TRIGGERS: dict[str, tuple[str, str, str]] = {
    "transaction_timestamp_trigger": (
        "transactions",
        "set_transaction_timestamp",
        "BEFORE INSERT",
    ),
    "wallet_balance_trigger": ("transactions", "update_wallet_balance", "BEFORE INSERT OR UPDATE"),
    "plan_expiry_trigger": ("currentactiveplans", "check_plan_expiry", "BEFORE INSERT OR UPDATE"),
    "notification_timestamp_trigger": (
        "notifications",
        "set_notification_timestamp",
        "BEFORE INSERT",
    ),
    "referral_reward_status_trigger": (
        "referralrewards",
        "set_referral_reward_status",
        "BEFORE INSERT",
    ),
}

EXPECTED_ENUMS: dict[str, list[str]] = {
    "user_type_enum": ["prepaid", "postpaid"],
    "user_status_enum": ["active", "blocked"],
    "admin_status_enum": ["active", "blocked", "deleted"],
    "txn_category_enum": ["wallet", "service"],
    "txn_type_enum": ["credit", "debit"],
    # DDS values, then 'cashback' and 'adjustment' (migration 0005)
    "txn_source_enum": [
        "recharge",
        "wallet_topup",
        "refund",
        "referral_reward",
        "autopay",
        "cashback",
        "adjustment",
    ],
    "txn_status_enum": ["success", "failed", "pending"],
    "payment_method_enum": ["UPI", "Card", "NetBanking", "Wallet"],
    "record_status_enum": ["active", "inactive"],
    "active_plan_status_enum": ["active", "expired", "queued"],
    "sender_type_enum": ["system", "admin"],
    "notification_status_enum": ["delivered", "viewed"],
    "referral_status_enum": ["pending", "earned", "paid"],
    "autopay_status_enum": ["enabled", "disabled"],
    "autopay_tag_enum": ["onetime", "regular"],
    "reminder_status_enum": ["pending", "sent", "paid"],
    # DDS values, then 'in_progress' (migration 0016)
    "backup_status_enum": ["failed", "success", "in_progress"],
    "schedule_status_enum": ["active", "inactive"],
}


@pytest.fixture
async def conn(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(pg_url)
    try:
        yield connection
    finally:
        await connection.close()


async def test_every_dds_table_exists(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
    )
    tables = {r["table_name"] for r in rows} - {"alembic_version"}
    # Other migrations (outbox, idempotency, ...) may add tables; all DDS tables exist.
    assert set(EXPECTED_COLUMNS) <= tables


@pytest.mark.parametrize("table", sorted(EXPECTED_COLUMNS))
async def test_table_columns(conn: asyncpg.Connection, table: str) -> None:
    rows = await conn.fetch(
        "SELECT column_name, udt_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = $1",
        table,
    )
    assert {r["column_name"]: r["udt_name"] for r in rows} == EXPECTED_COLUMNS[table]


async def test_money_columns_are_numeric_10_2(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch(
        "SELECT table_name, column_name, numeric_precision, numeric_scale "
        "FROM information_schema.columns WHERE table_schema = 'public' "
        "AND udt_name = 'numeric' AND table_name = ANY($1::text[])",
        list(EXPECTED_COLUMNS),
    )
    for r in rows:
        expected = (5, 2) if r["column_name"].endswith("_percent") else (10, 2)
        assert (r["numeric_precision"], r["numeric_scale"]) == expected, dict(r)


async def test_identity_primary_keys(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch(
        "SELECT table_name, column_name, identity_generation FROM information_schema.columns "
        "WHERE table_schema = 'public' AND is_identity = 'YES'"
    )
    identity = {(r["table_name"], r["column_name"]): r["identity_generation"] for r in rows}
    for table, pk in EXPECTED_PK.items():
        if table in {"usersarchive", "sessions", "backup", "schedule"}:
            assert (table, pk[0]) not in identity
        else:
            assert identity.get((table, pk[0])) == "BY DEFAULT", table


async def test_not_null_and_defaults(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch(
        "SELECT table_name, column_name, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_schema = 'public'"
    )
    cols = {(r["table_name"], r["column_name"]): r for r in rows}
    for key in [
        ("users", "user_type"),
        ("users", "status"),
        ("users", "wallet_balance"),
        ("sessions", "refresh_token"),
        ("sessions", "refresh_token_expires_at"),
        ("transactions", "user_id"),
        ("transactions", "amount"),
        ("plans", "price"),
        ("admins", "mfa_enabled"),
    ]:
        assert cols[key]["is_nullable"] == "NO", key
    assert cols[("users", "password_hash")]["is_nullable"] == "YES"
    assert cols[("users", "wallet_balance")]["column_default"] == "0"
    assert "'active'" in cols[("users", "status")]["column_default"]
    assert cols[("sessions", "session_id")]["column_default"] == "gen_random_uuid()"
    assert cols[("sessions", "is_active")]["column_default"] == "true"
    assert "'INR'" in cols[("plans", "currency")]["column_default"]
    assert "'INR'" in cols[("transactions", "currency")]["column_default"]


@pytest.mark.parametrize("table", sorted(EXPECTED_PK))
async def test_primary_key(conn: asyncpg.Connection, table: str) -> None:
    rows = await conn.fetch(
        """
        SELECT a.attname
        FROM pg_constraint c
        JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, n) ON true
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
        WHERE c.contype = 'p' AND c.conrelid = $1::regclass
        ORDER BY k.n
        """,
        table,
    )
    assert [r["attname"] for r in rows] == EXPECTED_PK[table]


async def test_foreign_keys(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch(
        """
        SELECT c.conname, c.conrelid::regclass::text AS tbl, a.attname AS col,
               c.confrelid::regclass::text AS ref_tbl, fa.attname AS ref_col,
               c.confdeltype::text AS confdeltype
        FROM pg_constraint c
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        JOIN pg_attribute fa ON fa.attrelid = c.confrelid AND fa.attnum = c.confkey[1]
        WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
        """
    )
    found = {r["conname"]: (r["tbl"], r["col"], r["ref_tbl"], r["ref_col"]) for r in rows}
    for name, expected in EXPECTED_FKS.items():
        assert found.get(name) == expected, name
    on_delete = {r["conname"]: r["confdeltype"] for r in rows}
    assert on_delete["fk_sessions_user"] == "c"  # DDS: ON DELETE CASCADE


async def test_unique_constraints(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch(
        """
        SELECT c.conname, c.conrelid::regclass::text AS tbl,
               array_agg(a.attname ORDER BY k.n) AS cols
        FROM pg_constraint c
        JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, n) ON true
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
        WHERE c.contype = 'u' AND c.connamespace = 'public'::regnamespace
        GROUP BY c.conname, c.conrelid
        """
    )
    found = {r["conname"]: (r["tbl"], list(r["cols"])) for r in rows}
    for name, expected in EXPECTED_UNIQUE.items():
        assert found.get(name) == expected, name


async def test_check_constraints(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch(
        "SELECT conname, conrelid::regclass::text AS tbl FROM pg_constraint "
        "WHERE contype = 'c' AND connamespace = 'public'::regnamespace"
    )
    found = {r["conname"]: r["tbl"] for r in rows}
    assert found["ck_users_wallet_balance_nonnegative"] == "users"
    assert found["ck_usersarchive_wallet_balance_nonnegative"] == "usersarchive"
    assert found["ck_plans_price_nonnegative"] == "plans"
    assert found["ck_plans_validity_positive"] == "plans"
    assert found["ck_transactions_amount_positive"] == "transactions"


async def test_dds_indexes(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch(
        "SELECT indexname, tablename, indexdef FROM pg_indexes WHERE schemaname = 'public'"
    )
    found = {r["indexname"]: (r["tablename"], r["indexdef"]) for r in rows}
    for name, (table, key) in EXPECTED_INDEXES.items():
        assert name in found, name
        tbl, indexdef = found[name]
        assert tbl == table, name
        assert indexdef.endswith(f"USING btree ({key})"), indexdef
        assert "UNIQUE" not in indexdef


async def test_payment_transaction_id_partial_unique_index(conn: asyncpg.Connection) -> None:
    indexdef = await conn.fetchval(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_transactions_payment_transaction_id'"
    )
    assert indexdef.startswith("CREATE UNIQUE INDEX")
    assert "(payment_transaction_id)" in indexdef
    assert "WHERE (payment_transaction_id IS NOT NULL)" in indexdef


@pytest.mark.parametrize("view", sorted(EXPECTED_VIEWS))
async def test_views(conn: asyncpg.Connection, view: str) -> None:
    rows = await conn.fetch(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
        view,
    )
    assert [r["column_name"] for r in rows] == EXPECTED_VIEWS[view]
    await conn.fetch(f"SELECT * FROM {view} LIMIT 1")


async def test_views_return_rows(conn: asyncpg.Connection) -> None:
    role_id = await conn.fetchval(
        "INSERT INTO roles (role_name) VALUES ('view-test-role') RETURNING role_id"
    )
    perm_id = await conn.fetchval(
        "INSERT INTO permissions (resource, read) VALUES ('ViewTest', true) RETURNING permission_id"
    )
    await conn.execute(
        "INSERT INTO rolepermissions (role_id, permission_id) VALUES ($1, $2)", role_id, perm_id
    )
    user_id = await conn.fetchval(
        "INSERT INTO users (name, user_type, role_id) VALUES ('Viewer', 'prepaid', $1) "
        "RETURNING user_id",
        role_id,
    )
    plan_id = await conn.fetchval(
        "INSERT INTO plans (plan_name, validity, plan_type, price) "
        "VALUES ('View plan', 28, 'prepaid', 199) RETURNING plan_id"
    )
    await conn.execute(
        "INSERT INTO transactions (user_id, category, txn_type, amount, plan_id, status) "
        "VALUES ($1, 'service', 'debit', 199, $2, 'success')",
        user_id,
        plan_id,
    )
    await conn.execute(
        "INSERT INTO currentactiveplans (user_id, plan_id, phone_number, valid_from, valid_to) "
        "VALUES ($1, $2, '9000000001', now(), now() + interval '28 days'), "
        "($1, $2, '9000000001', now() - interval '30 days', now() - interval '2 days')",
        user_id,
        plan_id,
    )
    perms = await conn.fetch("SELECT * FROM user_permissions_v WHERE user_id = $1", user_id)
    assert [(r["role_name"], r["permission_name"], r["read"], r["write"]) for r in perms] == [
        ("view-test-role", "ViewTest", True, False)
    ]
    summary = await conn.fetch("SELECT * FROM transaction_summary_v WHERE user_id = $1", user_id)
    assert [(r["plan_name"], r["transaction_status"]) for r in summary] == [
        ("View plan", "success")
    ]
    active = await conn.fetch("SELECT * FROM active_plans_v WHERE user_id = $1", user_id)
    assert [(r["plan_name"], r["plan_status"]) for r in active] == [("View plan", "active")]


async def test_triggers(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch(
        """
        SELECT t.tgname, t.tgrelid::regclass::text AS tbl, p.proname,
               pg_get_triggerdef(t.oid) AS def
        FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
        WHERE NOT t.tgisinternal
        """
    )
    found = {r["tgname"]: r for r in rows}
    for name, (table, function, timing) in EXPECTED_TRIGGERS.items():
        assert name in found, name
        assert found[name]["tbl"] == table
        assert found[name]["proname"] == function
        assert f"TRIGGER {name} {timing} ON public.{table} FOR EACH ROW" in found[name]["def"]
    # One trigger per purpose: the DDS 7.1 duplicates are not created.
    for duplicate in (
        "trigger_set_transaction_timestamp",
        "trigger_update_wallet_balance",
        "trigger_check_plan_expiry",
    ):
        assert duplicate not in found


async def test_enum_types(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch(
        "SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder) AS labels "
        "FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid GROUP BY t.typname"
    )
    found = {r["typname"]: list(r["labels"]) for r in rows}
    for name, labels in EXPECTED_ENUMS.items():
        assert found.get(name) == labels, name


def _compare(connection: Connection) -> list[object]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    dds_tables = set(EXPECTED_COLUMNS)
    diffs = compare_metadata(context, metadata)

    def concerns_dds_table(diff: object) -> bool:
        # Tables other migrations own (not in server/core/schema.py) are not ours to compare.
        item = diff[0] if isinstance(diff, list) else diff
        assert isinstance(item, tuple)
        if item[0] == "remove_table":
            return item[1].name in dds_tables
        return True

    return [d for d in diffs if concerns_dds_table(d)]


async def test_core_tables_match_migrated_database(pg_url: str) -> None:
    engine = create_async_engine(to_async_url(pg_url))
    try:
        async with engine.connect() as connection:
            diffs = await connection.run_sync(_compare)
    finally:
        await engine.dispose()
    assert diffs == []


def test_core_tables_cover_every_dds_table() -> None:
    assert set(EXPECTED_COLUMNS) <= set(metadata.tables)
    for table, columns in EXPECTED_COLUMNS.items():
        assert set(metadata.tables[table].c.keys()) == set(columns), table


async def test_core_enums_and_checks_match_database(conn: asyncpg.Connection) -> None:
    """What compare_metadata does not compare: enum labels and CHECK constraint names."""
    from sqlalchemy import CheckConstraint

    from server.core.schema import ENUM_TYPES

    rows = await conn.fetch(
        "SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder) AS labels "
        "FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid GROUP BY t.typname"
    )
    in_db = {r["typname"]: list(r["labels"]) for r in rows}
    assert {e.name: list(e.enums) for e in ENUM_TYPES} == {
        name: in_db[name] for name in EXPECTED_ENUMS
    }

    rows = await conn.fetch(
        "SELECT conname FROM pg_constraint WHERE contype = 'c' "
        "AND conrelid::regclass::text = ANY($1::text[])",
        list(EXPECTED_COLUMNS),
    )
    in_metadata = {
        c.name
        for table in EXPECTED_COLUMNS
        for c in metadata.tables[table].constraints
        if isinstance(c, CheckConstraint)
    }
    assert in_metadata == {r["conname"] for r in rows}
