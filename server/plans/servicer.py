"""PlanService: proto <-> domain only. The admin RPCs arrive with issue #4."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import grpc
from google.protobuf import json_format
from sqlalchemy import Row

from gencharge.v1 import plan_service_pb2 as pb
from gencharge.v1 import plan_service_pb2_grpc
from server import db, protoconv
from server.plans import domain
from server.resources import Resources

Context = grpc.aio.ServicerContext[Any, Any]

PLAN_STATUSES = {pb.PLAN_STATUS_ACTIVE: "active", pb.PLAN_STATUS_INACTIVE: "inactive"}
PLAN_STATUSES_BY_NAME = {v: k for k, v in PLAN_STATUSES.items()}
OFFER_STATUSES = {pb.OFFER_STATUS_ACTIVE: "active", pb.OFFER_STATUS_INACTIVE: "inactive"}
OFFER_STATUSES_BY_NAME = {v: k for k, v in OFFER_STATUSES.items()}


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
        expires_at=protoconv.timestamp(row.valid_to),
    )


class PlanServicer(plan_service_pb2_grpc.PlanServiceServicer):
    def __init__(self, resources: Resources) -> None:
        self._engine = resources.engine

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
            plan_groups=[
                pb.PlanGroup(
                    group_id=r.group_id, group_name=r.group_name, description=r.description or ""
                )
                for r in rows
            ],
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
            offer_types=[
                pb.OfferType(
                    offer_type_id=r.offer_type_id,
                    offer_type_name=r.offer_type_name,
                    description=r.description or "",
                )
                for r in rows
            ],
            next_page_token=token,
        )
