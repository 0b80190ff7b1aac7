"""Reference data: loaded in every environment, production included (DDS 13.1-13.5).

Everything here is static. Ids are explicit and stable: a row's id never changes once
released, new rows get new ids at the end. Rows are inserted when their id is free and
never updated afterwards, so an operator's later change (say, a permission edited
through the admin API) survives restarts.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from server.auth import resources

# --------------------------------------------------------------------------- roles

ROLE_ADMIN: Final = 1
ROLE_USER: Final = 2
ROLE_SUPPORT: Final = 3
ROLE_SERVICE: Final = 4


class Role(NamedTuple):
    role_id: int
    role_name: str
    description: str


#: DDS 13.1 (ids 1-3, verbatim) plus the service-account role.
ROLES: Final[tuple[Role, ...]] = (
    Role(
        ROLE_ADMIN,
        "Admin",
        "System administrator with full access to all data and operations",
    ),
    Role(
        ROLE_USER,
        "User",
        "Customer with access to their own profile, transactions, and plans",
    ),
    Role(
        ROLE_SUPPORT,
        "Support",
        "Support staff with limited access to user data and reports",
    ),
    Role(ROLE_SERVICE, "Service", "Internal service accounts"),
)

# --------------------------------------------------------------------- permissions

#: Every resource an access rule of the contract names: server/auth/resources.py (where
#: CreatePermission checks it too); re-exported here for the seed.
CONTRACT_RESOURCES: Final[tuple[str, ...]] = resources.CONTRACT_RESOURCES

#: Permission resources no access rule names ("PersonalData"), and every resource a
#: Permissions row may name: server/auth/resources.py.
DATA_RESOURCES: Final[tuple[str, ...]] = resources.DATA_RESOURCES
PERMISSION_RESOURCES: Final[tuple[str, ...]] = resources.PERMISSION_RESOURCES

#: Resources Support may read (and nothing else).
SUPPORT_READ_RESOURCES: Final[tuple[str, ...]] = (
    "Users",
    "Transactions",
    "Plans",
    "Offers",
    "Notifications",
    "Content",
    "ContactForm",
    "Reports",
    "AuditLog",
)


#: Resources Support may also edit (nothing else: no write, no delete): ContactForm,
#: to move a submission along (ContentService.UpdateContactForm).
SUPPORT_EDIT_RESOURCES: Final[tuple[str, ...]] = ("ContactForm",)


class Permission(NamedTuple):
    permission_id: int
    resource: str
    read: bool
    write: bool
    delete: bool
    edit: bool


def _full(permission_id: int, resource: str) -> Permission:
    return Permission(permission_id, resource, True, True, True, True)


def _read(permission_id: int, resource: str) -> Permission:
    return Permission(permission_id, resource, True, False, False, False)


#: 1-4: DDS 13.2 verbatim. 5-18: full access for the Admin role on every contract
#: resource the DDS rows do not already cover in full (Transactions and Plans are
#: not full in 13.2). 19-26: read-only rows for Support (Transactions read-only is
#: DDS row 2). 27: Support's read-and-edit row for ContactForm;
#: 28: PersonalData, for the Admin role.
PERMISSIONS: Final[tuple[Permission, ...]] = (
    Permission(1, "Users", True, True, True, True),
    Permission(2, "Transactions", True, False, False, False),
    Permission(3, "Plans", True, True, False, True),
    Permission(4, "Reports", True, True, True, True),
    _full(5, "Admins"),
    _full(6, "Roles"),
    _full(7, "Permissions"),
    _full(8, "Transactions"),
    _full(9, "Wallet"),
    _full(10, "Plans"),
    _full(11, "Offers"),
    _full(12, "Notifications"),
    _full(13, "Content"),
    _full(14, "ContactForm"),
    _full(15, "AuditLog"),
    _full(16, "Backup"),
    _full(17, "Schedule"),
    _full(18, "ServiceAccounts"),
    _read(19, "Users"),
    _read(20, "Plans"),
    _read(21, "Offers"),
    _read(22, "Notifications"),
    _read(23, "Content"),
    _read(24, "ContactForm"),
    _read(25, "Reports"),
    _read(26, "AuditLog"),
    Permission(27, "ContactForm", True, False, False, True),
    _full(28, "PersonalData"),
)


class RolePermission(NamedTuple):
    id: int
    role_id: int
    permission_id: int


#: 1-4: DDS 13.3 verbatim. 5-18: Admin gets permissions 5-18 (full access, with 1 and
#: 4 from the DDS). 19-26: Support gets the read-only rows 19-26 (plus DDS row 4);
#: 27: Support edits contact forms (row 27).
#: 28: Admin gets PersonalData (Support does not: masked personal data).
#: The User role keeps only DDS row 3: users reach their own data through
#: AUDIENCE_AUTHENTICATED rules and ownership checks, not through permissions.
#: The Service role has no permission rows: service RPCs use AUDIENCE_SERVICE.
ROLE_PERMISSIONS: Final[tuple[RolePermission, ...]] = (
    RolePermission(1, ROLE_ADMIN, 1),
    RolePermission(2, ROLE_ADMIN, 4),
    RolePermission(3, ROLE_USER, 2),
    RolePermission(4, ROLE_SUPPORT, 2),
    *(RolePermission(pid, ROLE_ADMIN, pid) for pid in range(5, 19)),
    *(RolePermission(pid, ROLE_SUPPORT, pid) for pid in range(19, 27)),
    RolePermission(27, ROLE_SUPPORT, 27),
    RolePermission(28, ROLE_ADMIN, 28),
)

# ------------------------------------------------------------------ schedules

#: The DDS default backup schedule (DDS 10.3: a daily full backup): a full backup of
#: both databases (no ``backup_id``) every day at 02:00 UTC. Inactive, without a next
#: run, until an admin enables it (BackupService UpdateSchedule ``is_active``; the next
#: run is computed then). Inserted when neither its id nor its task name is taken.
DEFAULT_SCHEDULE_ID: Final = "sched_daily_backup"
SCHEDULES: Final[tuple[dict[str, object], ...]] = (
    {
        "schedule_id": DEFAULT_SCHEDULE_ID,
        "task_name": "daily_backup",
        "cron_expression": "0 2 * * *",
        "job": "backup",
        "isactive": "inactive",
    },
)

# ---------------------------------------------------------------- lookup tables


class Named(NamedTuple):
    id: int
    name: str
    description: str


#: DDS 13.4 (1-4) plus a group for data add-on packs.
PLAN_GROUPS: Final[tuple[Named, ...]] = (
    Named(1, "talktime", "Plans offering talktime minutes"),
    Named(2, "unlimited", "Plans with unlimited calls and data"),
    Named(3, "roaming", "Plans for roaming services"),
    Named(4, "other", "Miscellaneous plans"),
    Named(5, "data", "Data add-on packs"),
)

#: DDS 13.5 (1-3) plus the offer kinds the recharge flow applies (cashback, discount,
#: bonus): 'cashback' is DDS row 1, 'discount' and 'bonus' are added.
OFFER_TYPES: Final[tuple[Named, ...]] = (
    Named(1, "cashback", "Offers providing cashback on recharges"),
    Named(2, "bonus_data", "Offers providing additional data"),
    Named(3, "festive_special", "Seasonal or festive promotional offers"),
    Named(4, "discount", "Offers reducing the price paid for a recharge"),
    Named(5, "bonus", "Offers crediting a bonus amount to the wallet"),
)

NOTIFICATION_TYPES: Final[tuple[Named, ...]] = (
    Named(1, "recharge_success", "A recharge succeeded"),
    Named(2, "recharge_failed", "A recharge failed"),
    Named(3, "bill_reminder", "A postpaid bill or plan renewal is due"),
    Named(4, "autopay_success", "An autopay recharge succeeded"),
    Named(5, "autopay_failed", "An autopay recharge failed"),
    Named(6, "plan_expiry", "An active plan is about to expire or has expired"),
    Named(7, "offer", "A promotional offer"),
    Named(8, "system", "A system announcement"),
    Named(9, "referral_reward", "A referral reward was earned or paid"),
    Named(10, "wallet_topup", "The wallet was topped up"),
)

NOTIFICATION_RECIPIENT_TYPES: Final[tuple[Named, ...]] = (
    Named(1, "user", "One user (recipient_id)"),
    Named(2, "all_users", "Every user"),
    Named(3, "prepaid_users", "Every prepaid user"),
    Named(4, "postpaid_users", "Every postpaid user"),
)

# ------------------------------------------------------------ MongoDB lookups

#: MongoDB ``ContentTypes``. DDS 13.13 uses 1 for a how-to article and 3 for the
#: Terms of Service.
CONTENT_TYPES: Final[tuple[tuple[int, str], ...]] = (
    (1, "faq"),
    (2, "privacy_policy"),
    (3, "terms_of_service"),
    (4, "help"),
    (5, "about"),
)

#: MongoDB ``ReportTypes`` (``ReportsLogs.report_type_id``).
REPORT_TYPES: Final[tuple[tuple[int, str], ...]] = (
    (1, "user_activity"),
    (2, "transactions"),
    (3, "plans"),
    (4, "offers"),
    (5, "referrals"),
    (6, "revenue"),
    (7, "content_usage"),
    (8, "backup_activity"),
    (9, "recharges"),
    (10, "users"),
    (11, "active_plans"),
    (12, "user_permissions"),
)
