"""The report types (DDS ``ReportTypes``): their columns, totals, charts and parameters.

Pure data: the ids and names are the ``ReportTypes`` reference rows the seed loads
(server/ops/seed/reference.py ``REPORT_TYPES``; a test keeps the two equal). Where each
type reads its rows is server/reports/domain.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class ReportFormat(StrEnum):
    """``ReportsLogs.format`` (the DDS validator's enum)."""

    PDF = "pdf"
    EXCEL = "excel"
    CSV = "csv"

    @property
    def extension(self) -> str:
        return {"pdf": "pdf", "excel": "xlsx", "csv": "csv"}[self.value]

    @property
    def content_type(self) -> str:
        return {
            "pdf": "application/pdf",
            "excel": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "csv": "text/csv",
        }[self.value]


class Kind(StrEnum):
    """How a column's values are written: text, integer, money (Decimal rupees, two
    places), a timestamp (UTC) or a calendar day."""

    TEXT = "text"
    INT = "int"
    MONEY = "money"
    TIME = "time"
    DAY = "day"


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    kind: Kind = Kind.TEXT
    #: Summed into the totals row.
    total: bool = False
    #: Relative width in the PDF table.
    width: float = 1.0


@dataclass(frozen=True)
class Chart:
    """A per-day series drawn from the rows: ``value`` summed per day of ``day``
    (``value`` None: rows counted per day)."""

    title: str
    day: str
    value: str | None = None


@dataclass(frozen=True)
class ReportType:
    report_type_id: int
    name: str
    title: str
    columns: tuple[Column, ...]
    #: Takes the ``from``/``to`` date range (else it is a snapshot and takes no parameters).
    ranged: bool = True
    chart: Chart | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(c.key for c in self.columns)


def _c(
    key: str, header: str, kind: Kind = Kind.TEXT, *, total: bool = False, width: float = 1.0
) -> Column:
    return Column(key, header, kind, total, width)


_I, _M, _T, _D = Kind.INT, Kind.MONEY, Kind.TIME, Kind.DAY

REPORT_TYPES: Final[tuple[ReportType, ...]] = (
    ReportType(
        1,
        "user_activity",
        "User activity (audit log actions per user and action type)",
        (
            _c("user_id", "User", width=1.5),
            _c("action_type", "Action"),
            _c("total_actions", "Actions", _I, total=True),
        ),
    ),
    ReportType(
        2,
        "transactions",
        "Transactions (transaction_summary_v)",
        (
            _c("txn_id", "Txn", _I, width=0.6),
            _c("user_id", "User", _I, width=0.6),
            _c("user_name", "Name", width=1.4),
            _c("category", "Category", width=0.8),
            _c("txn_type", "Type", width=0.6),
            _c("amount", "Amount", _M, total=True, width=0.9),
            _c("service_type", "Service", width=0.8),
            _c("plan_name", "Plan", width=1.4),
            _c("transaction_status", "Status", width=0.7),
            _c("payment_method", "Method", width=0.9),
            _c("created_at", "Created (UTC)", _T, width=1.5),
        ),
        chart=Chart("Transactions per day", "created_at"),
    ),
    ReportType(
        3,
        "plans",
        "Plans and their successful recharges in the range",
        (
            _c("plan_id", "Plan", _I, width=0.6),
            _c("plan_name", "Name", width=1.8),
            _c("plan_type", "Type"),
            _c("price", "Price", _M),
            _c("validity", "Validity (days)", _I),
            _c("status", "Status"),
            _c("recharge_count", "Recharges", _I, total=True),
            _c("recharge_amount", "Recharge amount", _M, total=True),
        ),
    ),
    ReportType(
        4,
        "offers",
        "Offers and the successful transactions that used them in the range",
        (
            _c("offer_id", "Offer", _I, width=0.6),
            _c("offer_name", "Name", width=1.8),
            _c("offer_type", "Type"),
            _c("status", "Status"),
            _c("valid_from", "Valid from (UTC)", _T, width=1.4),
            _c("valid_to", "Valid to (UTC)", _T, width=1.4),
            _c("uses", "Uses", _I, total=True),
            _c("amount", "Amount", _M, total=True),
        ),
    ),
    ReportType(
        5,
        "referrals",
        "Referral rewards",
        (
            _c("reward_id", "Reward", _I),
            _c("referrer_id", "Referrer", _I),
            _c("referred_id", "Referred", _I),
            _c("reward_amount", "Reward amount", _M, total=True),
            _c("status", "Status"),
            _c("created_at", "Created (UTC)", _T, width=1.5),
        ),
        chart=Chart("Referral rewards per day", "created_at"),
    ),
    ReportType(
        6,
        "revenue",
        "Revenue per day (successful recharges and wallet top-ups)",
        (
            _c("day", "Day", _D),
            _c("recharge_count", "Recharges", _I, total=True),
            _c("recharge_amount", "Recharge amount", _M, total=True),
            _c("topup_count", "Top-ups", _I, total=True),
            _c("topup_amount", "Top-up amount", _M, total=True),
        ),
        chart=Chart("Recharge amount per day (INR)", "day", "recharge_amount"),
    ),
    ReportType(
        7,
        "content_usage",
        "Content items per content type",
        (
            _c("content_type_name", "Content type", width=2.0),
            _c("total_items", "Items", _I, total=True),
        ),
        ranged=False,
    ),
    ReportType(
        8,
        "backup_activity",
        "Backup and restore activity",
        (
            _c("log_id", "Log", width=1.4),
            _c("job_id", "Job", width=1.6),
            _c("job_type", "Job type"),
            _c("status", "Status"),
            _c("snapshot_name", "Snapshot", width=1.6),
            _c("created_at", "Created (UTC)", _T, width=1.5),
            _c("action_by", "Admin", _I, width=0.6),
        ),
    ),
    ReportType(
        9,
        "recharges",
        "Recharges",
        (
            _c("txn_id", "Txn", _I, width=0.6),
            _c("user_id", "User", _I, width=0.6),
            _c("to_phone_number", "Number", width=1.1),
            _c("plan_name", "Plan", width=1.4),
            _c("amount", "Amount", _M, total=True),
            _c("discount", "Discount", _M, total=True),
            _c("cashback", "Cashback", _M, total=True),
            _c("status", "Status", width=0.7),
            _c("payment_method", "Method", width=0.9),
            _c("created_at", "Created (UTC)", _T, width=1.5),
        ),
        chart=Chart("Recharges per day", "created_at"),
    ),
    ReportType(
        10,
        "users",
        "Customers registered in the range",
        (
            _c("user_id", "User", _I, width=0.6),
            _c("name", "Name", width=1.3),
            _c("email", "E-mail", width=1.8),
            _c("phone_number", "Phone", width=1.0),
            _c("user_type", "Type", width=0.8),
            _c("status", "Status", width=0.7),
            _c("wallet_balance", "Wallet", _M, total=True),
            _c("created_at", "Registered (UTC)", _T, width=1.5),
        ),
        chart=Chart("Registrations per day", "created_at"),
    ),
    ReportType(
        11,
        "active_plans",
        "Active plans (active_plans_v)",
        (
            _c("id", "Id", _I, width=0.6),
            _c("user_id", "User", _I, width=0.6),
            _c("user_name", "Name", width=1.3),
            _c("plan_id", "Plan", _I, width=0.6),
            _c("plan_name", "Plan name", width=1.4),
            _c("phone_number", "Number", width=1.0),
            _c("valid_from", "Valid from (UTC)", _T, width=1.5),
            _c("valid_to", "Valid to (UTC)", _T, width=1.5),
            _c("plan_status", "Status", width=0.7),
        ),
        ranged=False,
    ),
    ReportType(
        12,
        "user_permissions",
        "User permissions (user_permissions_v)",
        (
            _c("user_id", "User", _I, width=0.6),
            _c("user_name", "Name", width=1.3),
            _c("role_name", "Role"),
            _c("permission_name", "Resource"),
            _c("read", "Read", width=0.5),
            _c("write", "Write", width=0.5),
            _c("delete", "Delete", width=0.5),
            _c("edit", "Edit", width=0.5),
        ),
        ranged=False,
    ),
)

BY_ID: Final[dict[int, ReportType]] = {t.report_type_id: t for t in REPORT_TYPES}
