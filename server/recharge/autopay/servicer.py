"""The AutoPay RPCs of RechargeService: RPC methods only."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2

from gencharge.v1 import recharge_service_pb2 as pb
from server.auth.principal import principal
from server.core import idempotency, protoconv
from server.core.db import Database
from server.recharge.autopay import convert, domain

Context = grpc.aio.ServicerContext[Any, Any]


class AutoPayRpcs:
    """CreateAutoPay, ListAutoPays, UpdateAutoPay, DeleteAutoPay (a part of the
    RechargeService servicer, composed in server/rpc/services.py)."""

    _db: Database

    async def CreateAutoPay(self, request: pb.CreateAutoPayRequest, context: Context) -> pb.AutoPay:
        mandate = convert.mandate_of(request.autopay)
        async with self._db.transaction() as conn:
            autopay = await domain.create(
                principal(),
                request.request_id,
                mandate,
                idempotency.request_hash(request),
                conn=conn,
            )
        return convert.autopay_message(autopay)

    async def ListAutoPays(
        self, request: pb.ListAutoPaysRequest, context: Context
    ) -> pb.ListAutoPaysResponse:
        status = protoconv.enum_filter("status", request.status, convert.STATUSES)
        async with self._db.read_only() as conn:
            autopays, token = await domain.list_own(
                principal(),
                status=status,
                page_size=request.page_size,
                page_token=request.page_token,
                conn=conn,
            )
        return pb.ListAutoPaysResponse(
            autopays=[convert.autopay_message(a) for a in autopays], next_page_token=token
        )

    async def UpdateAutoPay(self, request: pb.UpdateAutoPayRequest, context: Context) -> pb.AutoPay:
        mandate = convert.mandate_of(request.autopay)
        async with self._db.transaction() as conn:
            autopay = await domain.update(
                principal(),
                request.autopay.autopay_id,
                mandate,
                request.update_mask.paths,
                conn=conn,
            )
        return convert.autopay_message(autopay)

    async def DeleteAutoPay(
        self, request: pb.DeleteAutoPayRequest, context: Context
    ) -> empty_pb2.Empty:
        async with self._db.transaction() as conn:
            await domain.delete(principal(), request.autopay_id, conn=conn)
        return empty_pb2.Empty()
