"""Catalogue rules: filters, pagination and lookups (no grpc here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core import pagination
from server.core.errors import FieldViolation, InvalidArgument, NotFound
from server.plans import queries

ACTIVE = "active"
#: Ids are PostgreSQL ``integer``; a larger id (the API's are int64) matches no row.
MAX_ID = 2**31 - 1

Rows = Sequence[Row[Any]]


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


def _positive_id(name: str, value: int) -> None:
    if value <= 0:
        raise InvalidArgument.field(name, "must be a positive id")


def _check_optional_id(violations: list[FieldViolation], name: str, value: int | None) -> None:
    if value is not None and value <= 0:
        violations.append(FieldViolation(name, "must be a positive id, or 0 for no filter"))


async def list_plans(
    conn: AsyncConnection, flt: PlanFilter, page_size: int, page_token: str
) -> tuple[Rows, str]:
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
        after_id=page.after,
        limit=page.fetch,
    )
    items, more = pagination.split(list(rows), page)
    return items, page.next_token(items[-1].plan_id if items else None, more)


async def get_plan(conn: AsyncConnection, plan_id: int) -> Row[Any]:
    _positive_id("plan_id", plan_id)
    row = None if plan_id > MAX_ID else await queries.get_plan(conn, plan_id)
    if row is None:
        raise NotFound(f"plan {plan_id} not found", metadata={"plan_id": str(plan_id)})
    return row


async def list_plan_groups(
    conn: AsyncConnection, page_size: int, page_token: str
) -> tuple[Rows, str]:
    page = pagination.parse(page_size, page_token, {"plan_groups": {}})
    rows = await queries.list_plan_groups(conn, after_id=page.after, limit=page.fetch)
    items, more = pagination.split(list(rows), page)
    return items, page.next_token(items[-1].group_id if items else None, more)


async def list_offers(
    conn: AsyncConnection, flt: OfferFilter, page_size: int, page_token: str
) -> tuple[Rows, str]:
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
        after_id=page.after,
        limit=page.fetch,
    )
    items, more = pagination.split(list(rows), page)
    return items, page.next_token(items[-1].offer_id if items else None, more)


async def get_offer(conn: AsyncConnection, offer_id: int) -> Row[Any]:
    _positive_id("offer_id", offer_id)
    row = None if offer_id > MAX_ID else await queries.get_offer(conn, offer_id)
    if row is None:
        raise NotFound(f"offer {offer_id} not found", metadata={"offer_id": str(offer_id)})
    return row


async def list_offer_types(
    conn: AsyncConnection, page_size: int, page_token: str
) -> tuple[Rows, str]:
    page = pagination.parse(page_size, page_token, {"offer_types": {}})
    rows = await queries.list_offer_types(conn, after_id=page.after, limit=page.fetch)
    items, more = pagination.split(list(rows), page)
    return items, page.next_token(items[-1].offer_type_id if items else None, more)
