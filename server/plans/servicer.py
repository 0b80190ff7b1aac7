"""PlanService: proto <-> domain only (reads in domain.py, administration in admin.py)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import Row

from gencharge.v1 import common_pb2, plan_service_pb2_grpc
from gencharge.v1 import plan_service_pb2 as pb
from server.auth.principal import principal
from server.core import db, protoconv
from server.core.errors import InvalidArgument
from server.core.resources import Resources
from server.plans import admin, domain
from server.plans.catalogue import Catalogue

Context = grpc.aio.ServicerContext[Any, Any]

PLAN_STATUSES = {pb.PLAN_STATUS_ACTIVE: "active", pb.PLAN_STATUS_INACTIVE: "inactive"}
PLAN_STATUSES_BY_NAME = {v: k for k, v in PLAN_STATUSES.items()}
OFFER_STATUSES = {pb.OFFER_STATUS_ACTIVE: "active", pb.OFFER_STATUS_INACTIVE: "inactive"}
OFFER_STATUSES_BY_NAME = {v: k for k, v in OFFER_STATUSES.items()}
BENEFIT_KINDS = {
    pb.OFFER_BENEFIT_KIND_DISCOUNT: "discount",
    pb.OFFER_BENEFIT_KIND_CASHBACK: "cashback",
    pb.OFFER_BENEFIT_KIND_BONUS: "bonus",
}
#: Timestamps PostgreSQL and Python datetimes both hold (years 1 to 9999).
_MIN_SECONDS, _MAX_SECONDS = -62135596800, 253402300799


def plan_message(row: Row[Any]) -> pb.Plan:
    benefits = pb.PlanBenefits(
        data_mb=row.data_mb or 0,
        data_mb_per_day=row.data_mb_per_day or 0,
        unlimited_data=row.unlimited_data,
        voice_minutes=row.voice_minutes or 0,
        unlimited_voice=row.unlimited_voice,
        sms_count=row.sms_count or 0,
        sms_per_day=row.sms_per_day or 0,
        talktime=protoconv.optional_money(row.talktime, row.currency),
        extras=row.extras or [],
    )
    return pb.Plan(
        plan_id=row.plan_id,
        plan_name=row.plan_name,
        validity_days=row.validity,
        most_popular=row.most_popular,
        plan_type=protoconv.USER_TYPES_BY_NAME[row.plan_type],
        group_id=row.group_id or 0,
        group_name=row.group_name or "",
        description=row.description or "",
        criteria=protoconv.struct(row.criteria),
        price=protoconv.money(row.price, row.currency),
        benefits=benefits,
        status=PLAN_STATUSES_BY_NAME[row.status],
        created_at=protoconv.timestamp(row.created_at),
        created_by=row.created_by or 0,
    )


def _percent_bps(value: Decimal) -> int:
    return int(value * 100)


def offer_benefit(row: Row[Any]) -> pb.OfferBenefit | None:
    """The offer's value: the first of discount, cashback, bonus that the row sets."""
    kinds = (
        (pb.OFFER_BENEFIT_KIND_DISCOUNT, row.discount_percent, row.discount_amount),
        (pb.OFFER_BENEFIT_KIND_CASHBACK, row.cashback_percent, row.cashback_amount),
    )
    benefit: pb.OfferBenefit | None = None
    for kind, percent, amount in kinds:
        if percent is not None:
            benefit = pb.OfferBenefit(kind=kind, percent_bps=_percent_bps(percent))
        elif amount is not None:
            benefit = pb.OfferBenefit(kind=kind, fixed_amount=protoconv.money(amount))
        if benefit is not None:
            break
    if benefit is None and row.bonus:
        benefit = pb.OfferBenefit(kind=pb.OFFER_BENEFIT_KIND_BONUS)
    if benefit is None:
        return None
    if row.bonus:
        json_format.ParseDict(row.bonus, benefit.bonus, ignore_unknown_fields=True)
    if row.max_benefit_amount is not None:
        benefit.max_amount.CopyFrom(protoconv.money(row.max_benefit_amount))
    if row.min_plan_price is not None:
        benefit.min_plan_price.CopyFrom(protoconv.money(row.min_plan_price))
    return benefit


def offer_message(row: Row[Any]) -> pb.Offer:
    return pb.Offer(
        offer_id=row.offer_id,
        offer_name=row.offer_name,
        offer_validity_days=row.offer_validity or 0,
        offer_type_id=row.offer_type_id or 0,
        offer_type_name=row.offer_type_name or "",
        is_special=row.is_special,
        criteria=protoconv.struct(row.criteria),
        description=row.description or "",
        created_at=protoconv.timestamp(row.created_at),
        created_by=row.created_by or 0,
        status=OFFER_STATUSES_BY_NAME[row.status],
        benefit=offer_benefit(row),
        expires_at=protoconv.timestamp(offer_expires_at(row)),
    )


def offer_expires_at(row: Row[Any]) -> datetime | None:
    """When the offer ends: valid_to or created_at + offer_validity, whichever is first."""
    ends = [row.valid_to] if row.valid_to is not None else []
    if row.offer_validity is not None:
        ends.append(row.created_at + timedelta(days=row.offer_validity))
    return min(ends) if ends else None


