"""SQL for the plan catalogue (SQLAlchemy Core; keyset pagination on each list's
documented order, the primary key breaking ties)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, Select, not_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core import pagination
from server.core.schema import offers, offertypes, plangroups, plans

_PLAN_COLUMNS = (*plans.c, plangroups.c.group_name)
_OFFER_COLUMNS = (*offers.c, offertypes.c.offer_type_name)


def _plans_select() -> Select[Any]:
    return select(*_PLAN_COLUMNS).select_from(
        plans.outerjoin(plangroups, plans.c.group_id == plangroups.c.group_id)
    )


def _offers_select() -> Select[Any]:
    return select(*_OFFER_COLUMNS).select_from(
        offers.outerjoin(offertypes, offers.c.offer_type_id == offertypes.c.offer_type_id)
    )


#: ListPlans' order: most popular first, then by price (cheapest first), then id.
_PLAN_ORDER = (not_(plans.c.most_popular), plans.c.price, plans.c.plan_id)


async def list_plans(
    conn: AsyncConnection,
    *,
    plan_type: str | None,
    group_id: int | None,
    most_popular: bool | None,
    status: str,
    after: tuple[bool, Decimal, int] | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """Plans most popular first, then by price, then id, after the position ``after``
    (most_popular, price, plan_id of the last row of the previous page)."""
    query = _plans_select().where(plans.c.status == status)
    if plan_type is not None:
        query = query.where(plans.c.plan_type == plan_type)
    if group_id is not None:
        query = query.where(plans.c.group_id == group_id)
    if most_popular is not None:
        query = query.where(plans.c.most_popular.is_(most_popular))
    if after is not None:
        popular, price, plan_id = after
        query = query.where(tuple_(*_PLAN_ORDER) > tuple_(not popular, price, plan_id))
    result = await conn.execute(query.order_by(*_PLAN_ORDER).limit(limit))
    rows: Sequence[Row[Any]] = result.all()
    return rows


async def get_plan(conn: AsyncConnection, plan_id: int) -> Row[Any] | None:
    result = await conn.execute(_plans_select().where(plans.c.plan_id == plan_id))
    row: Row[Any] | None = result.one_or_none()
    return row


async def list_plan_groups(
    conn: AsyncConnection, *, after: tuple[str, int] | None, limit: int
) -> Sequence[Row[Any]]:
    """Plan groups by name (then id), after the position (group_name, group_id)."""
    order = (plangroups.c.group_name, plangroups.c.group_id)
    query = select(plangroups)
    if after is not None:
        query = query.where(tuple_(*order) > tuple_(*after))
    result = await conn.execute(query.order_by(*order).limit(limit))
    return result.all()


async def list_offers(
    conn: AsyncConnection,
    *,
    offer_type_id: int | None,
    status: str,
    is_special: bool | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """Offers newest first (created_at, then id), after the position ``after``."""
    query = _offers_select().where(offers.c.status == status)
    if offer_type_id is not None:
        query = query.where(offers.c.offer_type_id == offer_type_id)
    if is_special is not None:
        query = query.where(offers.c.is_special.is_(is_special))
    result = await conn.execute(
        pagination.keyset_query(
            query, offers.c.created_at, offers.c.offer_id, after, limit, newest_first=True
        )
    )
    rows: Sequence[Row[Any]] = result.all()
    return rows


async def get_offer(conn: AsyncConnection, offer_id: int) -> Row[Any] | None:
    result = await conn.execute(_offers_select().where(offers.c.offer_id == offer_id))
    row: Row[Any] | None = result.one_or_none()
    return row


async def list_offer_types(
    conn: AsyncConnection, *, after: tuple[str, int] | None, limit: int
) -> Sequence[Row[Any]]:
    """Offer types by name (then id), after the position (offer_type_name, id)."""
    order = (offertypes.c.offer_type_name, offertypes.c.offer_type_id)
    query = select(offertypes)
    if after is not None:
        query = query.where(tuple_(*order) > tuple_(*after))
    result = await conn.execute(query.order_by(*order).limit(limit))
    return result.all()


async def all_plans(conn: AsyncConnection) -> Sequence[Row[Any]]:
    """Every plan, any status, with its group name (for the in-process catalogue)."""
    result = await conn.execute(_plans_select().order_by(plans.c.plan_id))
    rows: Sequence[Row[Any]] = result.all()
    return rows


async def all_offers(conn: AsyncConnection) -> Sequence[Row[Any]]:
    """Every offer, any status, with its offer-type name (for the in-process catalogue)."""
    result = await conn.execute(_offers_select().order_by(offers.c.offer_id))
    rows: Sequence[Row[Any]] = result.all()
    return rows
