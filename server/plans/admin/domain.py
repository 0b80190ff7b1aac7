"""Administering the catalogue: plans, offers, plan groups, offer types (no grpc here).

The servicer turns each request into plain values keyed by the API field path
(``plan_name``, ``price``, ``benefits.data_mb`` ...; server/plans/convert.py); this
module validates them, maps them to columns and writes them in the caller's
transaction (keyword ``conn``), naming the change for the audit log, and returns what
it wrote as the catalogue's values (server/plans/domain.py). Every bad field is
reported at once, as a field violation named by its request path
(``plan.price.units_minor``), before anything is written.

Plans and offers are never removed: "delete" sets status inactive, because bought
plans, transactions and autopay mandates keep referring to them.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from server.audit.scope import audit_change
from server.auth.principal import Principal
from server.core.errors import AlreadyExists, FieldViolation, InvalidArgument, NotFound
from server.core.money import CURRENCY, from_minor
from server.plans import offers, queries
from server.plans.admin import queries as admin_queries
from server.plans.domain import OfferInfo, OfferType, PlanGroup, PlanInfo

ACTIVE: Final = "active"
INACTIVE: Final = "inactive"
STATUSES: Final = (ACTIVE, INACTIVE)
MAX_NAME: Final = 100
MAX_DESCRIPTION: Final = 2000
MAX_VALIDITY_DAYS: Final = 3650
MAX_EXTRAS: Final = 50
MAX_EXTRA_CHARS: Final = 200
#: NUMERIC(10,2) holds up to 99,999,999.99.
MAX_AMOUNT_MINOR: Final = 9_999_999_999
MAX_INT32: Final = 2**31 - 1
MAX_INT64: Final = 2**63 - 1
MAX_REFERENCE_NAME: Final = 50
_REFERENCE_NAME: Final = re.compile(r"[a-z0-9_]+")

BENEFIT_KINDS: Final = ("discount", "cashback", "bonus")


@dataclass(frozen=True)
class MoneyIn:
    """A Money field of a request: integer paise and an ISO 4217 code ("" = INR)."""

    units_minor: int
    currency_code: str


@dataclass(frozen=True)
class BenefitIn:
    """An OfferBenefit of a request.

    ``kind`` is "discount", "cashback", "bonus", or None when unspecified/unknown;
    ``bonus`` holds PlanBenefits values keyed like the plan benefit paths without the
    ``benefits.`` prefix (None when the message is unset).
    """

    kind: str | None
    percent_bps: int | None
    fixed_amount: MoneyIn | None
    max_amount: MoneyIn | None
    min_plan_price: MoneyIn | None
    bonus: Mapping[str, Any] | None


def creator(who: Principal) -> int | None:
    """``created_by`` of what ``who`` creates: the calling admin (service accounts
    leave it empty)."""
    return who.numeric_id if who.kind == "admin" else None


# ---------------------------------------------------------------- field paths

BENEFIT_KEYS: Final = (
    "data_mb",
    "data_mb_per_day",
    "unlimited_data",
    "voice_minutes",
    "unlimited_voice",
    "sms_count",
    "sms_per_day",
    "talktime",
    "extras",
)
BENEFIT_PATHS: Final = tuple(f"benefits.{key}" for key in BENEFIT_KEYS)
#: Every writable Plan path; the servicer supplies a value for each.
PLAN_PATHS: Final = (
    "plan_name",
    "validity_days",
    "most_popular",
    "plan_type",
    "group_id",
    "description",
    "criteria",
    "price",
    "status",
    *BENEFIT_PATHS,
)
PLAN_OUTPUT_ONLY: Final = frozenset({"plan_id", "group_name", "created_at", "created_by"})
PLAN_GROUPS: Final = {"benefits": BENEFIT_PATHS}

#: Every writable Offer path; the servicer supplies a value for each.
OFFER_PATHS: Final = (
    "offer_name",
    "offer_validity_days",
    "offer_type_id",
    "is_special",
    "criteria",
    "description",
    "status",
    "benefit",
    "benefit.max_amount",
    "benefit.min_plan_price",
    "expires_at",
)
OFFER_OUTPUT_ONLY: Final = frozenset({"offer_id", "offer_type_name", "created_at", "created_by"})
OFFER_GROUPS: Final = {"benefit": ("benefit", "benefit.max_amount", "benefit.min_plan_price")}

#: Nullable integer benefit columns: 0 ("not included") is stored as NULL.
_NULLABLE_BENEFITS: Final = frozenset(
    {"data_mb", "data_mb_per_day", "voice_minutes", "sms_per_day"}
)
_INT64_BENEFITS: Final = frozenset({"data_mb", "data_mb_per_day"})
_BOOL_BENEFITS: Final = frozenset({"unlimited_data", "unlimited_voice"})


def mask_paths(
    paths: Iterable[str],
    writable: Collection[str],
    output_only: Collection[str],
    groups: Mapping[str, Collection[str]],
) -> list[str]:
    """The writable paths an update mask names (groups expanded), in ``writable`` order.

    Empty masks, unknown paths and output-only paths are INVALID_ARGUMENT on
    ``update_mask``.
    """
    chosen: set[str] = set()
    violations: list[FieldViolation] = []
    given = list(paths)
    if not given:
        violations.append(FieldViolation("update_mask", "name at least one field to update"))
    for path in given:
        if path in groups:
            chosen.update(groups[path])
        elif path in writable:
            chosen.add(path)
        elif path in output_only:
            violations.append(FieldViolation("update_mask", f"{path!r} is output only"))
        else:
            violations.append(FieldViolation("update_mask", f"unknown field path {path!r}"))
    if violations:
        raise InvalidArgument.of(violations)
    return [path for path in writable if path in chosen]


# ---------------------------------------------------------------- value checks


class _Checker:
    """Collects field violations while turning request values into column values."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.violations: list[FieldViolation] = []

    def bad(self, path: str, description: str) -> None:
        self.violations.append(FieldViolation(f"{self.prefix}.{path}", description))

    def raise_if_any(self) -> None:
        if self.violations:
            raise InvalidArgument.of(self.violations)

    def name(self, path: str, value: str) -> str:
        text = value.strip()
        if not text:
            self.bad(path, "required")
        elif len(text) > MAX_NAME:
            self.bad(path, f"at most {MAX_NAME} characters")
        return text

    def description(self, path: str, value: str) -> str | None:
        if len(value) > MAX_DESCRIPTION:
            self.bad(path, f"at most {MAX_DESCRIPTION} characters")
        return value or None

    def days(self, path: str, value: int, *, optional: bool = False) -> int | None:
        if optional and value == 0:
            return None
        if not 1 <= value <= MAX_VALIDITY_DAYS:
            self.bad(path, f"must be between 1 and {MAX_VALIDITY_DAYS} days")
        return value

    def reference_id(self, path: str, value: int) -> int:
        if value <= 0:
            self.bad(path, "required: a positive id")
        return value

    def amount(self, path: str, value: MoneyIn | None, *, positive: bool) -> Decimal | None:
        """A Money value as a Decimal; None (no violation) when unset."""
        if value is None:
            return None
        ok = True
        if value.currency_code not in ("", CURRENCY):
            self.bad(f"{path}.currency_code", f"only {CURRENCY} is accepted")
            ok = False
        low = 1 if positive else 0
        if not low <= value.units_minor <= MAX_AMOUNT_MINOR:
            what = "positive" if positive else "non-negative"
            self.bad(f"{path}.units_minor", f"must be {what} and at most {MAX_AMOUNT_MINOR}")
            ok = False
        return from_minor(value.units_minor) if ok else None

    def criteria(
        self, path: str, value: Mapping[str, Any] | None, allowed: frozenset[str]
    ) -> dict[str, Any] | None:
        if value is None:
            return None
        self.violations += offers.validate_criteria(value, f"{self.prefix}.{path}", allowed=allowed)
        return dict(value)

    def status(self, path: str, value: str | None, *, default: str | None) -> str | None:
        if value is None and default is not None:
            return default
        if value not in STATUSES:
            self.bad(path, "must be ACTIVE or INACTIVE")
        return value

    def benefit(self, path: str, key: str, value: Any) -> Any:
        """One PlanBenefits value (``key`` without prefix) as its column value."""
        if key in _BOOL_BENEFITS:
            return bool(value)
        if key == "talktime":
            return self.amount(path, value, positive=False)
        if key == "extras":
            items = list(value)
            if len(items) > MAX_EXTRAS:
                self.bad(path, f"at most {MAX_EXTRAS} entries")
            if any(not item.strip() or len(item) > MAX_EXTRA_CHARS for item in items):
                self.bad(path, f"entries must be 1 to {MAX_EXTRA_CHARS} characters")
            return items
        limit = MAX_INT64 if key in _INT64_BENEFITS else MAX_INT32
        if not 0 <= value <= limit:
            self.bad(path, "must not be negative")
        if key in _NULLABLE_BENEFITS and value == 0:
            return None
        return value


