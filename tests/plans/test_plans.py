"""PlanService read RPCs through the real server over real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import grpc
import pytest
from sqlalchemy import insert

from gencharge.v1 import common_pb2, plan_service_pb2_grpc
from gencharge.v1 import plan_service_pb2 as pb
from server.core import db
from server.core.schema import offers, offertypes, plangroups, plans
from tests.helpers.rpc import details_of


@dataclass
class Catalogue:
    plan_ids: dict[str, int]
    offer_ids: dict[str, int]
    group_ids: dict[str, int]
    offer_type_ids: dict[str, int]


PLANS = [
    # name, type, group, popular, status, price, validity
    ("Smart 199", "prepaid", "unlimited", True, "active", Decimal("199.00"), 28),
    ("Talk 99", "prepaid", "talktime", False, "active", Decimal("99.50"), 28),
    ("Roam 599", "prepaid", "roaming", False, "active", Decimal("599.00"), 30),
    ("Post 499", "postpaid", "unlimited", True, "active", Decimal("499.00"), 30),
    ("Old 149", "prepaid", "unlimited", False, "inactive", Decimal("149.00"), 28),
    ("Year 2999", "prepaid", "unlimited", True, "active", Decimal("2999.00"), 365),
]


@pytest.fixture
async def catalogue(pg_url: str) -> AsyncIterator[Catalogue]:
    engine = db.create_engine(pg_url, pool_size=1)
    try:
        async with db.Database(engine).transaction() as conn:
            groups = {
                r.group_name: r.group_id for r in (await conn.execute(plangroups.select())).all()
            }
            types = {
                r.offer_type_name: r.offer_type_id
                for r in (await conn.execute(offertypes.select())).all()
            }
            plan_ids = {}
            for name, ptype, group, popular, status, price, validity in PLANS:
                result = await conn.execute(
                    insert(plans)
                    .values(
                        plan_name=name,
                        plan_type=ptype,
                        group_id=groups[group],
                        most_popular=popular,
                        status=status,
                        price=price,
                        validity=validity,
                        description=f"{name} plan",
                        criteria={"min_age_days": 0},
                        data_mb_per_day=1536,
                        unlimited_voice=True,
                        sms_count=100,
                        talktime=Decimal("10.00") if group == "talktime" else None,
                        extras=["Hotstar Mobile 3 months"],
                    )
                    .returning(plans.c.plan_id)
                )
                plan_ids[name] = result.scalar_one()
            offer_ids = {}
            for name, otype, special, status, extra in [
                ("Cashback 10%", "cashback", False, "active", {"cashback_percent": Decimal("10")}),
                (
                    "Diwali Rs 50 off",
                    "festive_special",
                    True,
                    "active",
                    {"discount_amount": Decimal("50")},
                ),
                ("Expired bonus", "bonus_data", False, "inactive", {"bonus": {"data_mb": 2048}}),
            ]:
                result = await conn.execute(
                    insert(offers)
                    .values(
                        offer_name=name,
                        offer_type_id=types[otype],
                        is_special=special,
                        status=status,
                        offer_validity=30,
                        max_benefit_amount=Decimal("100"),
                        **extra,
                    )
                    .returning(offers.c.offer_id)
                )
                offer_ids[name] = result.scalar_one()
        yield Catalogue(plan_ids, offer_ids, groups, types)
    finally:
        await engine.dispose()


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> plan_service_pb2_grpc.PlanServiceStub:
    return plan_service_pb2_grpc.PlanServiceStub(channel)


async def _all_plans(stub: plan_service_pb2_grpc.PlanServiceStub, **filters: object) -> list[str]:
    reply = await stub.ListPlans(pb.ListPlansRequest(page_size=200, **filters))
    assert reply.next_page_token == ""
    return [p.plan_name for p in reply.plans]


async def test_list_plans_defaults_to_active_most_popular_first_then_by_price(
    stub, catalogue
) -> None:
    names = await _all_plans(stub)
    assert names == ["Smart 199", "Post 499", "Year 2999", "Talk 99", "Roam 599"]


async def test_plan_fields(stub, catalogue) -> None:
    plan = await stub.GetPlan(pb.GetPlanRequest(plan_id=catalogue.plan_ids["Talk 99"]))
    assert plan.plan_name == "Talk 99"
    assert plan.price.units_minor == 9950 and plan.price.currency_code == "INR"
    assert plan.validity_days == 28
    assert plan.plan_type == common_pb2.USER_TYPE_PREPAID
    assert plan.group_id == catalogue.group_ids["talktime"] and plan.group_name == "talktime"
    assert plan.status == pb.PLAN_STATUS_ACTIVE
    assert plan.benefits.data_mb_per_day == 1536 and plan.benefits.unlimited_voice
    assert plan.benefits.sms_count == 100
    assert plan.benefits.talktime.units_minor == 1000
    assert list(plan.benefits.extras) == ["Hotstar Mobile 3 months"]
    assert dict(plan.criteria) == {"min_age_days": 0}
    assert plan.created_at.seconds > 0


async def test_filters(stub, catalogue) -> None:
    assert await _all_plans(stub, plan_type=common_pb2.USER_TYPE_POSTPAID) == ["Post 499"]
    assert await _all_plans(stub, group_id=catalogue.group_ids["talktime"]) == ["Talk 99"]
    assert await _all_plans(stub, most_popular=True) == ["Smart 199", "Post 499", "Year 2999"]
    assert await _all_plans(stub, most_popular=False) == ["Talk 99", "Roam 599"]
    assert await _all_plans(stub, status=pb.PLAN_STATUS_INACTIVE) == ["Old 149"]
    assert await _all_plans(
        stub,
        plan_type=common_pb2.USER_TYPE_PREPAID,
        group_id=catalogue.group_ids["unlimited"],
        most_popular=True,
    ) == ["Smart 199", "Year 2999"]
    assert await _all_plans(stub, group_id=999999) == []


async def test_pagination_walks_every_page_once(stub, catalogue) -> None:
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        reply = await stub.ListPlans(pb.ListPlansRequest(page_size=2, page_token=token))
        assert len(reply.plans) <= 2
        seen += [p.plan_name for p in reply.plans]
        pages += 1
        token = reply.next_page_token
        if not token:
            break
    assert pages == 3
    assert seen == await _all_plans(stub)


async def test_exact_multiple_has_no_empty_last_page(stub, catalogue) -> None:
    reply = await stub.ListPlans(pb.ListPlansRequest(page_size=5))
    assert len(reply.plans) == 5 and reply.next_page_token == ""


async def test_page_size_above_maximum_is_capped(stub, catalogue) -> None:
    reply = await stub.ListPlans(pb.ListPlansRequest(page_size=100000))
    assert len(reply.plans) == 5


async def test_token_bound_to_filters(stub, catalogue) -> None:
    first = await stub.ListPlans(pb.ListPlansRequest(page_size=1))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListPlans(
            pb.ListPlansRequest(page_size=1, page_token=first.next_page_token, most_popular=True)
        )
    details = details_of(info.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in details.field_violations


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"page_size": -1}, "page_size"),
        ({"page_token": "not-a-token"}, "page_token"),
        ({"page_token": "eyJ4IjoxfQ"}, "page_token"),
        ({"group_id": -3}, "group_id"),
        ({"plan_type": 42}, "plan_type"),
        ({"status": 9}, "status"),
    ],
)
async def test_list_plans_invalid_argument(stub, catalogue, request_fields, field) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListPlans(pb.ListPlansRequest(**request_fields))
    details = details_of(info.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in details.field_violations
    assert details.reason == "INVALID_ARGUMENT"


async def test_get_plan_not_found_and_invalid(stub, catalogue) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetPlan(pb.GetPlanRequest(plan_id=10**9))
    details = details_of(info.value)
    assert details.code == grpc.StatusCode.NOT_FOUND
    assert details.metadata == {"plan_id": str(10**9)}
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetPlan(pb.GetPlanRequest(plan_id=0))
    assert details_of(info.value).field_violations.keys() == {"plan_id"}


async def test_inactive_plan_is_still_readable_by_id(stub, catalogue) -> None:
    plan = await stub.GetPlan(pb.GetPlanRequest(plan_id=catalogue.plan_ids["Old 149"]))
    assert plan.status == pb.PLAN_STATUS_INACTIVE


async def test_list_plan_groups_reference_data_paginated(stub, catalogue) -> None:
    first = await stub.ListPlanGroups(pb.ListPlanGroupsRequest(page_size=3))
    second = await stub.ListPlanGroups(
        pb.ListPlanGroupsRequest(page_size=3, page_token=first.next_page_token)
    )
    names = [g.group_name for g in [*first.plan_groups, *second.plan_groups]]
    assert {"talktime", "unlimited", "roaming", "other"} <= set(names)
    assert names == sorted(names)  # by name
    assert first.plan_groups[0].description
    assert second.next_page_token == ""


async def test_list_offers_and_filters(stub, catalogue) -> None:
    reply = await stub.ListOffers(pb.ListOffersRequest())
    # Newest first: created together, so the later id first.
    assert [o.offer_name for o in reply.offers] == ["Diwali Rs 50 off", "Cashback 10%"]
    special = await stub.ListOffers(pb.ListOffersRequest(is_special=True))
    assert [o.offer_name for o in special.offers] == ["Diwali Rs 50 off"]
    inactive = await stub.ListOffers(pb.ListOffersRequest(status=pb.OFFER_STATUS_INACTIVE))
    assert [o.offer_name for o in inactive.offers] == ["Expired bonus"]
    by_type = await stub.ListOffers(
        pb.ListOffersRequest(offer_type_id=catalogue.offer_type_ids["cashback"])
    )
    assert [o.offer_name for o in by_type.offers] == ["Cashback 10%"]
    paged = await stub.ListOffers(pb.ListOffersRequest(page_size=1))
    assert len(paged.offers) == 1 and paged.next_page_token
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListOffers(pb.ListOffersRequest(offer_type_id=-1))
    assert details_of(info.value).field_violations.keys() == {"offer_type_id"}


async def test_get_offer_benefits(stub, catalogue) -> None:
    cashback = await stub.GetOffer(pb.GetOfferRequest(offer_id=catalogue.offer_ids["Cashback 10%"]))
    assert cashback.offer_type_name == "cashback"
    assert cashback.benefit.kind == pb.OFFER_BENEFIT_KIND_CASHBACK
    assert cashback.benefit.percent_bps == 1000
    assert cashback.benefit.max_amount.units_minor == 10000
    diwali = await stub.GetOffer(
        pb.GetOfferRequest(offer_id=catalogue.offer_ids["Diwali Rs 50 off"])
    )
    assert diwali.is_special
    assert diwali.benefit.kind == pb.OFFER_BENEFIT_KIND_DISCOUNT
    assert diwali.benefit.fixed_amount.units_minor == 5000
    bonus = await stub.GetOffer(pb.GetOfferRequest(offer_id=catalogue.offer_ids["Expired bonus"]))
    assert bonus.benefit.kind == pb.OFFER_BENEFIT_KIND_BONUS
    assert bonus.benefit.bonus.data_mb == 2048
    assert bonus.status == pb.OFFER_STATUS_INACTIVE
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetOffer(pb.GetOfferRequest(offer_id=123456))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_list_offer_types(stub, catalogue) -> None:
    reply = await stub.ListOfferTypes(pb.ListOfferTypesRequest())
    names = [t.offer_type_name for t in reply.offer_types]
    assert {"cashback", "bonus_data", "festive_special"} <= set(names)
    assert names == sorted(names)  # by name
