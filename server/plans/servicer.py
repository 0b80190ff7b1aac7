"""PlanService: RPC methods only (proto <-> values in convert.py; reads in domain.py,
administration in admin/domain.py). Each call is one unit of work opened on ``resources.db``."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2

from gencharge.v1 import plan_service_pb2 as pb
from gencharge.v1 import plan_service_pb2_grpc
from server.auth.principal import principal
from server.core.resources import Resources
from server.plans import convert, domain
from server.plans.admin import domain as admin
from server.plans.catalogue import Catalogue

Context = grpc.aio.ServicerContext[Any, Any]


class PlanServicer(plan_service_pb2_grpc.PlanServiceServicer):
    def __init__(self, resources: Resources, catalogue: Catalogue) -> None:
        self._db = resources.db
        self._catalogue = catalogue

    async def ListPlans(
        self, request: pb.ListPlansRequest, context: Context
    ) -> pb.ListPlansResponse:
        flt = convert.plan_filter(request)
        async with self._db.read_only() as conn:
            plans, token = await domain.list_plans(
                flt, request.page_size, request.page_token, conn=conn
            )
        return convert.plans_response(plans, token)

    async def GetPlan(self, request: pb.GetPlanRequest, context: Context) -> pb.Plan:
        async with self._db.read_only() as conn:
            plan = await domain.get_plan(request.plan_id, conn=conn)
        return convert.plan_message(plan)

    async def ListPlanGroups(
        self, request: pb.ListPlanGroupsRequest, context: Context
    ) -> pb.ListPlanGroupsResponse:
        async with self._db.read_only() as conn:
            groups, token = await domain.list_plan_groups(
                request.page_size, request.page_token, conn=conn
            )
        return convert.plan_groups_response(groups, token)

    async def ListOffers(
        self, request: pb.ListOffersRequest, context: Context
    ) -> pb.ListOffersResponse:
        flt = convert.offer_filter(request)
        async with self._db.read_only() as conn:
            offers, token = await domain.list_offers(
                flt, request.page_size, request.page_token, conn=conn
            )
        return convert.offers_response(offers, token)

    async def GetOffer(self, request: pb.GetOfferRequest, context: Context) -> pb.Offer:
        async with self._db.read_only() as conn:
            offer = await domain.get_offer(request.offer_id, conn=conn)
        return convert.offer_message(offer)

    async def ListOfferTypes(
        self, request: pb.ListOfferTypesRequest, context: Context
    ) -> pb.ListOfferTypesResponse:
        async with self._db.read_only() as conn:
            types, token = await domain.list_offer_types(
                request.page_size, request.page_token, conn=conn
            )
        return convert.offer_types_response(types, token)

    # ------------------------------------------------------------ administration
    # Each change is one transaction (with its audit event); the in-process catalogue
    # is invalidated once it has committed.

    async def CreatePlan(self, request: pb.CreatePlanRequest, context: Context) -> pb.Plan:
        values = convert.plan_values(request.plan)
        async with self._db.transaction() as conn:
            plan = await admin.create_plan(values, admin.creator(principal()), conn=conn)
        self._catalogue.invalidate()
        return convert.plan_message(plan)

    async def UpdatePlan(self, request: pb.UpdatePlanRequest, context: Context) -> pb.Plan:
        values = convert.plan_values(request.plan)
        async with self._db.transaction() as conn:
            plan = await admin.update_plan(
                request.plan.plan_id, values, request.update_mask.paths, conn=conn
            )
        self._catalogue.invalidate()
        return convert.plan_message(plan)

    async def DeletePlan(self, request: pb.DeletePlanRequest, context: Context) -> empty_pb2.Empty:
        async with self._db.transaction() as conn:
            await admin.delete_plan(request.plan_id, conn=conn)
        self._catalogue.invalidate()
        return empty_pb2.Empty()

    async def CreateOffer(self, request: pb.CreateOfferRequest, context: Context) -> pb.Offer:
        values = convert.offer_values(request.offer)
        async with self._db.transaction() as conn:
            offer = await admin.create_offer(values, admin.creator(principal()), conn=conn)
        self._catalogue.invalidate()
        return convert.offer_message(offer)

    async def UpdateOffer(self, request: pb.UpdateOfferRequest, context: Context) -> pb.Offer:
        values = convert.offer_values(request.offer)
        async with self._db.transaction() as conn:
            offer = await admin.update_offer(
                request.offer.offer_id, values, request.update_mask.paths, conn=conn
            )
        self._catalogue.invalidate()
        return convert.offer_message(offer)

    async def DeleteOffer(
        self, request: pb.DeleteOfferRequest, context: Context
    ) -> empty_pb2.Empty:
        async with self._db.transaction() as conn:
            await admin.delete_offer(request.offer_id, conn=conn)
        self._catalogue.invalidate()
        return empty_pb2.Empty()

    async def CreatePlanGroup(
        self, request: pb.CreatePlanGroupRequest, context: Context
    ) -> pb.PlanGroup:
        group = request.plan_group
        async with self._db.transaction() as conn:
            created = await admin.create_plan_group(group.group_name, group.description, conn=conn)
        self._catalogue.invalidate()
        return convert.plan_group_message(created)

    async def CreateOfferType(
        self, request: pb.CreateOfferTypeRequest, context: Context
    ) -> pb.OfferType:
        offer_type = request.offer_type
        async with self._db.transaction() as conn:
            created = await admin.create_offer_type(
                offer_type.offer_type_name, offer_type.description, conn=conn
            )
        self._catalogue.invalidate()
        return convert.offer_type_message(created)