# ---------------------------------------------------------------- plans


def _plan_columns(
    check: _Checker, values: Mapping[str, Any], paths: Iterable[str], *, creating: bool
) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for path in paths:
        value = values[path]
        if path == "plan_name":
            columns["plan_name"] = check.name(path, value)
        elif path == "validity_days":
            columns["validity"] = check.days(path, value)
        elif path == "most_popular":
            columns["most_popular"] = bool(value)
        elif path == "plan_type":
            if value not in offers.USER_TYPES:
                check.bad(path, "required: USER_TYPE_PREPAID or USER_TYPE_POSTPAID")
            columns["plan_type"] = value
        elif path == "group_id":
            columns["group_id"] = check.reference_id(path, value)
        elif path == "description":
            columns["description"] = check.description(path, value)
        elif path == "criteria":
            columns["criteria"] = check.criteria(path, value, offers.PLAN_CRITERIA)
        elif path == "price":
            if value is None:
                check.bad(path, "required")
            columns["price"] = check.amount(path, value, positive=True)
            columns["currency"] = CURRENCY
        elif path == "status":
            columns["status"] = check.status(path, value, default=ACTIVE if creating else None)
        else:
            key = path.removeprefix("benefits.")
            columns[key] = check.benefit(path, key, value)
    return columns


