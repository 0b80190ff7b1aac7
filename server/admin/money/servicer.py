"""The money RPCs of AdminService: RPC methods only."""

from __future__ import annotations

from typing import Any

import grpc

from gencharge.v1 import admin_service_pb2 as pb
from gencharge.v1 import transaction_pb2
from server.admin.money import convert, domain, flows
from server.auth.principal import principal
from server.core import protoconv
from server.core.db import Database
from server.core.resources import Resources
from server.ledger import convert as ledger_convert
from server.payments.gateway import PaymentGateway

Context = grpc.aio.ServicerContext[Any, Any]


class MoneyRpcs:
    """RefundTransaction, AdjustWallet, ApproveWalletAdjustment, RejectWalletAdjustment,
    ListWalletAdjustments (a part of the AdminService servicer, composed in
    server/rpc/services.py)."""

    _db: Database
    _gateway: PaymentGateway
    _resources: Resources

    async def RefundTransaction(
        self, request: pb.RefundTransactionRequest, context: Context
    ) -> pb.RefundTransactionResponse:
        step = await flows.refund(
            self._db, self._gateway, principal(), convert.refund_order(request)
        )
        return convert.refund_response(step)

    async def AdjustWallet(
        self, request: pb.AdjustWalletRequest, context: Context
    ) -> transaction_pb2.Transaction:
        order = convert.adjustment_order(request)
        domain.check_adjustment(order)
        threshold = self._resources.settings.adjustment_approval_threshold_minor
        async with self._db.transaction() as conn:
            adjustment = await domain.adjust(
                principal(), order, threshold_minor=threshold, conn=conn
            )
        return ledger_convert.transaction_message(adjustment.txn)

    async def ApproveWalletAdjustment(
        self, request: pb.ApproveWalletAdjustmentRequest, context: Context
    ) -> pb.WalletAdjustment:
        async with self._db.transaction() as conn:
            adjustment = await domain.decide(
                principal(), convert.approval(request), approve=True, conn=conn
            )
        return convert.adjustment_message(adjustment)

    async def RejectWalletAdjustment(
        self, request: pb.RejectWalletAdjustmentRequest, context: Context
    ) -> pb.WalletAdjustment:
        async with self._db.transaction() as conn:
            adjustment = await domain.decide(
                principal(), convert.rejection(request), approve=False, conn=conn
            )
        return convert.adjustment_message(adjustment)

    async def ListWalletAdjustments(
        self, request: pb.ListWalletAdjustmentsRequest, context: Context
    ) -> pb.ListWalletAdjustmentsResponse:
        status = protoconv.enum_filter("status", request.status, convert.ADJUSTMENT_STATUSES)
        async with self._db.read_only() as conn:
            adjustments, token = await domain.list_adjustments(
                status=status,
                user_id=request.user_id,
                page_size=request.page_size,
                page_token=request.page_token,
                conn=conn,
            )
        return pb.ListWalletAdjustmentsResponse(
            adjustments=[convert.adjustment_message(a) for a in adjustments],
            next_page_token=token,
        )
