"""SQLAlchemy Core description of the PostgreSQL schema (for queries, not DDL).

The schema itself is created by the Alembic migrations in ``migrations/postgres``;
these ``Table`` objects mirror it column for column (names, types, nullability,
keys, indexes) and a test compares them with a migrated database so they never
drift. Enum types are created by the migrations, hence ``create_type=False``.
See docs/data-model.md for the table-by-table description.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, CHAR, ENUM, JSONB, UUID

metadata = MetaData()

# --- enum types -----------------------------------------------------------------


def _enum(name: str, *labels: str) -> ENUM:
    return ENUM(*labels, name=name, create_type=False)


user_type_enum = _enum("user_type_enum", "prepaid", "postpaid")
user_status_enum = _enum("user_status_enum", "active", "blocked")
admin_status_enum = _enum("admin_status_enum", "active", "blocked", "deleted")
txn_category_enum = _enum("txn_category_enum", "wallet", "service")
txn_type_enum = _enum("txn_type_enum", "credit", "debit")
txn_source_enum = _enum(
    "txn_source_enum",
    "recharge",
    "wallet_topup",
    "refund",
    "referral_reward",
    "autopay",
    # migration 0005
    "cashback",
    "adjustment",
)
txn_status_enum = _enum("txn_status_enum", "success", "failed", "pending")
payment_method_enum = _enum("payment_method_enum", "UPI", "Card", "NetBanking", "Wallet")
record_status_enum = _enum("record_status_enum", "active", "inactive")
active_plan_status_enum = _enum("active_plan_status_enum", "active", "expired", "queued")
sender_type_enum = _enum("sender_type_enum", "system", "admin")
notification_status_enum = _enum("notification_status_enum", "delivered", "viewed")
referral_status_enum = _enum("referral_status_enum", "pending", "earned", "paid")
autopay_status_enum = _enum("autopay_status_enum", "enabled", "disabled")
autopay_tag_enum = _enum("autopay_tag_enum", "onetime", "regular")
reminder_status_enum = _enum("reminder_status_enum", "pending", "sent", "paid")
# 'in_progress': migration 0016 (a backup whose job is still running)
backup_status_enum = _enum("backup_status_enum", "failed", "success", "in_progress")
schedule_status_enum = _enum("schedule_status_enum", "active", "inactive")

ENUM_TYPES: tuple[ENUM, ...] = (
    user_type_enum,
    user_status_enum,
    admin_status_enum,
    txn_category_enum,
    txn_type_enum,
    txn_source_enum,
    txn_status_enum,
    payment_method_enum,
    record_status_enum,
    active_plan_status_enum,
    sender_type_enum,
    notification_status_enum,
    referral_status_enum,
    autopay_status_enum,
    autopay_tag_enum,
    reminder_status_enum,
    backup_status_enum,
    schedule_status_enum,
)

# --- helpers ----------------------------------------------------------------------

Money = Numeric(10, 2)
Percent = Numeric(5, 2)
TimestampTZ = DateTime(timezone=True)
NOW = text("now()")
FALSE = text("false")

# SQLSTATEs raised by the wallet trigger (update_wallet_balance).
SQLSTATE_INSUFFICIENT_BALANCE = "GC001"
SQLSTATE_LEDGER_ROW_FINAL = "GC002"


def _id(name: str) -> Column[int]:
    return Column(name, Integer, Identity(always=False), nullable=False)


def _created_at(name: str = "created_at") -> Column[object]:
    return Column(name, TimestampTZ, nullable=False, server_default=NOW)


# --- lookup / RBAC tables -----------------------------------------------------------

roles = Table(
    "roles",
    metadata,
    _id("role_id"),
    Column("role_name", String, nullable=False),
    Column("description", Text),
    PrimaryKeyConstraint("role_id", name="roles_pkey"),
    UniqueConstraint("role_name", name="uq_roles_role_name"),
)

permissions = Table(
    "permissions",
    metadata,
    _id("permission_id"),
    Column("resource", String, nullable=False),
    Column("read", Boolean, nullable=False, server_default=FALSE),
    Column("write", Boolean, nullable=False, server_default=FALSE),
    Column("delete", Boolean, nullable=False, server_default=FALSE),
    Column("edit", Boolean, nullable=False, server_default=FALSE),
    PrimaryKeyConstraint("permission_id", name="permissions_pkey"),
)

rolepermissions = Table(
    "rolepermissions",
    metadata,
    _id("id"),
    Column(
        "role_id",
        Integer,
        ForeignKey("roles.role_id", name="fk_rolepermissions_role"),
        nullable=False,
    ),
    Column(
        "permission_id",
        Integer,
        ForeignKey("permissions.permission_id", name="fk_rolepermissions_permission"),
        nullable=False,
    ),
    PrimaryKeyConstraint("id", name="rolepermissions_pkey"),
    UniqueConstraint("role_id", "permission_id", name="uq_rolepermissions_role_permission"),
    Index("idx_rolepermissions_role_id", "role_id"),
    Index("idx_rolepermissions_permission_id", "permission_id"),
)

plangroups = Table(
    "plangroups",
    metadata,
    _id("group_id"),
    Column("group_name", String, nullable=False),
    Column("description", Text),
    PrimaryKeyConstraint("group_id", name="plangroups_pkey"),
    UniqueConstraint("group_name", name="uq_plangroups_group_name"),
)

offertypes = Table(
    "offertypes",
    metadata,
    _id("offer_type_id"),
    Column("offer_type_name", String, nullable=False),
    Column("description", Text),
    PrimaryKeyConstraint("offer_type_id", name="offertypes_pkey"),
    UniqueConstraint("offer_type_name", name="uq_offertypes_offer_type_name"),
)

notificationrecipienttypes = Table(
    "notificationrecipienttypes",
    metadata,
    _id("recipient_type_id"),
    Column("recipient_type_name", String, nullable=False),
    Column("description", Text),
    PrimaryKeyConstraint("recipient_type_id", name="notificationrecipienttypes_pkey"),
    UniqueConstraint(
        "recipient_type_name", name="uq_notificationrecipienttypes_recipient_type_name"
    ),
)

notificationtypes = Table(
    "notificationtypes",
    metadata,
    _id("type_id"),
    Column("type_name", String, nullable=False),
    Column("description", Text),
    PrimaryKeyConstraint("type_id", name="notificationtypes_pkey"),
    UniqueConstraint("type_name", name="uq_notificationtypes_type_name"),
)

# --- accounts -------------------------------------------------------------------------

admins = Table(
    "admins",
    metadata,
    _id("admin_id"),
    Column("name", String),
    Column("email", String),
    Column("phone_number", String),
    Column("status", admin_status_enum, nullable=False, server_default=text("'active'")),
    _created_at(),
    _created_at("updated_at"),
    Column("role_id", Integer, ForeignKey("roles.role_id", name="fk_admins_role")),
    Column("password_hash", Text),
    Column("totp_secret", Text),
    Column("mfa_enabled", Boolean, nullable=False, server_default=FALSE),
    #: Last TOTP time step accepted, so a code cannot be replayed (migration 0004).
    Column("totp_last_step", BigInteger),
    #: When the account last proved it holds its e-mail / phone (migration 0009); NULL =
    #: never. A trigger clears them when the contact changes without being verified.
    Column("email_verified_at", TimestampTZ),
    Column("phone_verified_at", TimestampTZ),
    PrimaryKeyConstraint("admin_id", name="admins_pkey"),
    UniqueConstraint("email", name="uq_admins_email"),
    UniqueConstraint("phone_number", name="uq_admins_phone_number"),
    Index("idx_admins_email", "email"),
    Index("idx_admins_role_id", "role_id"),
)

users = Table(
    "users",
    metadata,
    _id("user_id"),
    Column("name", String),
    Column("email", String),
    Column("phone_number", String),
    Column("referral_code", String),
    Column(
        "referred_by",
        String,
        ForeignKey("users.referral_code", name="fk_users_referred_by"),
    ),
    Column("user_type", user_type_enum, nullable=False),
    Column("status", user_status_enum, nullable=False, server_default=text("'active'")),
    Column("wallet_balance", Money, nullable=False, server_default=text("0")),
    _created_at(),
    _created_at("updated_at"),
    Column("role_id", Integer, ForeignKey("roles.role_id", name="fk_users_role")),
    Column("password_hash", Text),
    #: When the customer last proved they hold their e-mail / phone (migration 0009);
    #: NULL = never: no OTP login or password reset through that contact. A trigger
    #: clears them when the contact changes without being verified.
    Column("email_verified_at", TimestampTZ),
    Column("phone_verified_at", TimestampTZ),
    PrimaryKeyConstraint("user_id", name="users_pkey"),
    UniqueConstraint("email", name="uq_users_email"),
    UniqueConstraint("phone_number", name="uq_users_phone_number"),
    UniqueConstraint("referral_code", name="uq_users_referral_code"),
    CheckConstraint("wallet_balance >= 0", name="ck_users_wallet_balance_nonnegative"),
    Index("idx_users_email", "email"),
    Index("idx_users_phone_number", "phone_number"),
    Index("idx_users_referral_code", "referral_code"),
    Index("idx_users_role_id", "role_id"),
    # migration 0013: GetDashboardStats
    Index("idx_users_created_at", "created_at"),
)

usersarchive = Table(
    "usersarchive",
    metadata,
    Column("user_id", Integer, nullable=False),
    Column("name", String),
    Column("email", String),
    Column("phone_number", String),
    Column("referral_code", String),
    Column(
        "referred_by",
        String,
        ForeignKey("users.referral_code", name="fk_usersarchive_referred_by"),
    ),
    Column("user_type", user_type_enum, nullable=False),
    Column("status", user_status_enum, nullable=False, server_default=text("'active'")),
    Column("wallet_balance", Money, nullable=False, server_default=text("0")),
    Column("created_at", TimestampTZ),
    Column("updated_at", TimestampTZ),
    Column("role_id", Integer, ForeignKey("roles.role_id", name="fk_usersarchive_role")),
    Column("password_hash", Text),
    _created_at("archived_at"),
    Column("email_verified_at", TimestampTZ),
    Column("phone_verified_at", TimestampTZ),
    PrimaryKeyConstraint("user_id", name="usersarchive_pkey"),
    UniqueConstraint("email", name="uq_usersarchive_email"),
    UniqueConstraint("phone_number", name="uq_usersarchive_phone_number"),
    UniqueConstraint("referral_code", name="uq_usersarchive_referral_code"),
    CheckConstraint("wallet_balance >= 0", name="ck_usersarchive_wallet_balance_nonnegative"),
    Index("idx_usersarchive_email", "email"),
    Index("idx_usersarchive_phone_number", "phone_number"),
    Index("idx_usersarchive_referral_code", "referral_code"),
)

sessions = Table(
    "sessions",
    metadata,
    Column(
        "session_id",
        UUID(as_uuid=True),
        nullable=False,
        server_default=text("gen_random_uuid()"),
    ),
    # Exactly one of user_id / admin_id (migration 0004): sessions serve both.
    Column(
        "user_id",
        Integer,
        ForeignKey("users.user_id", name="fk_sessions_user", ondelete="CASCADE"),
    ),
    #: SHA-256 (hex) of the current refresh token; the token itself is never stored.
    Column("refresh_token", Text, nullable=False),
    Column("refresh_token_expires_at", TimestampTZ, nullable=False),
    _created_at("login_time"),
    _created_at("last_active"),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    Column("revoked_at", TimestampTZ),
    Column(
        "admin_id",
        Integer,
        ForeignKey("admins.admin_id", name="fk_sessions_admin", ondelete="CASCADE"),
    ),
    Column("user_agent", Text),
    Column("ip_address", Text),
    Column("revoked_reason", Text),
    PrimaryKeyConstraint("session_id", name="sessions_pkey"),
    UniqueConstraint("refresh_token", name="uq_sessions_refresh_token"),
    CheckConstraint("num_nonnulls(user_id, admin_id) = 1", name="ck_sessions_one_principal"),
    Index("idx_sessions_refresh_token", "refresh_token"),
    Index("idx_sessions_user_id", "user_id"),
    Index("idx_sessions_refresh_token_expires_at", "refresh_token_expires_at"),
    Index("idx_sessions_admin_id", "admin_id"),
)

session_rotated_tokens = Table(
    "session_rotated_tokens",
    metadata,
    Column("token_hash", Text, primary_key=True),
    Column(
        "session_id",
        UUID(as_uuid=True),
        ForeignKey(
            "sessions.session_id", name="fk_session_rotated_tokens_session", ondelete="CASCADE"
        ),
        nullable=False,
    ),
    _created_at("rotated_at"),
    Index("idx_session_rotated_tokens_session_id", "session_id"),
)

service_account_status_enum = _enum("service_account_status_enum", "active", "disabled")

service_accounts = Table(
    "service_accounts",
    metadata,
    _id("service_account_id"),
    Column("client_id", String, nullable=False),
    Column("name", String, nullable=False),
    #: What the caller is, for operators; migration 0015.
    Column("description", Text),
    #: argon2id hash of the client secret.
    Column("secret_hash", Text, nullable=False),
    Column(
        "role_id",
        Integer,
        ForeignKey("roles.role_id", name="fk_service_accounts_role"),
        nullable=False,
    ),
    Column("status", service_account_status_enum, nullable=False, server_default=text("'active'")),
    _created_at(),
    Column(
        "created_by", Integer, ForeignKey("admins.admin_id", name="fk_service_accounts_created_by")
    ),
    Column("last_used_at", TimestampTZ),
    #: What the account may do as a service (server/auth/scopes.py); migration 0008.
    Column("scopes", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    #: Access tokens issued (``iat``, whole seconds) before this moment's second are
    #: refused; NULL: no cut-off. Set by a restore (retire_service_tokens); migration 0017.
    Column("tokens_valid_after", TimestampTZ),
    PrimaryKeyConstraint("service_account_id", name="service_accounts_pkey"),
    UniqueConstraint("client_id", name="uq_service_accounts_client_id"),
)

otp_codes = Table(
    "otp_codes",
    metadata,
    Column("otp_id", BigInteger, Identity(always=False), nullable=False),
    Column("phone_number", String, nullable=False),
    Column("purpose", String, nullable=False, server_default=text("'login'")),
    #: SHA-256 (hex) of the code, keyed with the row's phone number and purpose.
    Column("code_hash", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("expires_at", TimestampTZ, nullable=False),
    Column("consumed_at", TimestampTZ),
    _created_at(),
    PrimaryKeyConstraint("otp_id", name="otp_codes_pkey"),
    CheckConstraint("attempts >= 0", name="ck_otp_codes_attempts_nonnegative"),
    Index("idx_otp_codes_phone_created", "phone_number", text("created_at DESC")),
    Index("idx_otp_codes_expires_at", "expires_at"),
)

contact_codes = Table(
    "contact_codes",
    metadata,
    Column("code_id", BigInteger, Identity(always=False), nullable=False),
    # Exactly one of user_id / admin_id: whose contact it is.
    Column(
        "user_id",
        Integer,
        ForeignKey("users.user_id", name="fk_contact_codes_user", ondelete="CASCADE"),
    ),
    Column(
        "admin_id",
        Integer,
        ForeignKey("admins.admin_id", name="fk_contact_codes_admin", ondelete="CASCADE"),
    ),
    #: "contact_proof" (sent to a current contact) or "contact_change" (sent to the new
    #: contact of a pending change).
    Column("purpose", String, nullable=False),
    #: "email" or "phone".
    Column("channel", String, nullable=False),
    #: Where the code was sent (normalised); for a change, the contact it will become.
    Column("destination", String, nullable=False),
    #: HMAC-SHA256 (hex) of the code, keyed with the OTP pepper and bound to the row.
    Column("code_hash", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("expires_at", TimestampTZ, nullable=False),
    Column("consumed_at", TimestampTZ),
    _created_at(),
    PrimaryKeyConstraint("code_id", name="contact_codes_pkey"),
    CheckConstraint("num_nonnulls(user_id, admin_id) = 1", name="ck_contact_codes_one_owner"),
    CheckConstraint(
        "purpose IN ('contact_proof', 'contact_change')", name="ck_contact_codes_purpose"
    ),
    CheckConstraint("channel IN ('email', 'phone')", name="ck_contact_codes_channel"),
    CheckConstraint("attempts >= 0", name="ck_contact_codes_attempts_nonnegative"),
    Index("idx_contact_codes_user_id", "user_id", text("created_at DESC")),
    Index("idx_contact_codes_admin_id", "admin_id", text("created_at DESC")),
    Index("idx_contact_codes_expires_at", "expires_at"),
)

password_reset_tokens = Table(
    "password_reset_tokens",
    metadata,
    Column("token_hash", Text, primary_key=True),
    Column(
        "user_id",
        Integer,
        ForeignKey("users.user_id", name="fk_password_reset_tokens_user", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("expires_at", TimestampTZ, nullable=False),
    Column("used_at", TimestampTZ),
    _created_at(),
    Index("idx_password_reset_tokens_user_id", "user_id"),
)

mfa_challenges = Table(
    "mfa_challenges",
    metadata,
    Column("challenge_hash", Text, primary_key=True),
    Column(
        "admin_id",
        Integer,
        ForeignKey("admins.admin_id", name="fk_mfa_challenges_admin", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("enrolment", Boolean, nullable=False, server_default=FALSE),
    #: Encrypted TOTP secret offered during enrolment, until a code confirms it.
    Column("pending_secret", Text),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("expires_at", TimestampTZ, nullable=False),
    Column("consumed_at", TimestampTZ),
    Column("user_agent", Text),
    Column("ip_address", Text),
    _created_at(),
    Index("idx_mfa_challenges_admin_id", "admin_id"),
)

auth_throttle = Table(
    "auth_throttle",
    metadata,
    Column("throttle_key", Text, primary_key=True),
    Column("window_start", TimestampTZ, nullable=False),
    Column("failures", Integer, nullable=False, server_default=text("0")),
    Column("blocked_until", TimestampTZ),
    _created_at("updated_at"),
    Index("idx_auth_throttle_updated_at", "updated_at"),
)

audit_outbox = Table(
    "audit_outbox",
    metadata,
    # The order batches are taken in; not unique (a sequence can go back: migration 0010).
    Column("outbox_id", BigInteger, Identity(always=False), nullable=False),
    Column("event", JSONB, nullable=False),
    _created_at(),
    # Drawn by the database when the row is written; shipped as AuditLog.audit_id.
    Column(
        "event_id", UUID(as_uuid=True), nullable=False, server_default=text("gen_random_uuid()")
    ),
    PrimaryKeyConstraint("event_id", name="audit_outbox_pkey"),
    Index("idx_audit_outbox_outbox_id", "outbox_id"),
)

# --- catalogue ------------------------------------------------------------------------

plans = Table(
    "plans",
    metadata,
    _id("plan_id"),
    Column("plan_name", String, nullable=False),
    Column("validity", Integer, nullable=False),
    Column("most_popular", Boolean, nullable=False, server_default=FALSE),
    Column("plan_type", user_type_enum, nullable=False),
    Column("group_id", Integer, ForeignKey("plangroups.group_id", name="fk_plans_group")),
    Column("description", Text),
    Column("criteria", JSONB),
    _created_at(),
    Column("created_by", Integer, ForeignKey("admins.admin_id", name="fk_plans_created_by")),
    Column("status", record_status_enum, nullable=False, server_default=text("'active'")),
    Column("price", Money, nullable=False),
    Column("currency", CHAR(3), nullable=False, server_default=text("'INR'")),
    Column("data_mb", BigInteger),
    Column("data_mb_per_day", BigInteger),
    Column("unlimited_data", Boolean, nullable=False, server_default=FALSE),
    Column("voice_minutes", Integer),
    Column("unlimited_voice", Boolean, nullable=False, server_default=FALSE),
    Column("sms_count", Integer, nullable=False, server_default=text("0")),
    Column("sms_per_day", Integer),
    Column("talktime", Money),
    Column("extras", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("updated_at", TimestampTZ),
    PrimaryKeyConstraint("plan_id", name="plans_pkey"),
    CheckConstraint("price >= 0", name="ck_plans_price_nonnegative"),
    CheckConstraint("validity > 0", name="ck_plans_validity_positive"),
    CheckConstraint(
        "(data_mb IS NULL OR data_mb >= 0) AND (data_mb_per_day IS NULL OR data_mb_per_day >= 0)"
        " AND (voice_minutes IS NULL OR voice_minutes >= 0) AND sms_count >= 0"
        " AND (sms_per_day IS NULL OR sms_per_day >= 0) AND (talktime IS NULL OR talktime >= 0)",
        name="ck_plans_benefits_nonnegative",
    ),
    Index("idx_plans_group_id", "group_id"),
    Index("idx_plans_status", "status"),
    Index("idx_plans_plan_type", "plan_type"),
)

offers = Table(
    "offers",
    metadata,
    _id("offer_id"),
    Column("offer_name", String, nullable=False),
    Column("offer_validity", Integer),
    Column(
        "offer_type_id",
        Integer,
        ForeignKey("offertypes.offer_type_id", name="fk_offers_offer_type"),
    ),
    Column("is_special", Boolean, nullable=False, server_default=FALSE),
    Column("criteria", JSONB),
    Column("description", Text),
    _created_at(),
    Column("created_by", Integer, ForeignKey("admins.admin_id", name="fk_offers_created_by")),
    Column("status", record_status_enum, nullable=False, server_default=text("'active'")),
    Column("discount_percent", Percent),
    Column("discount_amount", Money),
    Column("cashback_percent", Percent),
    Column("cashback_amount", Money),
    Column("max_benefit_amount", Money),
    Column("min_plan_price", Money),
    #: Bonus allowances of a bonus offer, shaped like PlanBenefits (data_mb, sms_count, ...).
    Column("bonus", JSONB),
    Column("valid_from", TimestampTZ),
    Column("valid_to", TimestampTZ),
    Column("updated_at", TimestampTZ),
    PrimaryKeyConstraint("offer_id", name="offers_pkey"),
    CheckConstraint(
        "offer_validity IS NULL OR offer_validity > 0", name="ck_offers_offer_validity_positive"
    ),
    CheckConstraint(
        "(discount_percent IS NULL OR discount_percent BETWEEN 0 AND 100)"
        " AND (cashback_percent IS NULL OR cashback_percent BETWEEN 0 AND 100)",
        name="ck_offers_percent_range",
    ),
    CheckConstraint(
        "(discount_amount IS NULL OR discount_amount >= 0)"
        " AND (cashback_amount IS NULL OR cashback_amount >= 0)"
        " AND (max_benefit_amount IS NULL OR max_benefit_amount >= 0)"
        " AND (min_plan_price IS NULL OR min_plan_price >= 0)",
        name="ck_offers_amounts_nonnegative",
    ),
    CheckConstraint(
        "valid_from IS NULL OR valid_to IS NULL OR valid_to > valid_from",
        name="ck_offers_valid_range",
    ),
    Index("idx_offers_offer_type_id", "offer_type_id"),
    Index("idx_offers_status", "status"),
)

# --- money and subscriptions ----------------------------------------------------------

transactions = Table(
    "transactions",
    metadata,
    _id("txn_id"),
    Column(
        "user_id",
        Integer,
        ForeignKey("users.user_id", name="fk_transactions_user"),
        nullable=False,
    ),
    Column("category", txn_category_enum, nullable=False),
    Column("txn_type", txn_type_enum, nullable=False),
    Column("amount", Money, nullable=False),
    Column("service_type", user_type_enum),
    Column("plan_id", Integer, ForeignKey("plans.plan_id", name="fk_transactions_plan")),
    Column("offer_id", Integer, ForeignKey("offers.offer_id", name="fk_transactions_offer")),
    Column("from_phone_number", String),
    Column("to_phone_number", String),
    Column("source", txn_source_enum),
    Column("status", txn_status_enum, nullable=False, server_default=text("'pending'")),
    Column("payment_method", payment_method_enum),
    Column("payment_transaction_id", String),
    _created_at(),
    # Set by the wallet trigger only: the wallet balance right after this row moved it.
    Column("balance_after", Money),
    Column("currency", CHAR(3), nullable=False, server_default=text("'INR'")),
    # migration 0013: the transaction a refund refunds (or the refund a reversal undoes).
    Column(
        "refund_of_txn_id",
        Integer,
        ForeignKey("transactions.txn_id", name="fk_transactions_refund_of"),
    ),
    PrimaryKeyConstraint("txn_id", name="transactions_pkey"),
    CheckConstraint("amount > 0", name="ck_transactions_amount_positive"),
    Index("idx_transactions_user_id", "user_id"),
    Index("idx_transactions_plan_id", "plan_id"),
    Index("idx_transactions_offer_id", "offer_id"),
    Index("idx_transactions_user_created", "user_id", text("created_at DESC")),
    Index("idx_transactions_created_at", text("created_at DESC")),
    Index(
        "uq_transactions_payment_transaction_id",
        "payment_transaction_id",
        unique=True,
        postgresql_where=text("payment_transaction_id IS NOT NULL"),
    ),
    Index(
        "idx_transactions_refund_of",
        "refund_of_txn_id",
        postgresql_where=text("refund_of_txn_id IS NOT NULL"),
    ),
)

currentactiveplans = Table(
    "currentactiveplans",
    metadata,
    _id("id"),
    Column(
        "user_id",
        Integer,
        ForeignKey("users.user_id", name="fk_currentactiveplans_user"),
        nullable=False,
    ),
    Column(
        "plan_id",
        Integer,
        ForeignKey("plans.plan_id", name="fk_currentactiveplans_plan"),
        nullable=False,
    ),
    Column("phone_number", String),
    Column("valid_from", TimestampTZ),
    Column("valid_to", TimestampTZ),
    Column("status", active_plan_status_enum, nullable=False, server_default=text("'active'")),
    _created_at(),
    PrimaryKeyConstraint("id", name="currentactiveplans_pkey"),
    Index("idx_currentactiveplans_user_id", "user_id"),
    Index("idx_currentactiveplans_plan_id", "plan_id"),
    Index("idx_currentactiveplans_status", "status"),
    Index("idx_currentactiveplans_valid_to", "valid_to"),
    Index("idx_currentactiveplans_phone_number_status", "phone_number", "status"),
    # The end of the queue on a number (recharge QUEUE_END_SQL): one index descent.
    Index(
        "idx_currentactiveplans_queue_end",
        "phone_number",
        "valid_to",
        postgresql_where=text("status IN ('active', 'queued')"),
    ),
)

notifications = Table(
    "notifications",
    metadata,
    _id("notification_id"),
    Column("sender_type", sender_type_enum, nullable=False, server_default=text("'system'")),
    Column("sender_id", Integer, ForeignKey("admins.admin_id", name="fk_notifications_sender")),
    Column("description", Text),
    Column(
        "recipient_type_id",
        Integer,
        ForeignKey(
            "notificationrecipienttypes.recipient_type_id",
            name="fk_notifications_recipient_type",
        ),
    ),
    Column("recipient_id", Integer, ForeignKey("users.user_id", name="fk_notifications_recipient")),
    Column("status", notification_status_enum, nullable=False, server_default=text("'delivered'")),
    Column(
        "type_id", Integer, ForeignKey("notificationtypes.type_id", name="fk_notifications_type")
    ),
    Column("attachments", JSONB),
    _created_at("timestamp"),
    PrimaryKeyConstraint("notification_id", name="notifications_pkey"),
    Index("idx_notifications_recipient_id", "recipient_id"),
    Index("idx_notifications_recipient_type_id", "recipient_type_id"),
    Index("idx_notifications_timestamp", text("timestamp DESC")),
)

referralrewards = Table(
    "referralrewards",
    metadata,
    _id("reward_id"),
    Column(
        "referrer_id",
        Integer,
        ForeignKey("users.user_id", name="fk_referralrewards_referrer"),
        nullable=False,
    ),
    Column(
        "referred_id",
        Integer,
        ForeignKey("users.user_id", name="fk_referralrewards_referred"),
        nullable=False,
    ),
    Column("reward_amount", Money, nullable=False, server_default=text("0")),
    Column("status", referral_status_enum, nullable=False, server_default=text("'pending'")),
    _created_at(),
    PrimaryKeyConstraint("reward_id", name="referralrewards_pkey"),
    UniqueConstraint("referred_id", name="uq_referralrewards_referred_id"),
    CheckConstraint("reward_amount >= 0", name="ck_referralrewards_reward_amount_nonnegative"),
    Index("idx_referralrewards_referrer_id", "referrer_id"),
    Index("idx_referralrewards_referred_id", "referred_id"),
    Index("idx_referralrewards_status", "status"),
)

autopay = Table(
    "autopay",
    metadata,
    _id("autopay_id"),
    Column("user_id", Integer, ForeignKey("users.user_id", name="fk_autopay_user"), nullable=False),
    Column("plan_id", Integer, ForeignKey("plans.plan_id", name="fk_autopay_plan"), nullable=False),
    Column("status", autopay_status_enum, nullable=False, server_default=text("'enabled'")),
    Column("tag", autopay_tag_enum, nullable=False, server_default=text("'regular'")),
    Column("next_due_date", TimestampTZ),
    _created_at(),
    # migration 0005: what to recharge, and scheduling state
    Column("phone_number", String),
    Column("updated_at", TimestampTZ),
    Column("last_run_at", TimestampTZ),
    Column("last_error", Text),
    PrimaryKeyConstraint("autopay_id", name="autopay_pkey"),
    Index("idx_autopay_user_id", "user_id"),
    Index("idx_autopay_plan_id", "plan_id"),
    Index("idx_autopay_status", "status"),
    Index("idx_autopay_due", "next_due_date", postgresql_where=text("status = 'enabled'")),
)

billreminders = Table(
    "billreminders",
    metadata,
    _id("reminder_id"),
    Column(
        "user_id",
        Integer,
        ForeignKey("users.user_id", name="fk_billreminders_user"),
        nullable=False,
    ),
    Column("plan_id", Integer, ForeignKey("plans.plan_id", name="fk_billreminders_plan")),
    Column("due_date", TimestampTZ, nullable=False),
    Column("status", reminder_status_enum, nullable=False, server_default=text("'pending'")),
    Column("sent_at", TimestampTZ),
    # migration 0005: what is due, for which number, and the paying transaction
    Column("amount", Money),
    Column("phone_number", String),
    Column(
        "paid_txn_id",
        Integer,
        ForeignKey("transactions.txn_id", name="fk_billreminders_paid_txn"),
    ),
    CheckConstraint("amount IS NULL OR amount >= 0", name="ck_billreminders_amount_nonnegative"),
    PrimaryKeyConstraint("reminder_id", name="billreminders_pkey"),
    Index("idx_billreminders_user_id", "user_id"),
    Index("idx_billreminders_due_date", "due_date"),
    Index("idx_billreminders_status", "status"),
    # migration 0006: one reminder per bill
    Index(
        "uq_billreminders_bill",
        "user_id",
        "due_date",
        "phone_number",
        unique=True,
        postgresql_nulls_not_distinct=True,
    ),
)

# --- backups ----------------------------------------------------------------------------

backup = Table(
    "backup",
    metadata,
    Column("backup_id", String, nullable=False),
    Column("backup_data", String),
    Column("snapshot_name", String),
    Column("source_db", String),
    Column("storage_uri", String),
    Column("backup_status", backup_status_enum),
    Column("size_bytes", BigInteger),
    Column("description", String),
    Column("details", JSONB),
    _created_at(),
    Column("created_by", Integer, ForeignKey("admins.admin_id", name="fk_backup_created_by")),
    PrimaryKeyConstraint("backup_id", name="backup_pkey"),
    CheckConstraint(
        "size_bytes IS NULL OR size_bytes >= 0", name="ck_backup_size_bytes_nonnegative"
    ),
    Index("idx_backup_backup_status", "backup_status"),
    Index("idx_backup_created_at", text("created_at DESC")),
)

schedule = Table(
    "schedule",
    metadata,
    Column("schedule_id", String, nullable=False),
    Column("backup_id", String, ForeignKey("backup.backup_id", name="fk_schedule_backup")),
    Column("task_name", String, nullable=False),
    Column("time", TimestampTZ),
    Column("next_run", TimestampTZ),
    Column("isactive", schedule_status_enum, nullable=False, server_default=text("'active'")),
    _created_at(),
    # Legacy (before migration 0016): the repeat period of schedules written before cron
    # expressions existed; nothing new writes it.
    Column(
        "interval_seconds",
        Integer,
        comment="Legacy: the period of schedules written before cron_expression "
        "(migration 0016); nothing new writes it",
    ),
    # migration 0016: the recurrence (5-field cron, UTC; NULL only on legacy rows), what
    # a run does ('backup' or 'drill') and when the schedule last fired.
    Column("cron_expression", Text),
    Column("job", Text, nullable=False, server_default=text("'backup'")),
    Column("last_run_at", TimestampTZ),
    PrimaryKeyConstraint("schedule_id", name="schedule_pkey"),
    CheckConstraint(
        "interval_seconds IS NULL OR interval_seconds > 0",
        name="ck_schedule_interval_seconds_positive",
    ),
    CheckConstraint("job IN ('backup', 'drill')", name="ck_schedule_job"),
    Index("idx_schedule_backup_id", "backup_id"),
    Index("idx_schedule_next_run", "next_run"),
    Index("uq_schedule_task_name", "task_name", unique=True),
)

# Views of DDS 6.1 (created by the migrations; query them with sqlalchemy.table()).
VIEW_NAMES: tuple[str, ...] = ("user_permissions_v", "transaction_summary_v", "active_plans_v")


# --- idempotency (migration 0005) ---------------------------------------------------------

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    #: The principal's subject ("user:12", "service:billing"): keys are per caller.
    Column("caller", Text, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("rpc", Text, nullable=False),
    #: SHA-256 of the request with request_id cleared: a replay must match it.
    Column("request_hash", Text, nullable=False),
    #: What the original call produced (ids to rebuild the response from).
    Column("result", JSONB),
    _created_at(),
    Column("expires_at", TimestampTZ, nullable=False),
    PrimaryKeyConstraint("caller", "request_id", name="idempotency_keys_pkey"),
    Index("idx_idempotency_keys_expires_at", "expires_at"),
)


# --- payment attempts (migration 0011) ------------------------------------------------------

payment_attempts = Table(
    "payment_attempts",
    metadata,
    #: Our gateway reference of the charge (stable across retries of one request).
    Column("reference", Text, nullable=False),
    #: ``top_up`` or ``recharge`` (PayBill pays through the recharge path).
    Column("kind", Text, nullable=False),
    #: The idempotency key the charge runs under: (caller, request_id), its RPC and hash.
    Column("caller", Text, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("rpc", Text, nullable=False),
    Column("request_hash", Text, nullable=False),
    Column(
        "user_id",
        Integer,
        ForeignKey("users.user_id", name="fk_payment_attempts_user"),
        nullable=False,
    ),
    #: Everything needed to record the outcome without the original request.
    Column("intent", JSONB, nullable=False),
    #: ``charging`` -> ``recorded`` | ``released``.
    Column("state", Text, nullable=False, server_default=text("'charging'")),
    #: The gateway's id of the charge (ChargeResult.payment_id), once recorded.
    Column("payment_id", Text),
    #: The ledger row the charge was recorded as.
    Column("txn_id", Integer),
    #: Charges made under this reference (a retry after a release charges again).
    Column("charges", Integer, nullable=False, server_default=text("1")),
    #: Times the recovery job asked the gateway about it.
    Column("checks", Integer, nullable=False, server_default=text("0")),
    #: When the recovery job may look at it next (NULL: ``updated_at`` + the grace).
    Column("next_check_at", TimestampTZ),
    #: Why the last recovery check did not settle it (an error class, no details).
    Column("last_error", Text),
    _created_at(),
    _created_at("updated_at"),
    PrimaryKeyConstraint("reference", name="payment_attempts_pkey"),
    CheckConstraint("kind IN ('top_up', 'recharge')", name="ck_payment_attempts_kind"),
    CheckConstraint(
        "state IN ('charging', 'recorded', 'released')", name="ck_payment_attempts_state"
    ),
    Index(
        "idx_payment_attempts_charging",
        "updated_at",
        postgresql_where=text("state = 'charging'"),
    ),
    Index("idx_payment_attempts_updated_at", "updated_at"),
    Index("idx_payment_attempts_user_id", "user_id"),
)


# --- recharges (migration 0012) -----------------------------------------------------------

#: What a recharge showed beyond its ledger row (written with it by server/recharge;
#: read back by GetRecharge and ListRecharges): one row per recharge debit.
recharges = Table(
    "recharges",
    metadata,
    Column(
        "txn_id",
        Integer,
        ForeignKey("transactions.txn_id", name="fk_recharges_txn"),
        nullable=False,
    ),
    #: The plan period the recharge queued or activated; NULL while pending or if failed.
    Column(
        "active_plan_id",
        Integer,
        ForeignKey("currentactiveplans.id", name="fk_recharges_active_plan"),
    ),
    Column("discount", Money, nullable=False, server_default=text("0")),
    #: As promised while the payment is pending, as credited once it settled.
    Column("cashback", Money, nullable=False, server_default=text("0")),
    Column(
        "cashback_txn_id",
        Integer,
        ForeignKey("transactions.txn_id", name="fk_recharges_cashback_txn"),
    ),
    #: The offer's extra allowances (PlanBenefits-shaped, like offers.bonus); NULL: none.
    Column("bonus", JSONB),
    PrimaryKeyConstraint("txn_id", name="recharges_pkey"),
    CheckConstraint("discount >= 0 AND cashback >= 0", name="ck_recharges_amounts_nonnegative"),
)


# --- wallet adjustments (migration 0013) ------------------------------------------------------

#: One row per AdjustWallet (server/admin/money): its ledger row, the reason, who asked
#: and, above the approval threshold, who approved or rejected it (four eyes).
wallet_adjustments = Table(
    "wallet_adjustments",
    metadata,
    Column(
        "txn_id",
        Integer,
        ForeignKey("transactions.txn_id", name="fk_wallet_adjustments_txn"),
        nullable=False,
    ),
    Column(
        "user_id",
        Integer,
        ForeignKey("users.user_id", name="fk_wallet_adjustments_user"),
        nullable=False,
    ),
    Column(
        "requested_by",
        Integer,
        ForeignKey("admins.admin_id", name="fk_wallet_adjustments_requested_by"),
        nullable=False,
    ),
    Column("reason", Text, nullable=False),
    #: ``applied`` | ``pending`` -> ``approved`` | ``rejected``.
    Column("status", Text, nullable=False),
    Column(
        "decided_by",
        Integer,
        ForeignKey("admins.admin_id", name="fk_wallet_adjustments_decided_by"),
    ),
    Column("decided_at", TimestampTZ),
    Column("decision_note", Text),
    _created_at(),
    PrimaryKeyConstraint("txn_id", name="wallet_adjustments_pkey"),
    CheckConstraint(
        "status IN ('applied', 'pending', 'approved', 'rejected')",
        name="ck_wallet_adjustments_status",
    ),
    CheckConstraint(
        "status <> 'approved' OR decided_by <> requested_by",
        name="ck_wallet_adjustments_four_eyes",
    ),
    Index("idx_wallet_adjustments_status", "status", "created_at"),
    Index("idx_wallet_adjustments_user", "user_id", "created_at"),
)