async def _check_group(check: _Checker, conn: AsyncConnection, columns: Mapping[str, Any]) -> None:
    group_id = columns.get("group_id")
    if group_id is None or group_id <= 0:
        return
    if group_id > MAX_INT32 or not await admin_queries.plan_group_exists(conn, group_id):
        check.bad("group_id", f"no plan group {group_id}")


async def create_plan(
    values: Mapping[str, Any], created_by: int | None, *, conn: AsyncConnection
) -> PlanInfo:
    """Create a plan from ``values`` (one per :data:`PLAN_PATHS`); the new plan."""
    check = _Checker("plan")
    columns = _plan_columns(check, values, PLAN_PATHS, creating=True)
    check.raise_if_any()
    await _check_group(check, conn, columns)
    check.raise_if_any()
    columns["created_by"] = created_by
    plan_id = await admin_queries.insert_plan(conn, columns)
    audit_change("plans", "INSERT", {"plan_id": plan_id, **columns})
    return await _plan(conn, plan_id)


async def update_plan(
    plan_id: int,
    values: Mapping[str, Any],
    mask: Iterable[str],
    *,
    conn: AsyncConnection,
) -> PlanInfo:
    """Change the fields of plan ``plan_id`` named by ``mask``; the updated plan."""
    paths = mask_paths(mask, PLAN_PATHS, PLAN_OUTPUT_ONLY, PLAN_GROUPS)
    check = _Checker("plan")
    if plan_id <= 0:
        check.bad("plan_id", "required: a positive id")
    columns = _plan_columns(check, values, paths, creating=False)
    check.raise_if_any()
    await _check_group(check, conn, columns)
    check.raise_if_any()
    if plan_id > MAX_INT32 or not await admin_queries.update_plan(conn, plan_id, columns):
        raise _plan_not_found(plan_id)
    audit_change("plans", "UPDATE", {"plan_id": plan_id, "fields": paths, "changes": columns})
    return await _plan(conn, plan_id)


