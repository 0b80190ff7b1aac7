"""Money-path test helpers: funding wallets through the ledger, plans, invariants, and
the gateway's genuine callbacks (ConfirmPayment requests built from what the test
server's sandbox gateway signs)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import grpc
from sqlalchemy import insert, text

from gencharge.v1 import transaction_pb2, wallet_service_pb2, wallet_service_pb2_grpc
from server.core.schema import offers, offertypes, plangroups, plans, transactions
from server.payments.sandbox import SandboxGateway


async def fund(resources: Any, user_id: int, rupees: str | Decimal) -> None:
    """Credit a wallet through a ledger row (the trigger moves the balance)."""
    async with resources.db.transaction() as conn:
        await conn.execute(
            insert(transactions).values(
                user_id=user_id,
                category="wallet",
                txn_type="credit",
                amount=Decimal(rupees),
                source="wallet_topup",
                status="success",
                payment_method="UPI",
                payment_transaction_id=f"test-{uuid.uuid4().hex}",
            )
        )


async def balance(resources: Any, user_id: int) -> Decimal:
    async with resources.db.read_only() as conn:
        value = (
            await conn.execute(
                text("SELECT wallet_balance FROM users WHERE user_id = :u"), {"u": user_id}
            )
        ).scalar_one()
    return Decimal(value)


async def make_plan(
    resources: Any,
    *,
    price: str = "10.00",
    validity: int = 28,
    name: str | None = None,
    status: str = "active",
    criteria: dict[str, Any] | None = None,
    plan_type: str = "prepaid",
) -> int:
    async with resources.db.transaction() as conn:
        group_id = (
            await conn.execute(
                plangroups.select().with_only_columns(plangroups.c.group_id).limit(1)
            )
        ).scalar_one()
        result = await conn.execute(
            insert(plans)
            .values(
                plan_name=name or f"Plan {price}",
                plan_type=plan_type,
                group_id=group_id,
                price=Decimal(price),
                validity=validity,
                status=status,
                criteria=criteria,
            )
            .returning(plans.c.plan_id)
        )
        return int(result.scalar_one())


async def make_offer(resources: Any, *, type_name: str = "cashback", **values: Any) -> int:
    async with resources.db.transaction() as conn:
        type_id = (
            await conn.execute(
                offertypes.select()
                .with_only_columns(offertypes.c.offer_type_id)
                .where(offertypes.c.offer_type_name == type_name)
            )
        ).scalar_one()
        result = await conn.execute(
            insert(offers)
            .values(
                offer_name=values.pop("offer_name", "Test offer"), offer_type_id=type_id, **values
            )
            .returning(offers.c.offer_id)
        )
        return int(result.scalar_one())


async def assert_ledger_balances(resources: Any) -> None:
    """Every wallet equals its successful wallet credits minus debits; none negative."""
    async with resources.db.read_only() as conn:
        rows = (
            await conn.execute(
                text(
                    """
                    SELECT u.user_id, u.wallet_balance,
                           coalesce(sum(CASE WHEN t.txn_type = 'credit' THEN t.amount
                                             ELSE -t.amount END), 0) AS ledger
                    FROM users u
                    LEFT JOIN transactions t ON t.user_id = u.user_id
                         AND t.category = 'wallet' AND t.status = 'success'
                    GROUP BY u.user_id, u.wallet_balance
                    """
                )
            )
        ).all()
    for row in rows:
        assert row.wallet_balance >= 0, row
        assert row.wallet_balance == row.ledger, row


# --- the gateway's callbacks (ConfirmPayment) ------------------------------------------------


def sandbox_of(server: Any) -> SandboxGateway:
    """The sandbox gateway a running test server charges through (``RunningServer.app``)."""
    gateway = server.app.gateway
    assert isinstance(gateway, SandboxGateway), gateway
    return gateway


def checkout_request(
    gateway: SandboxGateway, payment_id: str, *, request_id: str | None = None
) -> wallet_service_pb2.ConfirmPaymentRequest:
    """The user pays the pending charge ``payment_id`` at the sandbox: the signed checkout
    callback, as the payments edge service forwards it."""
    callback = gateway.pay(payment_id)
    return wallet_service_pb2.ConfirmPaymentRequest(
        request_id=request_id or str(uuid.uuid4()),
        checkout=wallet_service_pb2.PaymentCheckoutCallback(
            order_id=callback.order_id,
            payment_id=callback.payment_id,
            signature=callback.signature,
        ),
    )


def webhook_request(
    body: bytes, signature: str, *, request_id: str | None = None
) -> wallet_service_pb2.ConfirmPaymentRequest:
    return wallet_service_pb2.ConfirmPaymentRequest(
        request_id=request_id or str(uuid.uuid4()),
        webhook=wallet_service_pb2.PaymentWebhook(body=body, signature=signature),
    )


def failed_request(
    gateway: SandboxGateway,
    payment_id: str,
    *,
    reason: str = "payment abandoned",
    request_id: str | None = None,
) -> wallet_service_pb2.ConfirmPaymentRequest:
    """The pending charge ``payment_id`` fails at the sandbox: its signed
    ``payment.failed`` webhook."""
    body, signature = gateway.fail(payment_id, reason)
    return webhook_request(body, signature, request_id=request_id)


async def confirm(
    channel: grpc.aio.Channel, service: Any, request: wallet_service_pb2.ConfirmPaymentRequest
) -> transaction_pb2.Transaction:
    """Forward a callback through ConfirmPayment as the payments edge service ``service``."""
    stub = wallet_service_pb2_grpc.WalletServiceStub(channel)
    return await stub.ConfirmPayment(request, metadata=service.metadata)
