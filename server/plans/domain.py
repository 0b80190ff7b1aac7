"""Catalogue rules: the plan and offer values, filters, pagination and lookups (no grpc
here).

Every function works on the connection it is given (keyword ``conn``); the servicer
opens it (server/core/db.py ``Database``). What leaves this package is typed, frozen
values (:class:`PlanInfo`, :class:`OfferInfo`, :class:`PlanGroup`, :class:`OfferType`),
never SQLAlchemy rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core import pagination
from server.core.errors import FieldViolation, InvalidArgument, NotFound
from server.plans import queries

ACTIVE = "active"
#: Ids are PostgreSQL ``integer``; a larger id (the API's are int64) matches no row.
MAX_ID = 2**31 - 1

_EMPTY: Mapping[str, Any] = MappingProxyType({})


# ---------------------------------------------------------------- values


def _frozen(value: Any) -> Mapping[str, Any]:
    """A read-only view of a JSON object column for the rule set; NULL is {}.

    Anything else (a list, a string: only possible through SQL) becomes a single
    unknown key, so the rule set fails closed on it instead of reading "no rules".
    """
    if value is None:
        return _EMPTY
    if isinstance(value, dict):
        return MappingProxyType(value)
    return MappingProxyType({"<malformed>": value})


def _stored(value: Any) -> Any:
    """A JSON column as stored (None when NULL), objects as read-only views."""
    return MappingProxyType(value) if isinstance(value, dict) else value


@dataclass(frozen=True)
class PlanBenefits:
    """What a plan gives; None (or 0, False) is "not included"."""

    data_mb: int | None = None
    data_mb_per_day: int | None = None
    unlimited_data: bool = False
    voice_minutes: int | None = None
    unlimited_voice: bool = False
    sms_count: int = 0
    sms_per_day: int | None = None
    talktime: Decimal | None = None
    extras: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlanInfo:
    """A plan (any status) with its group name: what the rule set, the catalogue and
    the API read."""

    plan_id: int
    plan_name: str
    validity_days: int
    plan_type: str
    group_id: int | None
    group_name: str | None
    price: Decimal
    currency: str
    status: str
    most_popular: bool
    #: The rules of the plan (server/plans/offers.py): NULL is {}, a non-object fails
    #: closed.
    criteria: Mapping[str, Any]
    description: str | None
    benefits: PlanBenefits
    created_at: datetime
    created_by: int | None
    #: The criteria column as stored (None when NULL): what the API shows.
    stored_criteria: Any

    @classmethod
    def from_row(cls, row: Row[Any]) -> PlanInfo:
        """From a plans row with ``group_name`` (server/plans/queries.py)."""
        return cls(
            plan_id=row.plan_id,
            plan_name=row.plan_name,
            validity_days=row.validity,
            plan_type=row.plan_type,
            group_id=row.group_id,
            group_name=row.group_name,
            price=row.price,
            currency=row.currency,
            status=row.status,
            most_popular=row.most_popular,
            criteria=_frozen(row.criteria),
            description=row.description,
            benefits=PlanBenefits(
                data_mb=row.data_mb,
                data_mb_per_day=row.data_mb_per_day,
                unlimited_data=row.unlimited_data,
                voice_minutes=row.voice_minutes,
                unlimited_voice=row.unlimited_voice,
                sms_count=row.sms_count,
                sms_per_day=row.sms_per_day,
                talktime=row.talktime,
                extras=tuple(row.extras or ()),
            ),
            created_at=row.created_at,
            created_by=row.created_by,
            stored_criteria=_stored(row.criteria),
        )


@dataclass(frozen=True)
class OfferInfo:
    """An offer (any status) with its offer-type name: what the rule set, the catalogue
    and the API read."""

    offer_id: int
    offer_name: str
    offer_type_name: str | None
    status: str
    #: The rules of the offer (server/plans/offers.py): NULL is {}, a non-object fails
    #: closed.
    criteria: Mapping[str, Any]
    discount_percent: Decimal | None
    discount_amount: Decimal | None
    cashback_percent: Decimal | None
    cashback_amount: Decimal | None
    max_benefit_amount: Decimal | None
    min_plan_price: Decimal | None
    #: Bonus allowances (PlanBenefits-shaped JSON); None when NULL.
    bonus: Mapping[str, Any] | None
    valid_from: datetime | None
    valid_to: datetime | None
    offer_validity_days: int | None
    created_at: datetime
    offer_type_id: int | None
    is_special: bool
    description: str | None
    created_by: int | None
    #: The criteria and bonus columns as stored (None when NULL): what the API shows.
    stored_criteria: Any
    stored_bonus: Any

    @property
    def expires_at(self) -> datetime | None:
        """When the offer ends: valid_to or created_at + offer_validity_days, whichever
        is first; None if neither is set."""
        ends = [self.valid_to] if self.valid_to is not None else []
        if self.offer_validity_days is not None:
            ends.append(self.created_at + timedelta(days=self.offer_validity_days))
        return min(ends) if ends else None

    @classmethod
    def from_row(cls, row: Row[Any]) -> OfferInfo:
        """From an offers row with ``offer_type_name`` (server/plans/queries.py)."""
        return cls(
            offer_id=row.offer_id,
            offer_name=row.offer_name,
            offer_type_name=row.offer_type_name,
            status=row.status,
            criteria=_frozen(row.criteria),
            discount_percent=row.discount_percent,
            discount_amount=row.discount_amount,
            cashback_percent=row.cashback_percent,
            cashback_amount=row.cashback_amount,
            max_benefit_amount=row.max_benefit_amount,
            min_plan_price=row.min_plan_price,
            bonus=None if row.bonus is None else _frozen(row.bonus),
            valid_from=row.valid_from,
            valid_to=row.valid_to,
            offer_validity_days=row.offer_validity,
            created_at=row.created_at,
            offer_type_id=row.offer_type_id,
            is_special=row.is_special,
            description=row.description,
            created_by=row.created_by,
            stored_criteria=_stored(row.criteria),
            stored_bonus=_stored(row.bonus),
        )


@dataclass(frozen=True)
class PlanGroup:
    group_id: int
    group_name: str
    description: str | None

    @classmethod
    def from_row(cls, row: Row[Any]) -> PlanGroup:
        return cls(group_id=row.group_id, group_name=row.group_name, description=row.description)


@dataclass(frozen=True)
class OfferType:
    offer_type_id: int
    offer_type_name: str
    description: str | None

    @classmethod
    def from_row(cls, row: Row[Any]) -> OfferType:
        return cls(
            offer_type_id=row.offer_type_id,
            offer_type_name=row.offer_type_name,
            description=row.description,
        )


@dataclass(frozen=True)
class PlanFilter:
    """ListPlans filters; ``None`` does not filter. ``status`` defaults to active."""

    plan_type: str | None = None
    group_id: int | None = None
    most_popular: bool | None = None
    status: str = ACTIVE


@dataclass(frozen=True)
class OfferFilter:
    offer_type_id: int | None = None
    status: str = ACTIVE
    is_special: bool | None = None


# ---------------------------------------------------------------- reads


def _positive_id(name: str, value: int) -> None:
    if value <= 0:
        raise InvalidArgument.field(name, "must be a positive id")


def _check_optional_id(violations: list[FieldViolation], name: str, value: int | None) -> None:
    if value is not None and value <= 0:
        violations.append(FieldViolation(name, "must be a positive id, or 0 for no filter"))


async def list_plans(
    flt: PlanFilter, page_size: int, page_token: str, *, conn: AsyncConnection
) -> tuple[list[PlanInfo], str]:
    """One page of plans in id order, and the token of the next page ("" at the end)."""
    violations: list[FieldViolation] = []
    _check_optional_id(violations, "group_id", flt.group_id)
    if violations:
        raise InvalidArgument.of(violations)
    page = pagination.parse(page_size, page_token, {"plans": asdict(flt)})
    if flt.group_id is not None and flt.group_id > MAX_ID:
        return [], ""
    rows = await queries.list_plans(
        conn,
        plan_type=flt.plan_type,
        group_id=flt.group_id,
        most_popular=flt.most_popular,
        status=flt.status,
        after_id=pagination.id_keyset(page.after),
        limit=page.fetch,
    )
    items, more = pagination.split(list(rows), page)
    token = page.next_token(items[-1].plan_id if items else None, more)
    return [PlanInfo.from_row(r) for r in items], token


async def get_plan(plan_id: int, *, conn: AsyncConnection) -> PlanInfo:
    """The plan with this id, whatever its status; NOT_FOUND if there is none."""
    _positive_id("plan_id", plan_id)
    row = None if plan_id > MAX_ID else await queries.get_plan(conn, plan_id)
    if row is None:
        raise NotFound(f"plan {plan_id} not found", metadata={"plan_id": str(plan_id)})
    return PlanInfo.from_row(row)


async def list_plan_groups(
    page_size: int, page_token: str, *, conn: AsyncConnection
) -> tuple[list[PlanGroup], str]:
    page = pagination.parse(page_size, page_token, {"plan_groups": {}})
    rows = await queries.list_plan_groups(
        conn, after_id=pagination.id_keyset(page.after), limit=page.fetch
    )
    items, more = pagination.split(list(rows), page)
    token = page.next_token(items[-1].group_id if items else None, more)
    return [PlanGroup.from_row(r) for r in items], token


async def list_offers(
    flt: OfferFilter, page_size: int, page_token: str, *, conn: AsyncConnection
) -> tuple[list[OfferInfo], str]:
    """One page of offers in id order, and the token of the next page ("" at the end)."""
    violations: list[FieldViolation] = []
    _check_optional_id(violations, "offer_type_id", flt.offer_type_id)
    if violations:
        raise InvalidArgument.of(violations)
    page = pagination.parse(page_size, page_token, {"offers": asdict(flt)})
    if flt.offer_type_id is not None and flt.offer_type_id > MAX_ID:
        return [], ""
    rows = await queries.list_offers(
        conn,
        offer_type_id=flt.offer_type_id,
        status=flt.status,
        is_special=flt.is_special,
        after_id=pagination.id_keyset(page.after),
        limit=page.fetch,
    )
    items, more = pagination.split(list(rows), page)
    token = page.next_token(items[-1].offer_id if items else None, more)
    return [OfferInfo.from_row(r) for r in items], token


async def get_offer(offer_id: int, *, conn: AsyncConnection) -> OfferInfo:
    """The offer with this id, whatever its status; NOT_FOUND if there is none."""
    _positive_id("offer_id", offer_id)
    row = None if offer_id > MAX_ID else await queries.get_offer(conn, offer_id)
    if row is None:
        raise NotFound(f"offer {offer_id} not found", metadata={"offer_id": str(offer_id)})
    return OfferInfo.from_row(row)


async def list_offer_types(
    page_size: int, page_token: str, *, conn: AsyncConnection
) -> tuple[list[OfferType], str]:
    page = pagination.parse(page_size, page_token, {"offer_types": {}})
    rows = await queries.list_offer_types(
        conn, after_id=pagination.id_keyset(page.after), limit=page.fetch
    )
    items, more = pagination.split(list(rows), page)
    token = page.next_token(items[-1].offer_type_id if items else None, more)
    return [OfferType.from_row(r) for r in items], token