async def delete_plan(plan_id: int, *, conn: AsyncConnection) -> None:
    """Withdraw a plan (status inactive); idempotent. The row is never removed."""
    row = await _lock_plan(conn, plan_id)
    if row.status != INACTIVE:
        await admin_queries.update_plan(conn, plan_id, {"status": INACTIVE})
    audit_change(
        "plans",
        "UPDATE",
        {"plan_id": plan_id, "operation": "deactivate", "status": INACTIVE, "was": row.status},
    )


async def _lock_plan(conn: AsyncConnection, plan_id: int) -> Row[Any]:
    if plan_id <= 0:
        raise InvalidArgument.field("plan_id", "required: a positive id")
    row = None if plan_id > MAX_INT32 else await admin_queries.lock_plan(conn, plan_id)
    if row is None:
        raise _plan_not_found(plan_id)
    return row


async def _plan(conn: AsyncConnection, plan_id: int) -> PlanInfo:
    row = await queries.get_plan(conn, plan_id)
    assert row is not None
    return PlanInfo.from_row(row)


def _plan_not_found(plan_id: int) -> NotFound:
    return NotFound(f"plan {plan_id} not found", metadata={"plan_id": str(plan_id)})


# ---------------------------------------------------------------- offers


def _bonus_json(check: _Checker, path: str, bonus: Mapping[str, Any]) -> dict[str, Any]:
    """Bonus allowances as stored in offers.bonus: PlanBenefits JSON, non-default values."""
    out: dict[str, Any] = {}
    for key in BENEFIT_KEYS:
        value = check.benefit(f"{path}.{key}", key, bonus.get(key, _EMPTY_BENEFIT[key]))
        if key == "talktime":
            if value:
                out[key] = {"units_minor": bonus[key].units_minor, "currency_code": CURRENCY}
        elif value:
            out[key] = value
    if not out:
        check.bad(path, "a BONUS offer must give at least one allowance")
    return out


_EMPTY_BENEFIT: Final[Mapping[str, Any]] = {
    **dict.fromkeys(BENEFIT_KEYS, 0),
    **dict.fromkeys(_BOOL_BENEFITS, False),
    "talktime": None,
    "extras": [],
}

#: Benefit columns of an offer; setting "benefit" rewrites all of them.
_BENEFIT_COLUMNS: Final = (
    "discount_percent",
    "discount_amount",
    "cashback_percent",
    "cashback_amount",
    "bonus",
)


def _benefit_columns(check: _Checker, benefit: BenefitIn | None) -> dict[str, Any]:
    columns: dict[str, Any] = dict.fromkeys(_BENEFIT_COLUMNS)
    if benefit is None:
        check.bad("benefit", "required")
        return columns
    kind = benefit.kind
    if kind not in BENEFIT_KINDS:
        check.bad(
            "benefit.kind",
            "required: OFFER_BENEFIT_KIND_DISCOUNT, OFFER_BENEFIT_KIND_CASHBACK or "
            "OFFER_BENEFIT_KIND_BONUS",
        )
        return columns
    if kind == "bonus":
        if benefit.percent_bps is not None:
            check.bad("benefit.percent_bps", "not used by BONUS offers")
        if benefit.fixed_amount is not None:
            check.bad("benefit.fixed_amount", "not used by BONUS offers")
        if benefit.max_amount is not None:
            check.bad("benefit.max_amount", "not used by BONUS offers")
        if benefit.bonus is None:
            check.bad("benefit.bonus", "required for BONUS offers")
        else:
            columns["bonus"] = _bonus_json(check, "benefit.bonus", benefit.bonus)
        return columns
    if benefit.bonus is not None:
        check.bad("benefit.bonus", "only BONUS offers give allowances")
    if benefit.percent_bps is not None:
        if not 1 <= benefit.percent_bps <= 10000:
            check.bad("benefit.percent_bps", "must be 1 to 10000 (0.01% to 100%)")
        columns[f"{kind}_percent"] = Decimal(benefit.percent_bps) / 100
    elif benefit.fixed_amount is not None:
        columns[f"{kind}_amount"] = check.amount(
            "benefit.fixed_amount", benefit.fixed_amount, positive=True
        )
    else:
        check.bad("benefit", "a DISCOUNT or CASHBACK offer needs percent_bps or fixed_amount")
    return columns


