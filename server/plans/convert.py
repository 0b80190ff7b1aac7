"""PlanService messages <-> plan values (pure functions).

Other domains show plans and offers with :func:`plan_message` / :func:`offer_message`
(the recharge quote does), never through the plans servicer.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from gencharge.v1 import common_pb2
from gencharge.v1 import plan_service_pb2 as pb
from server.core import protoconv
from server.core.errors import InvalidArgument
from server.plans import domain
from server.plans.admin import domain as admin
from server.plans.domain import OfferInfo, OfferType, PlanGroup, PlanInfo

PLAN_STATUSES: dict[pb.PlanStatus.ValueType, str] = {
    pb.PLAN_STATUS_ACTIVE: "active",
    pb.PLAN_STATUS_INACTIVE: "inactive",
}
PLAN_STATUSES_BY_NAME = {v: k for k, v in PLAN_STATUSES.items()}
OFFER_STATUSES: dict[pb.OfferStatus.ValueType, str] = {
    pb.OFFER_STATUS_ACTIVE: "active",
    pb.OFFER_STATUS_INACTIVE: "inactive",
}
OFFER_STATUSES_BY_NAME = {v: k for k, v in OFFER_STATUSES.items()}
BENEFIT_KINDS: dict[pb.OfferBenefitKind.ValueType, str] = {
    pb.OFFER_BENEFIT_KIND_DISCOUNT: "discount",
    pb.OFFER_BENEFIT_KIND_CASHBACK: "cashback",
    pb.OFFER_BENEFIT_KIND_BONUS: "bonus",
}
#: Timestamps PostgreSQL and Python datetimes both hold (years 1 to 9999).
_MIN_SECONDS, _MAX_SECONDS = -62135596800, 253402300799


# ---------------------------------------------------------------- values -> messages


def plan_message(plan: PlanInfo) -> pb.Plan:
    b = plan.benefits
    benefits = pb.PlanBenefits(
        data_mb=b.data_mb or 0,
        data_mb_per_day=b.data_mb_per_day or 0,
        unlimited_data=b.unlimited_data,
        voice_minutes=b.voice_minutes or 0,
        unlimited_voice=b.unlimited_voice,
        sms_count=b.sms_count or 0,
        sms_per_day=b.sms_per_day or 0,
        talktime=protoconv.optional_money(b.talktime, plan.currency),
        extras=b.extras,
    )
    return pb.Plan(
        plan_id=plan.plan_id,
        plan_name=plan.plan_name,
        validity_days=plan.validity_days,
        most_popular=plan.most_popular,
        plan_type=protoconv.USER_TYPES_BY_NAME[plan.plan_type],
        group_id=plan.group_id or 0,
        group_name=plan.group_name or "",
        description=plan.description or "",
        criteria=protoconv.struct(plan.stored_criteria),
        price=protoconv.money(plan.price, plan.currency),
        benefits=benefits,
        status=PLAN_STATUSES_BY_NAME[plan.status],
        created_at=protoconv.timestamp(plan.created_at),
        created_by=plan.created_by or 0,
    )


def _percent_bps(value: Decimal) -> int:
    return int(value * 100)


def offer_benefit(offer: OfferInfo) -> pb.OfferBenefit | None:
    """The offer's value: the first of discount, cashback, bonus that the offer sets."""
    kinds = (
        (pb.OFFER_BENEFIT_KIND_DISCOUNT, offer.discount_percent, offer.discount_amount),
        (pb.OFFER_BENEFIT_KIND_CASHBACK, offer.cashback_percent, offer.cashback_amount),
    )
    benefit: pb.OfferBenefit | None = None
    for kind, percent, amount in kinds:
        if percent is not None:
            benefit = pb.OfferBenefit(kind=kind, percent_bps=_percent_bps(percent))
        elif amount is not None:
            benefit = pb.OfferBenefit(kind=kind, fixed_amount=protoconv.money(amount))
        if benefit is not None:
            break
    bonus = offer.stored_bonus
    if benefit is None and bonus:
        benefit = pb.OfferBenefit(kind=pb.OFFER_BENEFIT_KIND_BONUS)
    if benefit is None:
        return None
    if bonus:
        json_format.ParseDict(bonus, benefit.bonus, ignore_unknown_fields=True)
    if offer.max_benefit_amount is not None:
        benefit.max_amount.CopyFrom(protoconv.money(offer.max_benefit_amount))
    if offer.min_plan_price is not None:
        benefit.min_plan_price.CopyFrom(protoconv.money(offer.min_plan_price))
    return benefit


