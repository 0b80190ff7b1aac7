"""The recharge RPCs of RechargeService (QuoteRecharge, Recharge, GetRecharge,
ListRecharges, ListActivePlans): RPC methods only. AutoPay, bills and BatchRecharge
are in their sub-packages; server/rpc/services.py composes the whole servicer."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import grpc

from gencharge.v1 import recharge_service_pb2 as pb
from server.auth.principal import principal
from server.core import protoconv
from server.core.db import Database
from server.core.idempotency import request_hash
from server.recharge import convert, domain, flows
from server.recharge.flows import Recharger

Context = grpc.aio.ServicerContext[Any, Any]


class RechargeRpcs:
    """A part of the RechargeService servicer, composed in server/rpc/services.py."""

    _db: Database
    _recharger: Recharger

    async def QuoteRecharge(self, request: pb.QuoteRechargeRequest, context: Context) -> pb.Quote:
        async with self._db.read_only() as conn:
            result = await domain.quote(
                self._recharger.catalogue,
                principal(),
                phone_number=request.phone_number,
                plan_id=request.plan_id,
                offer_id=convert.optional_offer(request),
                payment_method=convert.payment_method(
                    request.payment_method, default=domain.WALLET
                ),
                user_id=request.user_id,
                conn=conn,
            )
        return convert.quote_message(result)

    async def Recharge(self, request: pb.RechargeRequest, context: Context) -> pb.Recharge:
        result = await flows.recharge(
            self._recharger, principal(), convert.order_of(request), request_hash(request)
        )
        return convert.recharge_message(result)

    async def GetRecharge(self, request: pb.GetRechargeRequest, context: Context) -> pb.Recharge:
        async with self._db.read_only() as conn:
            result = await domain.get(principal(), request.txn_id, conn=conn)
        return convert.recharge_message(result)

    async def ListRecharges(
        self, request: pb.ListRechargesRequest, context: Context
    ) -> pb.ListRechargesResponse:
        status = protoconv.enum_filter("status", request.status, convert.TXN_STATUSES)
        async with self._db.read_only() as conn:
            results, token = await domain.list_recharges(
                principal(),
                phone_number=request.phone_number,
                status=status,
                created_after=(
                    request.created_after.ToDatetime(UTC)
                    if request.HasField("created_after")
                    else None
                ),
                created_before=(
                    request.created_before.ToDatetime(UTC)
                    if request.HasField("created_before")
                    else None
                ),
                page_size=request.page_size,
                page_token=request.page_token,
                conn=conn,
            )
        return pb.ListRechargesResponse(
            recharges=[convert.recharge_message(r) for r in results], next_page_token=token
        )

    async def ListActivePlans(
        self, request: pb.ListActivePlansRequest, context: Context
    ) -> pb.ListActivePlansResponse:
        status = protoconv.enum_filter("status", request.status, convert.ACTIVE_STATUSES)
        async with self._db.read_only() as conn:
            views, token = await domain.active_plans(
                principal(),
                phone_number=request.phone_number,
                status=status,
                page_size=request.page_size,
                page_token=request.page_token,
                conn=conn,
            )
        return pb.ListActivePlansResponse(
            active_plans=[convert.active_plan_message(v) for v in views], next_page_token=token
        )