def _offer_columns(
    check: _Checker,
    values: Mapping[str, Any],
    paths: Collection[str],
    *,
    creating: bool,
    now: datetime,
) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for path in paths:
        value = values[path]
        if path == "offer_name":
            columns["offer_name"] = check.name(path, value)
        elif path == "offer_validity_days":
            columns["offer_validity"] = check.days(path, value, optional=True)
        elif path == "offer_type_id":
            columns["offer_type_id"] = check.reference_id(path, value)
        elif path == "is_special":
            columns["is_special"] = bool(value)
        elif path == "criteria":
            columns["criteria"] = check.criteria(path, value, offers.OFFER_CRITERIA)
        elif path == "description":
            columns["description"] = check.description(path, value)
        elif path == "status":
            columns["status"] = check.status(path, value, default=ACTIVE if creating else None)
        elif path == "benefit":
            columns.update(_benefit_columns(check, value))
        elif path == "benefit.max_amount":
            benefit = values["benefit"] if "benefit" in paths else None
            if value is not None and benefit is not None and benefit.kind == "bonus":
                continue  # reported by _benefit_columns
            columns["max_benefit_amount"] = check.amount(path, value, positive=True)
        elif path == "benefit.min_plan_price":
            columns["min_plan_price"] = check.amount(path, value, positive=False)
        elif path == "expires_at":
            if creating and value is not None and value <= now:
                check.bad(path, "must be in the future")
            columns["valid_to"] = value
    return columns


async def _check_offer_type(
    check: _Checker, conn: AsyncConnection, columns: Mapping[str, Any]
) -> None:
    type_id = columns.get("offer_type_id")
    if type_id is None or type_id <= 0:
        return
    if type_id > MAX_INT32 or not await admin_queries.offer_type_exists(conn, type_id):
        check.bad("offer_type_id", f"no offer type {type_id}")


async def create_offer(
    values: Mapping[str, Any],
    created_by: int | None,
    now: datetime | None = None,
    *,
    conn: AsyncConnection,
) -> OfferInfo:
    """Create an offer from ``values`` (one per :data:`OFFER_PATHS`); the new offer."""
    check = _Checker("offer")
    columns = _offer_columns(
        check, values, OFFER_PATHS, creating=True, now=now or datetime.now(UTC)
    )
    check.raise_if_any()
    await _check_offer_type(check, conn, columns)
    check.raise_if_any()
    columns["created_by"] = created_by
    offer_id = await admin_queries.insert_offer(conn, columns)
    audit_change("offers", "INSERT", {"offer_id": offer_id, **columns})
    return await _offer(conn, offer_id)


