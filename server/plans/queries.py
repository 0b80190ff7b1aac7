"""SQL for the plan catalogue (SQLAlchemy Core; keyset pagination on primary keys)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Select, select
from sqlalchemy.ext.asyncio import AsyncConnection

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


async def list_plans(
    conn: AsyncConnection,
    *,
    plan_type: str | None,
    group_id: int | None,
    most_popular: bool | None,
    status: str,
    after_id: int | None,
    limit: int,
) -> Sequence[Row[Any]]:
    query = _plans_select().where(plans.c.status == status)
    if plan_type is not None:
        query = query.where(plans.c.plan_type == plan_type)
    if group_id is not None:
        query = query.where(plans.c.group_id == group_id)
    if most_popular is not None:
        query = query.where(plans.c.most_popular.is_(most_popular))
    if after_id is not None:
        query = query.where(plans.c.plan_id > after_id)
    result = await conn.execute(query.order_by(plans.c.plan_id).limit(limit))
    rows: Sequence[Row[Any]] = result.all()
    return rows


async def get_plan(conn: AsyncConnection, plan_id: int) -> Row[Any] | None:
    result = await conn.execute(_plans_select().where(plans.c.plan_id == plan_id))
    row: Row[Any] | None = result.one_or_none()
    return row


async def list_plan_groups(
    conn: AsyncConnection, *, after_id: int | None, limit: int
) -> Sequence[Row[Any]]:
    query = select(plangroups)
    if after_id is not None:
        query = query.where(plangroups.c.group_id > after_id)
    result = await conn.execute(query.order_by(plangroups.c.group_id).limit(limit))
    return result.all()


async def list_offers(
    conn: AsyncConnection,
    *,
    offer_type_id: int | None,
    status: str,
    is_special: bool | None,
    after_id: int | None,
    limit: int,
) -> Sequence[Row[Any]]:
    query = _offers_select().where(offers.c.status == status)
    if offer_type_id is not None:
        query = query.where(offers.c.offer_type_id == offer_type_id)
    if is_special is not None:
        query = query.where(offers.c.is_special.is_(is_special))
    if after_id is not None:
        query = query.where(offers.c.offer_id > after_id)
    result = await conn.execute(query.order_by(offers.c.offer_id).limit(limit))
    rows: Sequence[Row[Any]] = result.all()
    return rows


async def get_offer(conn: AsyncConnection, offer_id: int) -> Row[Any] | None:
    result = await conn.execute(_offers_select().where(offers.c.offer_id == offer_id))
    row: Row[Any] | None = result.one_or_none()
    return row


async def list_offer_types(
    conn: AsyncConnection, *, after_id: int | None, limit: int
) -> Sequence[Row[Any]]:
    query = select(offertypes)
    if after_id is not None:
        query = query.where(offertypes.c.offer_type_id > after_id)
    result = await conn.execute(query.order_by(offertypes.c.offer_type_id).limit(limit))
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
