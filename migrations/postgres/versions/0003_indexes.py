"""Indexes of DDS 9.1 (names as in the DDS) plus GenCharge's own.

Some DDS indexes duplicate the index behind a UNIQUE constraint (e.g.
idx_users_email vs uq_users_email); they are created anyway because the DDS lists
them (see docs/data-model.md).

Revision ID: 0003_indexes
Revises: 0002_views_triggers
Create Date: 2025-11-10
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003_indexes"
down_revision: str | None = "0002_views_triggers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (index name, table, column list, extra clause)
INDEXES: list[tuple[str, str, str, str]] = [
    # DDS 9.1
    ("idx_users_email", "users", "email", ""),
    ("idx_users_phone_number", "users", "phone_number", ""),
    ("idx_users_referral_code", "users", "referral_code", ""),
    ("idx_users_role_id", "users", "role_id", ""),
    ("idx_usersarchive_email", "usersarchive", "email", ""),
    ("idx_usersarchive_phone_number", "usersarchive", "phone_number", ""),
    ("idx_usersarchive_referral_code", "usersarchive", "referral_code", ""),
    ("idx_sessions_refresh_token", "sessions", "refresh_token", ""),
    ("idx_sessions_user_id", "sessions", "user_id", ""),
    ("idx_sessions_refresh_token_expires_at", "sessions", "refresh_token_expires_at", ""),
    ("idx_admins_email", "admins", "email", ""),
    ("idx_admins_role_id", "admins", "role_id", ""),
    ("idx_rolepermissions_role_id", "rolepermissions", "role_id", ""),
    ("idx_rolepermissions_permission_id", "rolepermissions", "permission_id", ""),
    ("idx_transactions_user_id", "transactions", "user_id", ""),
    ("idx_transactions_plan_id", "transactions", "plan_id", ""),
    ("idx_transactions_offer_id", "transactions", "offer_id", ""),
    ("idx_transactions_created_at", "transactions", "created_at DESC", ""),
    ("idx_plans_group_id", "plans", "group_id", ""),
    ("idx_plans_status", "plans", "status", ""),
    ("idx_plans_plan_type", "plans", "plan_type", ""),
    ("idx_offers_offer_type_id", "offers", "offer_type_id", ""),
    ("idx_offers_status", "offers", "status", ""),
    ("idx_currentactiveplans_user_id", "currentactiveplans", "user_id", ""),
    ("idx_currentactiveplans_plan_id", "currentactiveplans", "plan_id", ""),
    ("idx_currentactiveplans_status", "currentactiveplans", "status", ""),
    ("idx_currentactiveplans_valid_to", "currentactiveplans", "valid_to", ""),
    ("idx_notifications_recipient_id", "notifications", "recipient_id", ""),
    ("idx_notifications_recipient_type_id", "notifications", "recipient_type_id", ""),
    ("idx_notifications_timestamp", "notifications", "timestamp DESC", ""),
    ("idx_referralrewards_referrer_id", "referralrewards", "referrer_id", ""),
    ("idx_referralrewards_referred_id", "referralrewards", "referred_id", ""),
    ("idx_referralrewards_status", "referralrewards", "status", ""),
    ("idx_backup_backup_status", "backup", "backup_status", ""),
    ("idx_backup_created_at", "backup", "created_at DESC", ""),
    ("idx_schedule_backup_id", "schedule", "backup_id", ""),
    ("idx_schedule_next_run", "schedule", "next_run", ""),
    ("idx_autopay_user_id", "autopay", "user_id", ""),
    ("idx_autopay_plan_id", "autopay", "plan_id", ""),
    ("idx_autopay_status", "autopay", "status", ""),
    ("idx_billreminders_user_id", "billreminders", "user_id", ""),
    ("idx_billreminders_due_date", "billreminders", "due_date", ""),
    ("idx_billreminders_status", "billreminders", "status", ""),
    # GenCharge additions
    (
        "idx_currentactiveplans_phone_number_status",
        "currentactiveplans",
        "phone_number, status",
        "",
    ),
]

UNIQUE_INDEXES: list[tuple[str, str, str, str]] = [
    # Idempotent payment-gateway callbacks: one ledger row per gateway transaction.
    (
        "uq_transactions_payment_transaction_id",
        "transactions",
        "payment_transaction_id",
        "WHERE payment_transaction_id IS NOT NULL",
    ),
]


def upgrade() -> None:
    for name, table, columns, extra in INDEXES:
        op.execute(f"CREATE INDEX {name} ON {table} ({columns}) {extra}")
    for name, table, columns, extra in UNIQUE_INDEXES:
        op.execute(f"CREATE UNIQUE INDEX {name} ON {table} ({columns}) {extra}")


def downgrade() -> None:
    for name, *_rest in reversed(UNIQUE_INDEXES + INDEXES):
        op.execute(f"DROP INDEX {name}")
