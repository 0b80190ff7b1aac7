"""SQL for administering the catalogue (SQLAlchemy Core on server/core/schema.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Row, exists, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core.schema import offers, offertypes, plangroups, plans


async def plan_group_exists(conn: AsyncConnection, group_id: int) -> bool:
    result = await conn.execute(select(exists().where(plangroups.c.group_id == group_id)))
    return bool(result.scalar_one())


async def offer_type_exists(conn: AsyncConnection, offer_type_id: int) -> bool:
    result = await conn.execute(select(exists().where(offertypes.c.offer_type_id == offer_type_id)))
    return bool(result.scalar_one())


async def insert_plan(conn: AsyncConnection, values: Mapping[str, Any]) -> int:
    result = await conn.execute(insert(plans).values(**values).returning(plans.c.plan_id))
    plan_id: int = result.scalar_one()
    return plan_id


async def lock_plan(conn: AsyncConnection, plan_id: int) -> Row[Any] | None:
    """The plan row, locked until the end of the transaction; None if there is none."""
    result = await conn.execute(select(plans).where(plans.c.plan_id == plan_id).with_for_update())
    row: Row[Any] | None = result.one_or_none()
    return row


async def update_plan(conn: AsyncConnection, plan_id: int, values: Mapping[str, Any]) -> bool:
    """Set ``values`` (and updated_at); False if there is no such plan."""
    result = await conn.execute(
        update(plans)
        .where(plans.c.plan_id == plan_id)
        .values(**values, updated_at=func.now())
        .returning(plans.c.plan_id)
    )
    return result.one_or_none() is not None


async def insert_offer(conn: AsyncConnection, values: Mapping[str, Any]) -> int:
    result = await conn.execute(insert(offers).values(**values).returning(offers.c.offer_id))
    offer_id: int = result.scalar_one()
    return offer_id


async def lock_offer(conn: AsyncConnection, offer_id: int) -> Row[Any] | None:
    """The offer row, locked until the end of the transaction; None if there is none."""
    result = await conn.execute(
        select(offers).where(offers.c.offer_id == offer_id).with_for_update()
    )
    row: Row[Any] | None = result.one_or_none()
    return row


async def update_offer(conn: AsyncConnection, offer_id: int, values: Mapping[str, Any]) -> bool:
    result = await conn.execute(
        update(offers)
        .where(offers.c.offer_id == offer_id)
        .values(**values, updated_at=func.now())
        .returning(offers.c.offer_id)
    )
    return result.one_or_none() is not None


async def insert_plan_group(
    conn: AsyncConnection, name: str, description: str | None
) -> Row[Any] | None:
    """The new group; None if the name is taken."""
    result = await conn.execute(
        pg_insert(plangroups)
        .values(group_name=name, description=description)
        .on_conflict_do_nothing(index_elements=[plangroups.c.group_name])
        .returning(*plangroups.c)
    )
    row: Row[Any] | None = result.one_or_none()
    return row


async def insert_offer_type(
    conn: AsyncConnection, name: str, description: str | None
) -> Row[Any] | None:
    """The new offer type; None if the name is taken."""
    result = await conn.execute(
        pg_insert(offertypes)
        .values(offer_type_name=name, description=description)
        .on_conflict_do_nothing(index_elements=[offertypes.c.offer_type_name])
        .returning(*offertypes.c)
    )
    row: Row[Any] | None = result.one_or_none()
    return row
