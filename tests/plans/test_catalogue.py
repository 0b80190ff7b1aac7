"""The in-process plan catalogue (server/plans/catalogue.py) over a real, migrated
PostgreSQL database; its TTL runs on a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from server.core import db
from server.core.db import Database
from server.core.schema import offers, offertypes, plangroups, plans
from server.plans.catalogue import Catalogue
from server.plans.convert import offer_message, plan_message
from server.plans.offers import Buyer, evaluate
from tests.helpers.clock import FakeClock


@pytest.fixture
async def engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    engine = db.create_engine(pg_url, pool_size=3)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _insert_plan(engine: AsyncEngine, name: str, price: str = "199.00") -> int:
    async with db.Database(engine).transaction() as conn:
        group_id = (
            await conn.execute(
                select(plangroups.c.group_id).where(plangroups.c.group_name == "unlimited")
            )
        ).scalar_one()
        result = await conn.execute(
            insert(plans)
            .values(
                plan_name=name,
                plan_type="prepaid",
                validity=28,
                price=Decimal(price),
                group_id=group_id,
                criteria={"user_types": ["prepaid"]},
            )
            .returning(plans.c.plan_id)
        )
        plan_id: int = result.scalar_one()
        return plan_id


async def _insert_offer(engine: AsyncEngine, name: str) -> int:
    async with db.Database(engine).transaction() as conn:
        type_id = (
            await conn.execute(
                select(offertypes.c.offer_type_id).where(offertypes.c.offer_type_name == "cashback")
            )
        ).scalar_one()
        result = await conn.execute(
            insert(offers)
            .values(
                offer_name=name,
                offer_type_id=type_id,
                cashback_percent=Decimal("10"),
                max_benefit_amount=Decimal("50"),
                criteria={"min_amount_minor": 19900},
                bonus={"data_mb": 1024},
                offer_validity=30,
            )
            .returning(offers.c.offer_id)
        )
        offer_id: int = result.scalar_one()
        return offer_id


async def _rename_plan(engine: AsyncEngine, plan_id: int, name: str) -> None:
    async with db.Database(engine).transaction() as conn:
        await conn.execute(update(plans).where(plans.c.plan_id == plan_id).values(plan_name=name))


async def test_catalogue_loads_plans_and_offers_with_names(engine: AsyncEngine) -> None:
    plan_id = await _insert_plan(engine, "Cat 199")
    offer_id = await _insert_offer(engine, "Cat cashback")
    catalogue = Catalogue(Database(engine), ttl_seconds=60)
    plan = await catalogue.plan(plan_id)
    assert plan is not None
    assert (plan.plan_name, plan.price, plan.currency, plan.status) == (
        "Cat 199",
        Decimal("199.00"),
        "INR",
        "active",
    )
    assert plan.group_name == "unlimited" and plan_message(plan).group_name == "unlimited"
    assert plan.validity_days == 28 and plan.plan_type == "prepaid"
    assert dict(plan.criteria) == {"user_types": ["prepaid"]}
    offer = await catalogue.offer(offer_id)
    assert offer is not None
    assert (
        offer.offer_type_name == "cashback" and offer_message(offer).offer_type_name == "cashback"
    )
    assert offer.cashback_percent == Decimal("10.00")
    assert offer.max_benefit_amount == Decimal("50.00")
    assert dict(offer.bonus or {}) == {"data_mb": 1024}
    assert offer.offer_validity_days == 30 and offer.created_at.tzinfo is not None
    assert catalogue.loads == 1
    # Both in one snapshot: a second lookup does not reload.
    assert await catalogue.plan(plan_id) is plan
    assert catalogue.loads == 1
    # The rule set runs on what the catalogue returns.
    repeat_buyer = Buyer(user_id=2, user_type="prepaid", first_recharge=False)
    outcome = evaluate(offer, plan, repeat_buyer, datetime.now(UTC))
    assert outcome.eligible and outcome.cashback == Decimal("19.90")


async def test_catalogue_reloads_after_ttl(engine: AsyncEngine) -> None:
    plan_id = await _insert_plan(engine, "Before")
    clock = FakeClock()
    catalogue = Catalogue(Database(engine), ttl_seconds=300, clock=clock)
    assert (await catalogue.plan(plan_id)).plan_name == "Before"  # type: ignore[union-attr]
    await _rename_plan(engine, plan_id, "After")
    assert (await catalogue.plan(plan_id)).plan_name == "Before"  # type: ignore[union-attr]
    clock.advance(299)  # whole seconds: no float rounding lands on the boundary
    assert (await catalogue.plan(plan_id)).plan_name == "Before"  # type: ignore[union-attr]
    clock.advance(1)
    assert (await catalogue.plan(plan_id)).plan_name == "After"  # type: ignore[union-attr]
    assert catalogue.loads == 2


async def test_invalidate_reloads_at_once(engine: AsyncEngine) -> None:
    plan_id = await _insert_plan(engine, "Before")
    catalogue = Catalogue(Database(engine), ttl_seconds=300)
    assert (await catalogue.plan(plan_id)).plan_name == "Before"  # type: ignore[union-attr]
    await _rename_plan(engine, plan_id, "After")
    catalogue.invalidate()
    assert (await catalogue.plan(plan_id)).plan_name == "After"  # type: ignore[union-attr]


async def test_miss_reloads_at_most_once_per_ttl(engine: AsyncEngine) -> None:
    clock = FakeClock()
    catalogue = Catalogue(Database(engine), ttl_seconds=300, clock=clock)
    assert await catalogue.plan(10**6) is None
    # The first miss reloaded once (on top of the first load) ...
    assert catalogue.loads == 2
    # ... so a plan created elsewhere right after is found by the next miss only after
    # ttl: misses do not hammer the database.
    plan_id = await _insert_plan(engine, "Elsewhere")
    assert await catalogue.plan(plan_id) is None
    assert await catalogue.offer(10**6) is None
    assert catalogue.loads == 2
    clock.advance(299)
    assert await catalogue.plan(plan_id) is None
    assert catalogue.loads == 2
    clock.advance(1)
    found = await catalogue.plan(plan_id)
    assert found is not None and found.plan_name == "Elsewhere"


async def test_miss_finds_a_plan_created_on_another_replica(engine: AsyncEngine) -> None:
    known = await _insert_plan(engine, "Known")
    catalogue = Catalogue(Database(engine), ttl_seconds=300)
    assert await catalogue.plan(known) is not None
    assert catalogue.loads == 1
    # Created "elsewhere" (no invalidate() here): the first miss reloads at once.
    plan_id = await _insert_plan(engine, "New elsewhere")
    offer_id = await _insert_offer(engine, "New offer elsewhere")
    found = await catalogue.plan(plan_id)
    assert found is not None and found.plan_name == "New elsewhere"
    # That reload brought the offer too, so its lookup is a hit.
    assert (await catalogue.offer(offer_id)) is not None
    assert catalogue.loads == 2


async def test_concurrent_lookups_share_one_reload(engine: AsyncEngine) -> None:
    plan_id = await _insert_plan(engine, "Shared")
    catalogue = Catalogue(Database(engine), ttl_seconds=300)
    results = await asyncio.gather(*(catalogue.plan(plan_id) for _ in range(20)))
    assert {r.plan_name for r in results if r is not None} == {"Shared"}
    assert catalogue.loads == 1
    catalogue.invalidate()
    await asyncio.gather(*(catalogue.plan(plan_id) for _ in range(20)))
    assert catalogue.loads == 2


async def test_zero_ttl_always_reads_the_database(engine: AsyncEngine) -> None:
    plan_id = await _insert_plan(engine, "Before")
    catalogue = Catalogue(Database(engine), ttl_seconds=0)
    assert (await catalogue.plan(plan_id)).plan_name == "Before"  # type: ignore[union-attr]
    await _rename_plan(engine, plan_id, "After")
    assert (await catalogue.plan(plan_id)).plan_name == "After"  # type: ignore[union-attr]