# ---------------------------------------------------------------- requests -> values


def _plain(value: Any) -> Any:
    """Struct JSON with integral numbers as ints (Struct keeps every number a double)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _criteria(message: pb.Plan | pb.Offer) -> Mapping[str, Any] | None:
    if not message.HasField("criteria"):
        return None
    struct: Struct = message.criteria
    result: dict[str, Any] = _plain(json_format.MessageToDict(struct))
    return result


def _money(message: Any, field: str) -> admin.MoneyIn | None:
    if not message.HasField(field):
        return None
    value: common_pb2.Money = getattr(message, field)
    return admin.MoneyIn(value.units_minor, value.currency_code)


def _benefits(benefits: pb.PlanBenefits) -> dict[str, Any]:
    return {
        "data_mb": benefits.data_mb,
        "data_mb_per_day": benefits.data_mb_per_day,
        "unlimited_data": benefits.unlimited_data,
        "voice_minutes": benefits.voice_minutes,
        "unlimited_voice": benefits.unlimited_voice,
        "sms_count": benefits.sms_count,
        "sms_per_day": benefits.sms_per_day,
        "talktime": _money(benefits, "talktime"),
        "extras": list(benefits.extras),
    }


def plan_values(plan: pb.Plan) -> dict[str, Any]:
    """A value for every path of admin.PLAN_PATHS."""
    values: dict[str, Any] = {
        "plan_name": plan.plan_name,
        "validity_days": plan.validity_days,
        "most_popular": plan.most_popular,
        "plan_type": _enum(plan.plan_type, protoconv.USER_TYPES),
        "group_id": plan.group_id,
        "description": plan.description,
        "criteria": _criteria(plan),
        "price": _money(plan, "price"),
        "status": _enum(plan.status, PLAN_STATUSES),
    }
    values.update({f"benefits.{k}": v for k, v in _benefits(plan.benefits).items()})
    return values


def _benefit_in(offer: pb.Offer) -> admin.BenefitIn | None:
    if not offer.HasField("benefit"):
        return None
    benefit = offer.benefit
    which = benefit.WhichOneof("value")
    return admin.BenefitIn(
        kind=_enum(benefit.kind, BENEFIT_KINDS),
        percent_bps=benefit.percent_bps if which == "percent_bps" else None,
        fixed_amount=_money(benefit, "fixed_amount"),
        max_amount=_money(benefit, "max_amount"),
        min_plan_price=_money(benefit, "min_plan_price"),
        bonus=_benefits(benefit.bonus) if benefit.HasField("bonus") else None,
    )


def _datetime(message: Any, field: str, path: str) -> datetime | None:
    if not message.HasField(field):
        return None
    value: Timestamp = getattr(message, field)
    if not _MIN_SECONDS <= value.seconds <= _MAX_SECONDS or not 0 <= value.nanos < 10**9:
        raise InvalidArgument.field(path, "not a valid timestamp")
    return value.ToDatetime(tzinfo=UTC)


def offer_values(offer: pb.Offer) -> dict[str, Any]:
    """A value for every path of admin.OFFER_PATHS."""
    benefit = _benefit_in(offer)
    return {
        "offer_name": offer.offer_name,
        "offer_validity_days": offer.offer_validity_days,
        "offer_type_id": offer.offer_type_id,
        "is_special": offer.is_special,
        "criteria": _criteria(offer),
        "description": offer.description,
        "status": _enum(offer.status, OFFER_STATUSES),
        "benefit": benefit,
        "benefit.max_amount": benefit.max_amount if benefit else None,
        "benefit.min_plan_price": benefit.min_plan_price if benefit else None,
        "expires_at": _datetime(offer, "expires_at", "offer.expires_at"),
    }


def _enum(value: int, names: Mapping[Any, str]) -> str | None:
    """An enum of a request: None when unspecified (0), "" (never valid) when unknown."""
    if value == 0:
        return None
    return names.get(value, "")


def _admin_id() -> int | None:
    """created_by: the calling admin (service accounts leave it empty)."""
    who = principal()
    return who.numeric_id if who.kind == "admin" else None


def plan_group_message(row: Row[Any]) -> pb.PlanGroup:
    return pb.PlanGroup(
        group_id=row.group_id, group_name=row.group_name, description=row.description or ""
    )


def offer_type_message(row: Row[Any]) -> pb.OfferType:
    return pb.OfferType(
        offer_type_id=row.offer_type_id,
        offer_type_name=row.offer_type_name,
        description=row.description or "",
    )


class PlanServicer(plan_service_pb2_grpc.PlanServiceServicer):
    def __init__(self, resources: Resources, catalogue: Catalogue) -> None:
        self._engine = resources.engine
        self._catalogue = catalogue

    async def ListPlans(
        self, request: pb.ListPlansRequest, context: Context
    ) -> pb.ListPlansResponse:
        flt = domain.PlanFilter(
            plan_type=protoconv.enum_filter("plan_type", request.plan_type, protoconv.USER_TYPES),
            group_id=request.group_id or None,
            most_popular=request.most_popular if request.HasField("most_popular") else None,
            status=protoconv.enum_filter("status", request.status, PLAN_STATUSES) or domain.ACTIVE,
        )
        async with db.read_only(self._engine) as conn:
            rows, token = await domain.list_plans(conn, flt, request.page_size, request.page_token)
        return pb.ListPlansResponse(plans=[plan_message(r) for r in rows], next_page_token=token)

    async def GetPlan(self, request: pb.GetPlanRequest, context: Context) -> pb.Plan:
        async with db.read_only(self._engine) as conn:
            return plan_message(await domain.get_plan(conn, request.plan_id))

    async def ListPlanGroups(
        self, request: pb.ListPlanGroupsRequest, context: Context
    ) -> pb.ListPlanGroupsResponse:
        async with db.read_only(self._engine) as conn:
            rows, token = await domain.list_plan_groups(conn, request.page_size, request.page_token)
        return pb.ListPlanGroupsResponse(
            plan_groups=[plan_group_message(r) for r in rows],
            next_page_token=token,
        )

    async def ListOffers(
        self, request: pb.ListOffersRequest, context: Context
    ) -> pb.ListOffersResponse:
        flt = domain.OfferFilter(
            offer_type_id=request.offer_type_id or None,
            status=protoconv.enum_filter("status", request.status, OFFER_STATUSES) or domain.ACTIVE,
            is_special=request.is_special if request.HasField("is_special") else None,
        )
        async with db.read_only(self._engine) as conn:
            rows, token = await domain.list_offers(conn, flt, request.page_size, request.page_token)
        return pb.ListOffersResponse(offers=[offer_message(r) for r in rows], next_page_token=token)

    async def GetOffer(self, request: pb.GetOfferRequest, context: Context) -> pb.Offer:
        async with db.read_only(self._engine) as conn:
            return offer_message(await domain.get_offer(conn, request.offer_id))

    async def ListOfferTypes(
        self, request: pb.ListOfferTypesRequest, context: Context
    ) -> pb.ListOfferTypesResponse:
        async with db.read_only(self._engine) as conn:
            rows, token = await domain.list_offer_types(conn, request.page_size, request.page_token)
        return pb.ListOfferTypesResponse(
            offer_types=[offer_type_message(r) for r in rows],
            next_page_token=token,
        )

    # ------------------------------------------------------------ administration
    # Each change is one transaction (with its audit event); the in-process catalogue
    # is invalidated once it has committed.

    async def CreatePlan(self, request: pb.CreatePlanRequest, context: Context) -> pb.Plan:
        values = plan_values(request.plan)
        async with db.transaction(self._engine) as conn:
            row = await admin.create_plan(conn, values, _admin_id())
        self._catalogue.invalidate()
        return plan_message(row)

    async def UpdatePlan(self, request: pb.UpdatePlanRequest, context: Context) -> pb.Plan:
        values = plan_values(request.plan)
        async with db.transaction(self._engine) as conn:
            row = await admin.update_plan(
                conn, request.plan.plan_id, values, request.update_mask.paths
            )
        self._catalogue.invalidate()
        return plan_message(row)

    async def DeletePlan(self, request: pb.DeletePlanRequest, context: Context) -> empty_pb2.Empty:
        async with db.transaction(self._engine) as conn:
            await admin.delete_plan(conn, request.plan_id)
        self._catalogue.invalidate()
        return empty_pb2.Empty()

    async def CreateOffer(self, request: pb.CreateOfferRequest, context: Context) -> pb.Offer:
        values = offer_values(request.offer)
        async with db.transaction(self._engine) as conn:
            row = await admin.create_offer(conn, values, _admin_id())
        self._catalogue.invalidate()
        return offer_message(row)

    async def UpdateOffer(self, request: pb.UpdateOfferRequest, context: Context) -> pb.Offer:
        values = offer_values(request.offer)
        async with db.transaction(self._engine) as conn:
            row = await admin.update_offer(
                conn, request.offer.offer_id, values, request.update_mask.paths
            )
        self._catalogue.invalidate()
        return offer_message(row)

    async def DeleteOffer(
        self, request: pb.DeleteOfferRequest, context: Context
    ) -> empty_pb2.Empty:
        async with db.transaction(self._engine) as conn:
            await admin.delete_offer(conn, request.offer_id)
        self._catalogue.invalidate()
        return empty_pb2.Empty()

    async def CreatePlanGroup(
        self, request: pb.CreatePlanGroupRequest, context: Context
    ) -> pb.PlanGroup:
        group = request.plan_group
        async with db.transaction(self._engine) as conn:
            row = await admin.create_plan_group(conn, group.group_name, group.description)
        self._catalogue.invalidate()
        return plan_group_message(row)

    async def CreateOfferType(
        self, request: pb.CreateOfferTypeRequest, context: Context
    ) -> pb.OfferType:
        offer_type = request.offer_type
        async with db.transaction(self._engine) as conn:
            row = await admin.create_offer_type(
                conn, offer_type.offer_type_name, offer_type.description
            )
        self._catalogue.invalidate()
        return offer_type_message(row)