async def update_offer(
    offer_id: int,
    values: Mapping[str, Any],
    mask: Iterable[str],
    now: datetime | None = None,
    *,
    conn: AsyncConnection,
) -> OfferInfo:
    """Change the fields of offer ``offer_id`` named by ``mask``; the updated offer.

    ``benefit`` replaces the whole benefit (kind, value, cap, minimum price).
    """
    paths = mask_paths(mask, OFFER_PATHS, OFFER_OUTPUT_ONLY, OFFER_GROUPS)
    check = _Checker("offer")
    if offer_id <= 0:
        check.bad("offer_id", "required: a positive id")
    columns = _offer_columns(check, values, paths, creating=False, now=now or datetime.now(UTC))
    check.raise_if_any()
    await _check_offer_type(check, conn, columns)
    check.raise_if_any()
    current = await _lock_offer(conn, offer_id)
    valid_to = columns.get("valid_to")
    if valid_to is not None and current.valid_from is not None and valid_to <= current.valid_from:
        check.bad("expires_at", f"must be after the offer's start ({current.valid_from})")
        check.raise_if_any()
    await admin_queries.update_offer(conn, offer_id, columns)
    audit_change("offers", "UPDATE", {"offer_id": offer_id, "fields": paths, "changes": columns})
    return await _offer(conn, offer_id)


async def delete_offer(offer_id: int, *, conn: AsyncConnection) -> None:
    """Withdraw an offer (status inactive); idempotent. The row is never removed."""
    row = await _lock_offer(conn, offer_id)
    if row.status != INACTIVE:
        await admin_queries.update_offer(conn, offer_id, {"status": INACTIVE})
    audit_change(
        "offers",
        "UPDATE",
        {"offer_id": offer_id, "operation": "deactivate", "status": INACTIVE, "was": row.status},
    )


async def _lock_offer(conn: AsyncConnection, offer_id: int) -> Row[Any]:
    if offer_id <= 0:
        raise InvalidArgument.field("offer_id", "required: a positive id")
    row = None if offer_id > MAX_INT32 else await admin_queries.lock_offer(conn, offer_id)
    if row is None:
        raise NotFound(f"offer {offer_id} not found", metadata={"offer_id": str(offer_id)})
    return row


async def _offer(conn: AsyncConnection, offer_id: int) -> OfferInfo:
    row = await queries.get_offer(conn, offer_id)
    assert row is not None
    return OfferInfo.from_row(row)


# ---------------------------------------------------------------- reference data


async def create_plan_group(name: str, description: str, *, conn: AsyncConnection) -> PlanGroup:
    """A new plan group; ALREADY_EXISTS if the name is taken."""
    check = _Checker("plan_group")
    if not 1 <= len(name) <= MAX_REFERENCE_NAME or not _REFERENCE_NAME.fullmatch(name):
        check.bad("group_name", f"required: 1 to {MAX_REFERENCE_NAME} characters of a-z, 0-9, _")
    desc = check.description("description", description)
    check.raise_if_any()
    row = await admin_queries.insert_plan_group(conn, name, desc)
    if row is None:
        raise AlreadyExists(
            f"plan group {name!r} exists",
            reason="PLAN_GROUP_EXISTS",
            metadata={"group_name": name},
        )
    audit_change("plangroups", "INSERT", {"group_id": row.group_id, "group_name": name})
    return PlanGroup.from_row(row)


async def create_offer_type(name: str, description: str, *, conn: AsyncConnection) -> OfferType:
    """A new offer type; ALREADY_EXISTS if the name is taken."""
    check = _Checker("offer_type")
    if not 1 <= len(name) <= MAX_REFERENCE_NAME or not _REFERENCE_NAME.fullmatch(name):
        check.bad(
            "offer_type_name", f"required: 1 to {MAX_REFERENCE_NAME} characters of a-z, 0-9, _"
        )
    desc = check.description("description", description)
    check.raise_if_any()
    row = await admin_queries.insert_offer_type(conn, name, desc)
    if row is None:
        raise AlreadyExists(
            f"offer type {name!r} exists",
            reason="OFFER_TYPE_EXISTS",
            metadata={"offer_type_name": name},
        )
    audit_change(
        "offertypes", "INSERT", {"offer_type_id": row.offer_type_id, "offer_type_name": name}
    )
    return OfferType.from_row(row)
