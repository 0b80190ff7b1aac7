"""WalletService: RPC methods only (proto <-> values in server/wallet/convert.py)."""

from __future__ import annotations

from typing import Any

import grpc

from gencharge.v1 import transaction_pb2, wallet_service_pb2_grpc
from gencharge.v1 import wallet_service_pb2 as pb
from server.auth.access import PermissionMatrix
from server.auth.principal import principal
from server.core import protoconv
from server.core.money import from_minor
from server.core.resources import Resources
from server.ledger import convert as ledger_convert
from server.payments.gateway import PaymentGateway
from server.wallet import convert, domain, flows

Context = grpc.aio.ServicerContext[Any, Any]


class WalletServicer(wallet_service_pb2_grpc.WalletServiceServicer):
    def __init__(
        self, resources: Resources, gateway: PaymentGateway, matrix: PermissionMatrix
    ) -> None:
        self._db = resources.db
        self._gateway = gateway
        self._matrix = matrix
        self._referral_reward = from_minor(resources.settings.referral_reward_minor)

    async def GetWallet(self, request: pb.GetWalletRequest, context: Context) -> pb.Wallet:
        async with self._db.read_only() as conn:
            wallet = await domain.get_wallet(principal(), conn=conn)
        return convert.wallet_message(wallet)

    async def TopUp(self, request: pb.TopUpRequest, context: Context) -> pb.TopUpResponse:
        result = await flows.top_up(
            self._db, self._gateway, principal(), convert.top_up_order(request)
        )
        return convert.top_up_response(result)

    async def ConfirmPayment(
        self, request: pb.ConfirmPaymentRequest, context: Context
    ) -> transaction_pb2.Transaction:
        txn = await flows.confirm_payment(
            self._db,
            self._gateway,
            principal(),
            convert.confirmation(request),
            referral_reward=self._referral_reward,
        )
        return ledger_convert.transaction_message(txn)

    async def ListTransactions(
        self, request: pb.ListTransactionsRequest, context: Context
    ) -> pb.ListTransactionsResponse:
        async with self._db.read_only() as conn:
            rows, token = await domain.list_transactions(
                principal(),
                convert.transaction_filter(request),
                request.page_size,
                request.page_token,
                conn=conn,
            )
        return pb.ListTransactionsResponse(
            transactions=[ledger_convert.transaction_message(r) for r in rows],
            next_page_token=token,
        )

    async def GetTransaction(
        self, request: pb.GetTransactionRequest, context: Context
    ) -> transaction_pb2.Transaction:
        async with self._db.read_only() as conn:
            txn = await domain.get_transaction(principal(), self._matrix, request.txn_id, conn=conn)
        return ledger_convert.transaction_message(txn)

    async def ListReferralRewards(
        self, request: pb.ListReferralRewardsRequest, context: Context
    ) -> pb.ListReferralRewardsResponse:
        status = protoconv.enum_filter("status", request.status, ledger_convert.REFERRAL_STATUSES)
        async with self._db.read_only() as conn:
            rewards, token = await domain.list_referral_rewards(
                principal(), status, request.page_size, request.page_token, conn=conn
            )
        return pb.ListReferralRewardsResponse(
            referral_rewards=[ledger_convert.referral_reward_message(r) for r in rewards],
            next_page_token=token,
        )