def bonus_message(bonus: Mapping[str, Any] | None) -> pb.PlanBenefits | None:
    """Extra allowances (PlanBenefits-shaped JSON, as offers store them); None if none."""
    if not bonus:
        return None
    message = pb.PlanBenefits()
    json_format.ParseDict(dict(bonus), message, ignore_unknown_fields=True)
    return message


def offer_message(offer: OfferInfo) -> pb.Offer:
    return pb.Offer(
        offer_id=offer.offer_id,
        offer_name=offer.offer_name,
        offer_validity_days=offer.offer_validity_days or 0,
        offer_type_id=offer.offer_type_id or 0,
        offer_type_name=offer.offer_type_name or "",
        is_special=offer.is_special,
        criteria=protoconv.struct(offer.stored_criteria),
        description=offer.description or "",
        created_at=protoconv.timestamp(offer.created_at),
        created_by=offer.created_by or 0,
        status=OFFER_STATUSES_BY_NAME[offer.status],
        benefit=offer_benefit(offer),
        expires_at=protoconv.timestamp(offer.expires_at),
    )


def plan_group_message(group: PlanGroup) -> pb.PlanGroup:
    return pb.PlanGroup(
        group_id=group.group_id, group_name=group.group_name, description=group.description or ""
    )


def offer_type_message(offer_type: OfferType) -> pb.OfferType:
    return pb.OfferType(
        offer_type_id=offer_type.offer_type_id,
        offer_type_name=offer_type.offer_type_name,
        description=offer_type.description or "",
    )


def plans_response(plans: list[PlanInfo], token: str) -> pb.ListPlansResponse:
    return pb.ListPlansResponse(plans=[plan_message(p) for p in plans], next_page_token=token)


def plan_groups_response(groups: list[PlanGroup], token: str) -> pb.ListPlanGroupsResponse:
    return pb.ListPlanGroupsResponse(
        plan_groups=[plan_group_message(g) for g in groups], next_page_token=token
    )


def offers_response(offers: list[OfferInfo], token: str) -> pb.ListOffersResponse:
    return pb.ListOffersResponse(offers=[offer_message(o) for o in offers], next_page_token=token)


def offer_types_response(types: list[OfferType], token: str) -> pb.ListOfferTypesResponse:
    return pb.ListOfferTypesResponse(
        offer_types=[offer_type_message(t) for t in types], next_page_token=token
    )


# ---------------------------------------------------------------- requests -> values


def plan_filter(request: pb.ListPlansRequest) -> domain.PlanFilter:
    """The filters of ListPlans (unknown enum values are INVALID_ARGUMENT)."""
    return domain.PlanFilter(
        plan_type=protoconv.enum_filter("plan_type", request.plan_type, protoconv.USER_TYPES),
        group_id=request.group_id or None,
        most_popular=request.most_popular if request.HasField("most_popular") else None,
        status=protoconv.enum_filter("status", request.status, PLAN_STATUSES) or domain.ACTIVE,
    )


def offer_filter(request: pb.ListOffersRequest) -> domain.OfferFilter:
    """The filters of ListOffers (unknown enum values are INVALID_ARGUMENT)."""
    return domain.OfferFilter(
        offer_type_id=request.offer_type_id or None,
        status=protoconv.enum_filter("status", request.status, OFFER_STATUSES) or domain.ACTIVE,
        is_special=request.is_special if request.HasField("is_special") else None,
    )


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
