"""The bill RPCs of RechargeService (ListBillReminders, PayBill): RPC methods only."""

from __future__ import annotations

from typing import Any

import grpc

from gencharge.v1 import recharge_service_pb2 as pb
from server.auth.principal import principal
from server.core import protoconv
from server.core.db import Database
from server.recharge.bills import convert, domain, flows
from server.recharge.flows import Recharger

Context = grpc.aio.ServicerContext[Any, Any]


class BillRpcs:
    """A part of the RechargeService servicer, composed in server/rpc/services.py."""

    _db: Database
    _recharger: Recharger

    async def ListBillReminders(
        self, request: pb.ListBillRemindersRequest, context: Context
    ) -> pb.ListBillRemindersResponse:
        status = protoconv.enum_filter("status", request.status, convert.STATUSES)
        async with self._db.read_only() as conn:
            reminders, token = await domain.list_own(
                principal(),
                status=status,
                page_size=request.page_size,
                page_token=request.page_token,
                conn=conn,
            )
        return pb.ListBillRemindersResponse(
            bill_reminders=[convert.bill_reminder_message(r) for r in reminders],
            next_page_token=token,
        )

    async def PayBill(self, request: pb.PayBillRequest, context: Context) -> pb.PayBillResponse:
        paid = await flows.pay_bill(self._recharger, principal(), convert.pay_bill(request))
        return convert.pay_bill_response(paid)
