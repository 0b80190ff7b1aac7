"""PlanService administration through the real server over real PostgreSQL and MongoDB.

Create/update/delete of plans and offers, plan groups and offer types: field
round-trips, validation (one field violation per bad field, nothing written), NOT_FOUND
and ALREADY_EXISTS, Support's read-only role refused, and one audit event per change.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import func, select

from gencharge.v1 import common_pb2, plan_service_pb2_grpc
from gencharge.v1 import plan_service_pb2 as pb
from server.core.schema import admins, offers, offertypes, plangroups, plans
from tests.helpers.auth import Actor, create_admin
from tests.helpers.clock import eventually
from tests.helpers.rpc import details_of

Stub = plan_service_pb2_grpc.PlanServiceStub


def inr(units_minor: int, currency: str = "INR") -> common_pb2.Money:
    return common_pb2.Money(units_minor=units_minor, currency_code=currency)


def struct(value: dict[str, Any]) -> Struct:
    result = Struct()
    result.update(value)
    return result


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> Stub:
    return Stub(channel)


@pytest.fixture
async def admin(channel: grpc.aio.Channel, resources: Any) -> Actor:
    return await create_admin(channel, resources)


async def _scalar(resources: Any, query: Any) -> Any:
    async with resources.db.read_only() as conn:
        return (await conn.execute(query)).scalar_one_or_none()


async def _ids(resources: Any) -> dict[str, int]:
    async with resources.db.read_only() as conn:
        groups = {
            r.group_name: r.group_id
            for r in (await conn.execute(select(plangroups.c.group_id, plangroups.c.group_name)))
        }
        types = {
            r.offer_type_name: r.offer_type_id
            for r in (
                await conn.execute(select(offertypes.c.offer_type_id, offertypes.c.offer_type_name))
            )
        }
    return {
        **{f"group:{k}": v for k, v in groups.items()},
        **{f"type:{k}": v for k, v in types.items()},
    }


async def _admin_id(resources: Any, actor: Actor) -> int:
    admin_id: int = await _scalar(
        resources, select(admins.c.admin_id).where(admins.c.email == actor.email)
    )
    return admin_id


async def _count(resources: Any, table: Any) -> int:
    count: int = await _scalar(resources, select(func.count()).select_from(table))
    return count


def good_plan(group_id: int, **overrides: Any) -> pb.Plan:
    fields: dict[str, Any] = {
        "plan_name": "Unlimited 299",
        "validity_days": 28,
        "most_popular": True,
        "plan_type": common_pb2.USER_TYPE_PREPAID,
        "group_id": group_id,
        "description": "2 GB/day, unlimited calls",
        "criteria": struct({"user_types": ["prepaid"], "first_recharge_only": False}),
        "price": inr(29950),
        "benefits": pb.PlanBenefits(
            data_mb_per_day=2048,
            unlimited_voice=True,
            sms_per_day=100,
            sms_count=2800,
            talktime=inr(1000),
            extras=["Hotstar Mobile 3 months"],
        ),
    }
    fields.update(overrides)
    return pb.Plan(**fields)


def good_offer(offer_type_id: int, **overrides: Any) -> pb.Offer:
    fields: dict[str, Any] = {
        "offer_name": "10% cashback up to Rs 50",
        "offer_validity_days": 30,
        "offer_type_id": offer_type_id,
        "is_special": True,
        "criteria": struct({"plan_ids": [1, 2], "min_amount_minor": 19900}),
        "description": "Terms apply",
        "benefit": pb.OfferBenefit(
            kind=pb.OFFER_BENEFIT_KIND_CASHBACK,
            percent_bps=1000,
            max_amount=inr(5000),
            min_plan_price=inr(19900),
        ),
    }
    fields.update(overrides)
    return pb.Offer(**fields)


async def _invalid(call: Any, *fields: str) -> dict[str, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    details = details_of(info.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert details.reason == "INVALID_ARGUMENT"
    assert set(fields) <= details.field_violations.keys(), details.field_violations
    return details.field_violations


async def _code(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    code: grpc.StatusCode = info.value.code()
    return code


# ------------------------------------------------------------------ plans


async def test_create_plan_round_trip(stub: Stub, admin: Actor, resources: Any) -> None:
    ids = await _ids(resources)
    plan = await stub.CreatePlan(
        pb.CreatePlanRequest(plan=good_plan(ids["group:unlimited"])), metadata=admin.metadata
    )
    assert plan.plan_id > 0
    assert plan.plan_name == "Unlimited 299" and plan.validity_days == 28 and plan.most_popular
    assert plan.plan_type == common_pb2.USER_TYPE_PREPAID
    assert plan.group_id == ids["group:unlimited"] and plan.group_name == "unlimited"
    assert plan.description == "2 GB/day, unlimited calls"
    assert dict(plan.criteria) == {"user_types": ["prepaid"], "first_recharge_only": False}
    assert plan.price == inr(29950)
    assert plan.benefits.data_mb_per_day == 2048 and plan.benefits.unlimited_voice
    assert plan.benefits.sms_per_day == 100 and plan.benefits.sms_count == 2800
    assert plan.benefits.talktime == inr(1000)
    assert list(plan.benefits.extras) == ["Hotstar Mobile 3 months"]
    assert plan.status == pb.PLAN_STATUS_ACTIVE
    assert plan.created_by == await _admin_id(resources, admin)
    assert abs(plan.created_at.ToDatetime(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=1)
    # Visible at once, to anyone, exactly as returned.
    assert await stub.GetPlan(pb.GetPlanRequest(plan_id=plan.plan_id)) == plan
    listed = await stub.ListPlans(pb.ListPlansRequest())
    assert plan in listed.plans
    # Money is NUMERIC in the database, ids are ints in criteria.
    async with resources.db.read_only() as conn:
        row = (await conn.execute(select(plans).where(plans.c.plan_id == plan.plan_id))).one()
    assert row.price == Decimal("299.50") and row.currency == "INR"
    assert row.talktime == Decimal("10.00") and row.data_mb is None
    assert row.criteria == {"user_types": ["prepaid"], "first_recharge_only": False}


async def test_create_plan_minimal_defaults(stub: Stub, admin: Actor, resources: Any) -> None:
    ids = await _ids(resources)
    plan = await stub.CreatePlan(
        pb.CreatePlanRequest(
            plan=pb.Plan(
                plan_name="Validity 99",
                validity_days=28,
                plan_type=common_pb2.USER_TYPE_POSTPAID,
                group_id=ids["group:other"],
                price=inr(9900, ""),  # empty currency means INR
                # output-only fields are ignored
                plan_id=555,
                group_name="nonsense",
                created_by=999,
            )
        ),
        metadata=admin.metadata,
    )
    assert plan.plan_id != 555 and plan.group_name == "other"
    assert plan.price == inr(9900) and plan.status == pb.PLAN_STATUS_ACTIVE
    assert plan.benefits == pb.PlanBenefits()
    assert not plan.HasField("criteria")
    assert plan.created_by == await _admin_id(resources, admin)


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        ({"plan_name": ""}, ["plan.plan_name"]),
        ({"plan_name": "   "}, ["plan.plan_name"]),
        ({"plan_name": "x" * 101}, ["plan.plan_name"]),
        ({"validity_days": 0}, ["plan.validity_days"]),
        ({"validity_days": 3651}, ["plan.validity_days"]),
        ({"plan_type": common_pb2.USER_TYPE_UNSPECIFIED}, ["plan.plan_type"]),
        ({"plan_type": 42}, ["plan.plan_type"]),
        ({"group_id": 0}, ["plan.group_id"]),
        ({"group_id": 999999}, ["plan.group_id"]),
        ({"group_id": 2**40}, ["plan.group_id"]),
        ({"price": None}, ["plan.price"]),
        ({"price": inr(0)}, ["plan.price.units_minor"]),
        ({"price": inr(-100)}, ["plan.price.units_minor"]),
        ({"price": inr(10**12)}, ["plan.price.units_minor"]),
        ({"price": inr(100, "USD")}, ["plan.price.currency_code"]),
        ({"status": 7}, ["plan.status"]),  # unknown is not "unset" (default ACTIVE)
        ({"benefits": pb.PlanBenefits(data_mb=-1)}, ["plan.benefits.data_mb"]),
        ({"benefits": pb.PlanBenefits(voice_minutes=-5)}, ["plan.benefits.voice_minutes"]),
        ({"benefits": pb.PlanBenefits(sms_per_day=-1)}, ["plan.benefits.sms_per_day"]),
        (
            {"benefits": pb.PlanBenefits(talktime=inr(-1))},
            ["plan.benefits.talktime.units_minor"],
        ),
        ({"benefits": pb.PlanBenefits(extras=[""])}, ["plan.benefits.extras"]),
        ({"criteria": struct({"plan_ids": [1]})}, ["plan.criteria.plan_ids"]),
        ({"criteria": struct({"user_types": ["corporate"]})}, ["plan.criteria.user_types"]),
        ({"description": "d" * 2001}, ["plan.description"]),
        (
            {"plan_name": "", "validity_days": 0, "price": inr(0)},
            ["plan.plan_name", "plan.validity_days", "plan.price.units_minor"],
        ),
    ],
)
async def test_create_plan_invalid_writes_nothing(
    stub: Stub, admin: Actor, resources: Any, overrides: dict[str, Any], fields: list[str]
) -> None:
    ids = await _ids(resources)
    plan = good_plan(ids["group:unlimited"])
    for name, value in overrides.items():
        if value is None:
            plan.ClearField(name)  # type: ignore[arg-type]
        else:
            good = pb.Plan(**{name: value})
            plan.ClearField(name)  # type: ignore[arg-type]
            plan.MergeFrom(good)
    before = await _count(resources, plans)
    violations = await _invalid(
        stub.CreatePlan(pb.CreatePlanRequest(plan=plan), metadata=admin.metadata), *fields
    )
    assert set(violations) == set(fields)
    assert await _count(resources, plans) == before


async def test_update_plan_changes_only_masked_fields(
    stub: Stub, admin: Actor, resources: Any
) -> None:
    ids = await _ids(resources)
    created = await stub.CreatePlan(
        pb.CreatePlanRequest(plan=good_plan(ids["group:unlimited"])), metadata=admin.metadata
    )
    change = pb.Plan(
        plan_id=created.plan_id,
        plan_name="ignored, not in the mask",
        price=inr(31900),
        benefits=pb.PlanBenefits(data_mb_per_day=3072, sms_count=1),
        group_id=ids["group:data"],
    )
    updated = await stub.UpdatePlan(
        pb.UpdatePlanRequest(
            plan=change, update_mask=mask("price", "benefits.data_mb_per_day", "group_id")
        ),
        metadata=admin.metadata,
    )
    assert updated.price == inr(31900)
    assert updated.benefits.data_mb_per_day == 3072
    assert updated.group_id == ids["group:data"] and updated.group_name == "data"
    # untouched
    assert updated.plan_name == created.plan_name
    assert updated.benefits.sms_count == 2800 and updated.benefits.unlimited_voice
    assert updated.benefits.talktime == created.benefits.talktime
    assert updated.criteria == created.criteria
    assert await stub.GetPlan(pb.GetPlanRequest(plan_id=created.plan_id)) == updated
    assert await _scalar(
        resources, select(plans.c.updated_at).where(plans.c.plan_id == created.plan_id)
    )

    # "benefits" replaces every benefit; criteria can be cleared.
    replaced = await stub.UpdatePlan(
        pb.UpdatePlanRequest(
            plan=pb.Plan(plan_id=created.plan_id, benefits=pb.PlanBenefits(unlimited_data=True)),
            update_mask=mask("benefits", "criteria", "description", "most_popular"),
        ),
        metadata=admin.metadata,
    )
    assert replaced.benefits == pb.PlanBenefits(unlimited_data=True)
    assert not replaced.HasField("criteria")
    assert replaced.description == "" and not replaced.most_popular

    # Retire it through status: no longer listed, still readable.
    retired = await stub.UpdatePlan(
        pb.UpdatePlanRequest(
            plan=pb.Plan(plan_id=created.plan_id, status=pb.PLAN_STATUS_INACTIVE),
            update_mask=mask("status"),
        ),
        metadata=admin.metadata,
    )
    assert retired.status == pb.PLAN_STATUS_INACTIVE
    listed = await stub.ListPlans(pb.ListPlansRequest())
    assert created.plan_id not in [p.plan_id for p in listed.plans]


@pytest.mark.parametrize(
    ("paths", "plan_fields", "field"),
    [
        ((), {}, "update_mask"),
        (("nonsense",), {}, "update_mask"),
        (("benefits.nonsense",), {}, "update_mask"),
        (("plan_id",), {}, "update_mask"),
        (("created_at",), {}, "update_mask"),
        (("group_name",), {}, "update_mask"),
        (("price",), {}, "plan.price"),
        (("price",), {"price": inr(-5)}, "plan.price.units_minor"),
        (("status",), {}, "plan.status"),
        (("plan_name",), {}, "plan.plan_name"),
        (("validity_days",), {"validity_days": -1}, "plan.validity_days"),
        (("group_id",), {"group_id": 424242}, "plan.group_id"),
        (("benefits.data_mb",), {"benefits": pb.PlanBenefits(data_mb=-1)}, "plan.benefits.data_mb"),
        (("criteria",), {"criteria": struct({"x": 1})}, "plan.criteria.x"),
    ],
)
async def test_update_plan_invalid(
    stub: Stub,
    admin: Actor,
    resources: Any,
    paths: tuple[str, ...],
    plan_fields: dict[str, Any],
    field: str,
) -> None:
    ids = await _ids(resources)
    created = await stub.CreatePlan(
        pb.CreatePlanRequest(plan=good_plan(ids["group:unlimited"])), metadata=admin.metadata
    )
    await _invalid(
        stub.UpdatePlan(
            pb.UpdatePlanRequest(
                plan=pb.Plan(plan_id=created.plan_id, **plan_fields), update_mask=mask(*paths)
            ),
            metadata=admin.metadata,
        ),
        field,
    )
    assert await stub.GetPlan(pb.GetPlanRequest(plan_id=created.plan_id)) == created


async def test_update_plan_not_found(stub: Stub, admin: Actor) -> None:
    for plan_id in (10**6, 2**31 - 1):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.UpdatePlan(
                pb.UpdatePlanRequest(
                    plan=pb.Plan(plan_id=plan_id, plan_name="x"), update_mask=mask("plan_name")
                ),
                metadata=admin.metadata,
            )
        details = details_of(info.value)
        assert details.code == grpc.StatusCode.NOT_FOUND
        assert details.metadata == {"plan_id": str(plan_id)}
    await _invalid(
        stub.UpdatePlan(
            pb.UpdatePlanRequest(plan=pb.Plan(plan_name="x"), update_mask=mask("plan_name")),
            metadata=admin.metadata,
        ),
        "plan.plan_id",
    )


async def test_delete_plan_deactivates_and_keeps_the_row(
    stub: Stub, admin: Actor, resources: Any
) -> None:
    ids = await _ids(resources)
    created = await stub.CreatePlan(
        pb.CreatePlanRequest(plan=good_plan(ids["group:unlimited"])), metadata=admin.metadata
    )
    before = await _count(resources, plans)
    await stub.DeletePlan(pb.DeletePlanRequest(plan_id=created.plan_id), metadata=admin.metadata)
    await stub.DeletePlan(pb.DeletePlanRequest(plan_id=created.plan_id), metadata=admin.metadata)
    assert await _count(resources, plans) == before  # never removed
    plan = await stub.GetPlan(pb.GetPlanRequest(plan_id=created.plan_id))
    assert plan.status == pb.PLAN_STATUS_INACTIVE
    assert plan.plan_name == created.plan_name and plan.price == created.price
    listed = await stub.ListPlans(pb.ListPlansRequest())
    assert created.plan_id not in [p.plan_id for p in listed.plans]
    inactive = await stub.ListPlans(pb.ListPlansRequest(status=pb.PLAN_STATUS_INACTIVE))
    assert created.plan_id in [p.plan_id for p in inactive.plans]
    # It can be put back on sale.
    revived = await stub.UpdatePlan(
        pb.UpdatePlanRequest(
            plan=pb.Plan(plan_id=created.plan_id, status=pb.PLAN_STATUS_ACTIVE),
            update_mask=mask("status"),
        ),
        metadata=admin.metadata,
    )
    assert revived.status == pb.PLAN_STATUS_ACTIVE


async def test_delete_plan_not_found_and_invalid(stub: Stub, admin: Actor) -> None:
    for plan_id in (10**6, 2**31 - 1):
        code = await _code(
            stub.DeletePlan(pb.DeletePlanRequest(plan_id=plan_id), metadata=admin.metadata)
        )
        assert code == grpc.StatusCode.NOT_FOUND
    await _invalid(
        stub.DeletePlan(pb.DeletePlanRequest(plan_id=0), metadata=admin.metadata), "plan_id"
    )


# ------------------------------------------------------------------ offers


async def test_create_offer_round_trip(stub: Stub, admin: Actor, resources: Any) -> None:
    ids = await _ids(resources)
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=7)
    ts = Timestamp()
    ts.FromDatetime(expires)
    offer = await stub.CreateOffer(
        pb.CreateOfferRequest(offer=good_offer(ids["type:cashback"], expires_at=ts)),
        metadata=admin.metadata,
    )
    assert offer.offer_id > 0 and offer.offer_name == "10% cashback up to Rs 50"
    assert offer.offer_type_id == ids["type:cashback"] and offer.offer_type_name == "cashback"
    assert offer.offer_validity_days == 30 and offer.is_special
    assert dict(offer.criteria) == {"plan_ids": [1, 2], "min_amount_minor": 19900}
    assert offer.description == "Terms apply"
    assert offer.status == pb.OFFER_STATUS_ACTIVE
    assert offer.created_by == await _admin_id(resources, admin)
    assert offer.benefit == pb.OfferBenefit(
        kind=pb.OFFER_BENEFIT_KIND_CASHBACK,
        percent_bps=1000,
        max_amount=inr(5000),
        min_plan_price=inr(19900),
    )
    # expires_at: the earlier of the explicit end and created_at + validity days
    assert offer.expires_at.ToDatetime(tzinfo=UTC) == expires
    assert await stub.GetOffer(pb.GetOfferRequest(offer_id=offer.offer_id)) == offer
    listed = await stub.ListOffers(pb.ListOffersRequest())
    assert offer in listed.offers
    async with resources.db.read_only() as conn:
        row = (await conn.execute(select(offers).where(offers.c.offer_id == offer.offer_id))).one()
    assert row.cashback_percent == Decimal("10.00") and row.discount_percent is None
    assert row.max_benefit_amount == Decimal("50.00")
    assert row.min_plan_price == Decimal("199.00")
    assert row.valid_to == expires and row.offer_validity == 30
    # Struct numbers are doubles on the wire; ids are stored as JSON integers.
    assert row.criteria == {"plan_ids": [1, 2], "min_amount_minor": 19900}
    assert all(type(v) is int for v in row.criteria["plan_ids"])


@pytest.mark.parametrize(
    "benefit",
    [
        pb.OfferBenefit(kind=pb.OFFER_BENEFIT_KIND_DISCOUNT, fixed_amount=inr(2000)),
        pb.OfferBenefit(kind=pb.OFFER_BENEFIT_KIND_DISCOUNT, percent_bps=1550, max_amount=inr(1)),
        pb.OfferBenefit(kind=pb.OFFER_BENEFIT_KIND_CASHBACK, fixed_amount=inr(2500)),
        pb.OfferBenefit(kind=pb.OFFER_BENEFIT_KIND_CASHBACK, percent_bps=10000),
        pb.OfferBenefit(
            kind=pb.OFFER_BENEFIT_KIND_BONUS,
            bonus=pb.PlanBenefits(data_mb=2048, talktime=inr(500), extras=["Wynk"]),
            min_plan_price=inr(0),
        ),
    ],
)
async def test_each_benefit_kind_round_trips(
    stub: Stub, admin: Actor, resources: Any, benefit: pb.OfferBenefit
) -> None:
    ids = await _ids(resources)
    offer = await stub.CreateOffer(
        pb.CreateOfferRequest(
            offer=pb.Offer(offer_name="x", offer_type_id=ids["type:bonus"], benefit=benefit)
        ),
        metadata=admin.metadata,
    )
    assert offer.benefit == benefit
    assert not offer.HasField("expires_at")  # no validity days, no end


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        ({"offer_name": ""}, ["offer.offer_name"]),
        ({"offer_validity_days": -1}, ["offer.offer_validity_days"]),
        ({"offer_validity_days": 4000}, ["offer.offer_validity_days"]),
        ({"offer_type_id": 0}, ["offer.offer_type_id"]),
        ({"offer_type_id": 31337}, ["offer.offer_type_id"]),
        ({"status": 5}, ["offer.status"]),
        ({"criteria": struct({"payment_methods": ["UPI"]})}, ["offer.criteria.payment_methods"]),
        ({"criteria": struct({"min_amount_minor": 1.5})}, ["offer.criteria.min_amount_minor"]),
        ({"benefit": None}, ["offer.benefit"]),
        ({"benefit": pb.OfferBenefit(percent_bps=100)}, ["offer.benefit.kind"]),
        ({"benefit": pb.OfferBenefit(kind=pb.OFFER_BENEFIT_KIND_DISCOUNT)}, ["offer.benefit"]),
        (
            {"benefit": pb.OfferBenefit(kind=pb.OFFER_BENEFIT_KIND_DISCOUNT, percent_bps=0)},
            ["offer.benefit.percent_bps"],
        ),
        (
            {"benefit": pb.OfferBenefit(kind=pb.OFFER_BENEFIT_KIND_CASHBACK, percent_bps=10001)},
            ["offer.benefit.percent_bps"],
        ),
        (
            {
                "benefit": pb.OfferBenefit(
                    kind=pb.OFFER_BENEFIT_KIND_CASHBACK, fixed_amount=inr(0, "USD")
                )
            },
            ["offer.benefit.fixed_amount.units_minor", "offer.benefit.fixed_amount.currency_code"],
        ),
        (
            {
                "benefit": pb.OfferBenefit(
                    kind=pb.OFFER_BENEFIT_KIND_DISCOUNT, percent_bps=500, max_amount=inr(0)
                )
            },
            ["offer.benefit.max_amount.units_minor"],
        ),
        (
            {
                "benefit": pb.OfferBenefit(
                    kind=pb.OFFER_BENEFIT_KIND_DISCOUNT, percent_bps=500, min_plan_price=inr(-1)
                )
            },
            ["offer.benefit.min_plan_price.units_minor"],
        ),
        (
            {
                "benefit": pb.OfferBenefit(
                    kind=pb.OFFER_BENEFIT_KIND_DISCOUNT,
                    percent_bps=500,
                    bonus=pb.PlanBenefits(data_mb=1),
                )
            },
            ["offer.benefit.bonus"],
        ),
        ({"benefit": pb.OfferBenefit(kind=pb.OFFER_BENEFIT_KIND_BONUS)}, ["offer.benefit.bonus"]),
        (
            {"benefit": pb.OfferBenefit(kind=pb.OFFER_BENEFIT_KIND_BONUS, bonus=pb.PlanBenefits())},
            ["offer.benefit.bonus"],
        ),
        (
            {
                "benefit": pb.OfferBenefit(
                    kind=pb.OFFER_BENEFIT_KIND_BONUS,
                    bonus=pb.PlanBenefits(data_mb=-1, sms_count=1),
                )
            },
            ["offer.benefit.bonus.data_mb"],
        ),
        (
            {
                "benefit": pb.OfferBenefit(
                    kind=pb.OFFER_BENEFIT_KIND_BONUS,
                    percent_bps=100,
                    max_amount=inr(100),
                    bonus=pb.PlanBenefits(data_mb=1),
                )
            },
            ["offer.benefit.percent_bps", "offer.benefit.max_amount"],
        ),
        ({"expires_at": Timestamp(seconds=1_000_000_000)}, ["offer.expires_at"]),
        ({"expires_at": Timestamp(seconds=2**62)}, ["offer.expires_at"]),
    ],
)
async def test_create_offer_invalid_writes_nothing(
    stub: Stub, admin: Actor, resources: Any, overrides: dict[str, Any], fields: list[str]
) -> None:
    ids = await _ids(resources)
    offer = good_offer(ids["type:cashback"])
    for name, value in overrides.items():
        offer.ClearField(name)  # type: ignore[arg-type]
        if value is not None:
            offer.MergeFrom(pb.Offer(**{name: value}))
    before = await _count(resources, offers)
    violations = await _invalid(
        stub.CreateOffer(pb.CreateOfferRequest(offer=offer), metadata=admin.metadata), *fields
    )
    assert set(violations) == set(fields)
    assert await _count(resources, offers) == before


async def test_update_offer(stub: Stub, admin: Actor, resources: Any) -> None:
    ids = await _ids(resources)
    created = await stub.CreateOffer(
        pb.CreateOfferRequest(offer=good_offer(ids["type:cashback"])), metadata=admin.metadata
    )
    # Replace the whole benefit: cashback percent -> fixed discount (old columns cleared).
    updated = await stub.UpdateOffer(
        pb.UpdateOfferRequest(
            offer=pb.Offer(
                offer_id=created.offer_id,
                offer_name="Rs 20 off",
                offer_type_id=ids["type:discount"],
                benefit=pb.OfferBenefit(
                    kind=pb.OFFER_BENEFIT_KIND_DISCOUNT, fixed_amount=inr(2000)
                ),
                offer_validity_days=0,
            ),
            update_mask=mask("offer_name", "offer_type_id", "benefit", "offer_validity_days"),
        ),
        metadata=admin.metadata,
    )
    assert updated.offer_name == "Rs 20 off" and updated.offer_type_name == "discount"
    assert updated.benefit == pb.OfferBenefit(
        kind=pb.OFFER_BENEFIT_KIND_DISCOUNT, fixed_amount=inr(2000)
    )
    assert updated.offer_validity_days == 0 and not updated.HasField("expires_at")
    assert updated.criteria == created.criteria and updated.is_special
    async with resources.db.read_only() as conn:
        row = (
            await conn.execute(select(offers).where(offers.c.offer_id == created.offer_id))
        ).one()
    assert row.cashback_percent is None and row.max_benefit_amount is None
    assert row.discount_amount == Decimal("20.00") and row.updated_at is not None

    # Sub-paths of the benefit: the cap and the minimum price alone.
    capped = await stub.UpdateOffer(
        pb.UpdateOfferRequest(
            offer=pb.Offer(
                offer_id=created.offer_id,
                benefit=pb.OfferBenefit(min_plan_price=inr(47900)),
            ),
            update_mask=mask("benefit.min_plan_price", "criteria"),
        ),
        metadata=admin.metadata,
    )
    assert capped.benefit.fixed_amount == inr(2000)
    assert capped.benefit.min_plan_price == inr(47900)
    assert not capped.HasField("criteria")

    # An end date that is already past ends the offer (allowed on update).
    past = Timestamp()
    past.FromDatetime(datetime.now(UTC) - timedelta(minutes=1))
    ended = await stub.UpdateOffer(
        pb.UpdateOfferRequest(
            offer=pb.Offer(offer_id=created.offer_id, expires_at=past),
            update_mask=mask("expires_at"),
        ),
        metadata=admin.metadata,
    )
    assert ended.expires_at == past


@pytest.mark.parametrize(
    ("paths", "offer_fields", "field"),
    [
        ((), {}, "update_mask"),
        (("offer_type_name",), {}, "update_mask"),
        (("benefit.kind",), {}, "update_mask"),
        (("benefit",), {}, "offer.benefit"),
        (("status",), {}, "offer.status"),
        (("offer_type_id",), {"offer_type_id": 999999}, "offer.offer_type_id"),
        (
            ("benefit.max_amount",),
            {"benefit": pb.OfferBenefit(max_amount=inr(-1))},
            "offer.benefit.max_amount.units_minor",
        ),
    ],
)
async def test_update_offer_invalid(
    stub: Stub,
    admin: Actor,
    resources: Any,
    paths: tuple[str, ...],
    offer_fields: dict[str, Any],
    field: str,
) -> None:
    ids = await _ids(resources)
    created = await stub.CreateOffer(
        pb.CreateOfferRequest(offer=good_offer(ids["type:cashback"])), metadata=admin.metadata
    )
    await _invalid(
        stub.UpdateOffer(
            pb.UpdateOfferRequest(
                offer=pb.Offer(offer_id=created.offer_id, **offer_fields),
                update_mask=mask(*paths),
            ),
            metadata=admin.metadata,
        ),
        field,
    )
    assert await stub.GetOffer(pb.GetOfferRequest(offer_id=created.offer_id)) == created


async def test_update_and_delete_offer_not_found(stub: Stub, admin: Actor) -> None:
    for offer_id in (10**6, 2**31 - 1):
        code = await _code(
            stub.UpdateOffer(
                pb.UpdateOfferRequest(
                    offer=pb.Offer(offer_id=offer_id, is_special=True),
                    update_mask=mask("is_special"),
                ),
                metadata=admin.metadata,
            )
        )
        assert code == grpc.StatusCode.NOT_FOUND
        code = await _code(
            stub.DeleteOffer(pb.DeleteOfferRequest(offer_id=offer_id), metadata=admin.metadata)
        )
        assert code == grpc.StatusCode.NOT_FOUND
    await _invalid(stub.DeleteOffer(pb.DeleteOfferRequest(), metadata=admin.metadata), "offer_id")


async def test_delete_offer_deactivates(stub: Stub, admin: Actor, resources: Any) -> None:
    ids = await _ids(resources)
    created = await stub.CreateOffer(
        pb.CreateOfferRequest(offer=good_offer(ids["type:cashback"])), metadata=admin.metadata
    )
    before = await _count(resources, offers)
    for _ in range(2):  # idempotent
        await stub.DeleteOffer(
            pb.DeleteOfferRequest(offer_id=created.offer_id), metadata=admin.metadata
        )
    assert await _count(resources, offers) == before
    offer = await stub.GetOffer(pb.GetOfferRequest(offer_id=created.offer_id))
    assert offer.status == pb.OFFER_STATUS_INACTIVE and offer.benefit == created.benefit
    listed = await stub.ListOffers(pb.ListOffersRequest())
    assert created.offer_id not in [o.offer_id for o in listed.offers]


# ------------------------------------------------------------------ groups and types


async def test_create_plan_group_and_offer_type(stub: Stub, admin: Actor) -> None:
    group = await stub.CreatePlanGroup(
        pb.CreatePlanGroupRequest(
            plan_group=pb.PlanGroup(group_name="ott_bundles", description="With OTT", group_id=9)
        ),
        metadata=admin.metadata,
    )
    assert group.group_id > 0
    assert (group.group_name, group.description) == ("ott_bundles", "With OTT")
    groups = await stub.ListPlanGroups(pb.ListPlanGroupsRequest(page_size=200))
    assert group in groups.plan_groups
    offer_type = await stub.CreateOfferType(
        pb.CreateOfferTypeRequest(offer_type=pb.OfferType(offer_type_name="weekend_2x")),
        metadata=admin.metadata,
    )
    assert offer_type.offer_type_name == "weekend_2x" and offer_type.description == ""
    types = await stub.ListOfferTypes(pb.ListOfferTypesRequest(page_size=200))
    assert offer_type in types.offer_types
    # Usable at once.
    plan = await stub.CreatePlan(
        pb.CreatePlanRequest(plan=good_plan(group.group_id)), metadata=admin.metadata
    )
    assert plan.group_name == "ott_bundles"


async def test_duplicate_names_already_exist(stub: Stub, admin: Actor, resources: Any) -> None:
    groups_before = await _count(resources, plangroups)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreatePlanGroup(
            pb.CreatePlanGroupRequest(plan_group=pb.PlanGroup(group_name="unlimited")),
            metadata=admin.metadata,
        )
    details = details_of(info.value)
    assert details.code == grpc.StatusCode.ALREADY_EXISTS
    assert details.reason == "PLAN_GROUP_EXISTS"
    assert details.metadata == {"group_name": "unlimited"}
    assert await _count(resources, plangroups) == groups_before
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateOfferType(
            pb.CreateOfferTypeRequest(offer_type=pb.OfferType(offer_type_name="cashback")),
            metadata=admin.metadata,
        )
    details = details_of(info.value)
    assert details.code == grpc.StatusCode.ALREADY_EXISTS
    assert details.reason == "OFFER_TYPE_EXISTS"


@pytest.mark.parametrize("name", ["", "Has Caps", "with space", "dash-ed", "x" * 51, "ünï"])
async def test_reference_names_validated(stub: Stub, admin: Actor, name: str) -> None:
    await _invalid(
        stub.CreatePlanGroup(
            pb.CreatePlanGroupRequest(plan_group=pb.PlanGroup(group_name=name)),
            metadata=admin.metadata,
        ),
        "plan_group.group_name",
    )
    await _invalid(
        stub.CreateOfferType(
            pb.CreateOfferTypeRequest(offer_type=pb.OfferType(offer_type_name=name)),
            metadata=admin.metadata,
        ),
        "offer_type.offer_type_name",
    )


# ------------------------------------------------------------------ access and audit


async def test_support_is_refused_every_admin_rpc(
    stub: Stub, channel: grpc.aio.Channel, resources: Any, admin: Actor
) -> None:
    ids = await _ids(resources)
    plan = await stub.CreatePlan(
        pb.CreatePlanRequest(plan=good_plan(ids["group:unlimited"])), metadata=admin.metadata
    )
    offer = await stub.CreateOffer(
        pb.CreateOfferRequest(offer=good_offer(ids["type:cashback"])), metadata=admin.metadata
    )
    support = await create_admin(channel, resources, role_name="Support")
    counts = [await _count(resources, t) for t in (plans, offers, plangroups, offertypes)]
    calls = [
        stub.CreatePlan(
            pb.CreatePlanRequest(plan=good_plan(ids["group:unlimited"])), metadata=support.metadata
        ),
        stub.UpdatePlan(
            pb.UpdatePlanRequest(
                plan=pb.Plan(plan_id=plan.plan_id, plan_name="x"), update_mask=mask("plan_name")
            ),
            metadata=support.metadata,
        ),
        stub.DeletePlan(pb.DeletePlanRequest(plan_id=plan.plan_id), metadata=support.metadata),
        stub.CreateOffer(
            pb.CreateOfferRequest(offer=good_offer(ids["type:cashback"])),
            metadata=support.metadata,
        ),
        stub.UpdateOffer(
            pb.UpdateOfferRequest(
                offer=pb.Offer(offer_id=offer.offer_id, offer_name="x"),
                update_mask=mask("offer_name"),
            ),
            metadata=support.metadata,
        ),
        stub.DeleteOffer(pb.DeleteOfferRequest(offer_id=offer.offer_id), metadata=support.metadata),
        stub.CreatePlanGroup(
            pb.CreatePlanGroupRequest(plan_group=pb.PlanGroup(group_name="sneaky")),
            metadata=support.metadata,
        ),
        stub.CreateOfferType(
            pb.CreateOfferTypeRequest(offer_type=pb.OfferType(offer_type_name="sneaky")),
            metadata=support.metadata,
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        details = details_of(info.value)
        assert details.code == grpc.StatusCode.PERMISSION_DENIED
        assert details.reason == "MISSING_PERMISSION"
    # Support can still read, and nothing changed.
    assert (
        await stub.GetPlan(pb.GetPlanRequest(plan_id=plan.plan_id), metadata=support.metadata)
        == plan
    )
    assert [await _count(resources, t) for t in (plans, offers, plangroups, offertypes)] == counts
    # Anonymous callers are not even authenticated.
    code = await _code(stub.DeletePlan(pb.DeletePlanRequest(plan_id=plan.plan_id)))
    assert code == grpc.StatusCode.UNAUTHENTICATED


async def _audit_docs(resources: Any, rpc: str, want: int) -> list[dict[str, Any]]:
    query = {"rpc": f"/gencharge.v1.PlanService/{rpc}", "outcome": "ok"}
    collection = resources.mongo_db["AuditLog"]

    async def enough() -> bool:  # the deadline only catches a hang
        return len(await collection.find(query).to_list(None)) >= want

    await eventually(enough, every=0.1)
    await asyncio.sleep(0.2)  # would a duplicate follow?
    result: list[dict[str, Any]] = await collection.find(query).to_list(None)
    return result


async def test_every_change_is_audited_once(stub: Stub, admin: Actor, resources: Any) -> None:
    ids = await _ids(resources)
    md = admin.metadata
    plan = await stub.CreatePlan(
        pb.CreatePlanRequest(plan=good_plan(ids["group:unlimited"])), metadata=md
    )
    await stub.UpdatePlan(
        pb.UpdatePlanRequest(
            plan=pb.Plan(plan_id=plan.plan_id, price=inr(100)), update_mask=mask("price")
        ),
        metadata=md,
    )
    await stub.DeletePlan(pb.DeletePlanRequest(plan_id=plan.plan_id), metadata=md)
    offer = await stub.CreateOffer(
        pb.CreateOfferRequest(offer=good_offer(ids["type:cashback"])), metadata=md
    )
    await stub.UpdateOffer(
        pb.UpdateOfferRequest(
            offer=pb.Offer(offer_id=offer.offer_id, is_special=False),
            update_mask=mask("is_special"),
        ),
        metadata=md,
    )
    await stub.DeleteOffer(pb.DeleteOfferRequest(offer_id=offer.offer_id), metadata=md)
    group = await stub.CreatePlanGroup(
        pb.CreatePlanGroupRequest(plan_group=pb.PlanGroup(group_name="audited")), metadata=md
    )
    offer_type = await stub.CreateOfferType(
        pb.CreateOfferTypeRequest(offer_type=pb.OfferType(offer_type_name="audited")),
        metadata=md,
    )
    actor = f"admin:{await _admin_id(resources, admin)}"
    expected = [
        ("CreatePlan", "plans", "INSERT", {"plan_id": plan.plan_id}),
        ("UpdatePlan", "plans", "UPDATE", {"plan_id": plan.plan_id, "fields": ["price"]}),
        ("DeletePlan", "plans", "UPDATE", {"plan_id": plan.plan_id, "status": "inactive"}),
        ("CreateOffer", "offers", "INSERT", {"offer_id": offer.offer_id}),
        ("UpdateOffer", "offers", "UPDATE", {"offer_id": offer.offer_id}),
        ("DeleteOffer", "offers", "UPDATE", {"offer_id": offer.offer_id, "status": "inactive"}),
        ("CreatePlanGroup", "plangroups", "INSERT", {"group_id": group.group_id}),
        (
            "CreateOfferType",
            "offertypes",
            "INSERT",
            {"offer_type_id": offer_type.offer_type_id},
        ),
    ]
    for rpc, table, action, details in expected:
        docs = await _audit_docs(resources, rpc, 1)
        assert len(docs) == 1, (rpc, docs)
        doc = docs[0]
        assert (doc["table_name"], doc["action_type"], doc["user_id"]) == (table, action, actor)
        for key, value in details.items():
            assert doc["details"][key] == value, (rpc, key, doc["details"])
    # The price change is recorded as text (exact), not a float.
    (update_doc,) = await _audit_docs(resources, "UpdatePlan", 1)
    assert update_doc["details"]["changes"]["price"] == "1.00"


async def test_rejected_change_writes_no_change_event(
    stub: Stub, admin: Actor, resources: Any
) -> None:
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.CreatePlan(pb.CreatePlanRequest(plan=pb.Plan()), metadata=admin.metadata)
    # A barrier, not a pause: the relay ships the outbox in order, so once a change made
    # after the rejected call has arrived, any event of the rejected call has too.
    await stub.CreatePlanGroup(
        pb.CreatePlanGroupRequest(plan_group=pb.PlanGroup(group_name="barrier")),
        metadata=admin.metadata,
    )
    assert len(await _audit_docs(resources, "CreatePlanGroup", 1)) == 1
    collection = resources.mongo_db["AuditLog"]
    docs = await collection.find({"rpc": "/gencharge.v1.PlanService/CreatePlan"}).to_list(None)
    assert all(doc["action_type"] == "SECURITY" for doc in docs)


async def test_ids_beyond_int32_are_invalid_never_internal(stub: Stub, admin: Actor) -> None:
    """The API's ids are int64, PostgreSQL's are integer: larger ids are INVALID_ARGUMENT
    on the field (server/core/validation.py), the largest integer id merely not found."""
    big, top = 2**40, 2**31 - 1
    assert await _code(stub.GetPlan(pb.GetPlanRequest(plan_id=top))) == grpc.StatusCode.NOT_FOUND
    assert await _code(stub.GetOffer(pb.GetOfferRequest(offer_id=top))) == grpc.StatusCode.NOT_FOUND
    assert list((await stub.ListPlans(pb.ListPlansRequest(group_id=top))).plans) == []
    assert list((await stub.ListOffers(pb.ListOffersRequest(offer_type_id=top))).offers) == []
    await _invalid(stub.GetPlan(pb.GetPlanRequest(plan_id=big)), "plan_id")
    await _invalid(stub.GetOffer(pb.GetOfferRequest(offer_id=big)), "offer_id")
    await _invalid(stub.ListPlans(pb.ListPlansRequest(group_id=big)), "group_id")
    await _invalid(stub.ListOffers(pb.ListOffersRequest(offer_type_id=big)), "offer_type_id")
    await _invalid(
        stub.UpdatePlan(
            pb.UpdatePlanRequest(
                plan=pb.Plan(plan_id=big, plan_name="x"), update_mask=mask("plan_name")
            ),
            metadata=admin.metadata,
        ),
        "plan.plan_id",
    )
    await _invalid(
        stub.DeletePlan(pb.DeletePlanRequest(plan_id=big), metadata=admin.metadata), "plan_id"
    )
    await _invalid(
        stub.DeleteOffer(pb.DeleteOfferRequest(offer_id=big), metadata=admin.metadata), "offer_id"
    )
