"""AdminService RefundTransaction through the real server over real PostgreSQL: a refund is
a new ledger row linked to the original, the refunds of one transaction never exceed it
(also twenty at once), a gateway refund goes through the sandbox gateway once even when
its answer is lost, the plan of a fully refunded recharge ends, replays answer the same,
every refund is audited, and only admins may refund."""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from gencharge.v1 import admin_service_pb2 as pb
from gencharge.v1 import (
    admin_service_pb2_grpc,
    common_pb2,
    recharge_service_pb2_grpc,
    wallet_service_pb2_grpc,
)
from gencharge.v1 import recharge_service_pb2 as rpb
from gencharge.v1 import transaction_pb2 as tpb
from gencharge.v1 import wallet_service_pb2 as wpb
from server.payments.gateway import GatewayError, RefundResult
from server.payments.sandbox import SandboxGateway
from server.wallet.domain import expire_pending_payments
from tests.helpers.auth import Actor, create_admin, create_service, register_user
from tests.helpers.clock import eventually
from tests.helpers.money import assert_ledger_balances, balance, fund, make_plan, sandbox_of
from tests.helpers.rpc import details_of

Stub = admin_service_pb2_grpc.AdminServiceStub


def rid() -> str:
    return uuid.uuid4().hex


def inr(units_minor: int) -> common_pb2.Money:
    return common_pb2.Money(units_minor=units_minor, currency_code="INR")


def upi() -> common_pb2.PaymentDetails:
    return common_pb2.PaymentDetails(upi=common_pb2.UpiPayment(vpa="someone@okbank"))


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> Stub:
    return Stub(channel)


@pytest.fixture
async def admin(channel: grpc.aio.Channel, resources: Any) -> Actor:
    return await create_admin(channel, resources)


async def refund(
    stub: Stub, admin: Actor, txn_id: int, amount_minor: int | None = None, **fields: Any
) -> pb.RefundTransactionResponse:
    fields.setdefault("request_id", rid())
    fields.setdefault("reason", "customer complaint")
    if amount_minor is not None:
        fields["amount"] = inr(amount_minor)
    return await stub.RefundTransaction(
        pb.RefundTransactionRequest(txn_id=txn_id, **fields), metadata=admin.metadata
    )


async def failure(call: Any) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return details_of(info.value)


async def wallet_recharge(channel: Any, user: Actor, plan_id: int) -> rpb.Recharge:
    return await recharge_service_pb2_grpc.RechargeServiceStub(channel).Recharge(
        rpb.RechargeRequest(request_id=rid(), plan_id=plan_id), metadata=user.metadata
    )


async def upi_recharge(channel: Any, user: Actor, plan_id: int) -> rpb.Recharge:
    return await recharge_service_pb2_grpc.RechargeServiceStub(channel).Recharge(
        rpb.RechargeRequest(
            request_id=rid(),
            plan_id=plan_id,
            payment_method=common_pb2.PAYMENT_METHOD_UPI,
            payment_details=upi(),
        ),
        metadata=user.metadata,
    )


async def upi_top_up(channel: Any, user: Actor, amount_minor: int) -> wpb.TopUpResponse:
    return await wallet_service_pb2_grpc.WalletServiceStub(channel).TopUp(
        wpb.TopUpRequest(
            request_id=rid(),
            amount=inr(amount_minor),
            payment_method=common_pb2.PAYMENT_METHOD_UPI,
            payment_details=upi(),
        ),
        metadata=user.metadata,
    )


async def rows(resources: Any, sql: str, **params: Any) -> list[Any]:
    async with resources.db.read_only() as conn:
        return list((await conn.execute(text(sql), params)).all())


async def plan_status(resources: Any, recharge: rpb.Recharge) -> str:
    (row,) = await rows(
        resources,
        "SELECT status FROM currentactiveplans WHERE id = :id",
        id=recharge.active_plan.id,
    )
    return str(row.status)


async def refunds_of(resources: Any, txn_id: int) -> list[Any]:
    return await rows(
        resources,
        "SELECT * FROM transactions WHERE refund_of_txn_id = :t ORDER BY txn_id",
        t=txn_id,
    )


# --- wallet-paid recharges ---------------------------------------------------------------------


async def test_full_refund_of_a_wallet_recharge_credits_the_wallet_and_ends_the_plan(
    channel: Any, stub: Stub, admin: Actor, resources: Any
) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "100.00")
    plan_id = await make_plan(resources, price="10.00")
    bought = await wallet_recharge(channel, user, plan_id)
    assert await balance(resources, user.user_id) == Decimal("90.00")
    assert await plan_status(resources, bought) == "active"

    reply = await refund(stub, admin, bought.transaction.txn_id)

    r = reply.refund_transaction
    assert r.source == tpb.TRANSACTION_SOURCE_REFUND
    assert r.txn_type == tpb.TRANSACTION_TYPE_CREDIT
    assert r.category == tpb.TRANSACTION_CATEGORY_WALLET
    assert r.status == tpb.TRANSACTION_STATUS_SUCCESS
    assert r.amount.units_minor == 1000 and r.balance_after.units_minor == 10000
    assert r.refund_of_txn_id == bought.transaction.txn_id
    assert reply.original_transaction == bought.transaction  # never edited
    assert reply.total_refunded.units_minor == 1000
    assert await balance(resources, user.user_id) == Decimal("100.00")
    assert await plan_status(resources, bought) == "expired"
    (row,) = await refunds_of(resources, bought.transaction.txn_id)
    assert row.txn_id == r.txn_id
    await assert_ledger_balances(resources)


async def test_partial_refunds_keep_the_plan_and_never_exceed_the_original(
    channel: Any, stub: Stub, admin: Actor, resources: Any
) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "100.00")
    bought = await wallet_recharge(channel, user, await make_plan(resources, price="10.00"))
    txn_id = bought.transaction.txn_id

    first = await refund(stub, admin, txn_id, 400)
    assert first.total_refunded.units_minor == 400
    assert await plan_status(resources, bought) == "active"  # a partial refund keeps it

    too_much = await failure(refund(stub, admin, txn_id, 700))
    assert too_much.code == grpc.StatusCode.FAILED_PRECONDITION
    assert too_much.reason == "REFUND_EXCEEDS_REMAINING"
    assert too_much.metadata["remaining_minor"] == "600"

    rest = await refund(stub, admin, txn_id)  # no amount: what is left
    assert rest.refund_transaction.amount.units_minor == 600
    assert rest.total_refunded.units_minor == 1000
    assert await plan_status(resources, bought) == "expired"

    done = await failure(refund(stub, admin, txn_id, 1))
    assert done.reason == "REFUND_EXCEEDS_REMAINING" and done.metadata["remaining_minor"] == "0"
    assert await balance(resources, user.user_id) == Decimal("100.00")
    await assert_ledger_balances(resources)


async def test_a_queued_plan_of_a_refunded_recharge_never_starts(
    channel: Any, stub: Stub, admin: Actor, resources: Any
) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "100.00")
    plan_id = await make_plan(resources, price="10.00")
    active = await wallet_recharge(channel, user, plan_id)
    queued = await wallet_recharge(channel, user, plan_id)
    assert await plan_status(resources, queued) == "queued"
    await refund(stub, admin, queued.transaction.txn_id)
    assert await plan_status(resources, queued) == "expired"
    assert await plan_status(resources, active) == "active"
    (row,) = await rows(
        resources,
        "SELECT valid_from, valid_to FROM currentactiveplans WHERE id = :id",
        id=queued.active_plan.id,
    )
    assert row.valid_to == row.valid_from  # an empty period: it never covers the number


async def test_twenty_concurrent_refunds_never_exceed_the_transaction(
    channel: Any, stub: Stub, admin: Actor, resources: Any
) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "1000.00")
    bought = await wallet_recharge(channel, user, await make_plan(resources, price="100.00"))
    txn_id = bought.transaction.txn_id

    async def attempt(amount_minor: int) -> tuple[int, Any]:
        try:
            await refund(stub, admin, txn_id, amount_minor)
        except grpc.aio.AioRpcError as exc:
            return amount_minor, details_of(exc)
        return amount_minor, None

    outcomes = await asyncio.gather(*(attempt(700) for _ in range(20)))
    succeeded = [a for a, error in outcomes if error is None]
    refused = [error for _, error in outcomes if error is not None]
    assert len(succeeded) == 14  # 14 x Rs 7 fit in Rs 100; the 15th would not
    assert {(e.code, e.reason) for e in refused} == {
        (grpc.StatusCode.FAILED_PRECONDITION, "REFUND_EXCEEDS_REMAINING")
    }
    assert sum(r.amount for r in await refunds_of(resources, txn_id)) == Decimal("98.00")
    assert await balance(resources, user.user_id) == Decimal("998.00")
    await assert_ledger_balances(resources)


async def test_concurrent_refunds_of_random_amounts(
    channel: Any, stub: Stub, admin: Actor, resources: Any
) -> None:
    seed = int(os.environ.get("GENCHARGE_TEST_SEED", random.randrange(2**32)))
    print(f"seed={seed}")
    rng = random.Random(seed)
    user = await register_user(channel)
    await fund(resources, user.user_id, "1000.00")
    bought = await wallet_recharge(channel, user, await make_plan(resources, price="100.00"))
    txn_id = bought.transaction.txn_id
    amounts = [rng.randint(1, 2000) for _ in range(20)]

    async def attempt(amount_minor: int) -> tuple[int, Any]:
        try:
            await refund(stub, admin, txn_id, amount_minor)
        except grpc.aio.AioRpcError as exc:
            return amount_minor, details_of(exc)
        return amount_minor, None

    outcomes = await asyncio.gather(*(attempt(a) for a in amounts))
    made = sum(a for a, error in outcomes if error is None)
    assert made <= 10000, seed
    stored = await refunds_of(resources, txn_id)
    assert sum(int(r.amount * 100) for r in stored) == made, seed
    left = 10000 - made
    for amount, error in outcomes:
        if error is not None:  # refused only because it did not fit at its turn
            assert error.reason == "REFUND_EXCEEDS_REMAINING", (seed, error)
            assert amount > left, (seed, amount, left)
    await assert_ledger_balances(resources)


# --- payments through the gateway --------------------------------------------------------------


async def test_an_externally_paid_recharge_is_refunded_through_the_gateway(
    channel: Any, stub: Stub, admin: Actor, resources: Any, grpc_server: Any
) -> None:
    user = await register_user(channel)
    bought = await upi_recharge(channel, user, await make_plan(resources, price="10.00"))
    assert bought.transaction.category == tpb.TRANSACTION_CATEGORY_SERVICE
    before = await balance(resources, user.user_id)

    reply = await refund(stub, admin, bought.transaction.txn_id, 250)

    r = reply.refund_transaction
    assert r.category == tpb.TRANSACTION_CATEGORY_SERVICE
    assert r.status == tpb.TRANSACTION_STATUS_SUCCESS
    assert r.payment_method == common_pb2.PAYMENT_METHOD_UPI
    assert r.payment_transaction_id.startswith("sbxrfnd_")
    assert await balance(resources, user.user_id) == before  # the money went to UPI
    gateway = sandbox_of(grpc_server)
    assert gateway._refunded[bought.transaction.payment_transaction_id] == Decimal("2.50")
    assert await plan_status(resources, bought) == "active"
    await refund(stub, admin, bought.transaction.txn_id)
    assert gateway._refunded[bought.transaction.payment_transaction_id] == Decimal("10.00")
    assert await plan_status(resources, bought) == "expired"


async def test_a_top_up_refund_takes_the_money_out_of_the_wallet_first(
    channel: Any, stub: Stub, admin: Actor, resources: Any, grpc_server: Any
) -> None:
    user = await register_user(channel)
    top_up = (await upi_top_up(channel, user, 5000)).transaction
    await wallet_recharge(channel, user, await make_plan(resources, price="30.00"))
    assert await balance(resources, user.user_id) == Decimal("20.00")

    spent = await failure(refund(stub, admin, top_up.txn_id))
    assert spent.code == grpc.StatusCode.FAILED_PRECONDITION
    assert spent.reason == "INSUFFICIENT_FUNDS"
    assert await refunds_of(resources, top_up.txn_id) == []

    reply = await refund(stub, admin, top_up.txn_id, 2000)
    r = reply.refund_transaction
    assert (r.category, r.txn_type) == (
        tpb.TRANSACTION_CATEGORY_WALLET,
        tpb.TRANSACTION_TYPE_DEBIT,
    )
    assert r.status == tpb.TRANSACTION_STATUS_SUCCESS
    assert r.payment_transaction_id.startswith("sbxrfnd_")
    assert await balance(resources, user.user_id) == Decimal("0.00")
    assert sandbox_of(grpc_server)._refunded[top_up.payment_transaction_id] == Decimal("20.00")
    await assert_ledger_balances(resources)


class _Flaky:
    """The sandbox's refund, wrapped: the first call makes the refund and loses the
    answer (GatewayError, as a timeout after the gateway acted would)."""

    def __init__(self, gateway: SandboxGateway) -> None:
        self.real = gateway.refund
        self.calls = 0

    async def __call__(self, **kwargs: Any) -> RefundResult:
        self.calls += 1
        result = await self.real(**kwargs)
        if self.calls == 1:
            raise GatewayError("read timeout")
        return result


async def test_a_lost_gateway_answer_is_finished_by_the_retry_once(
    channel: Any,
    stub: Stub,
    admin: Actor,
    resources: Any,
    grpc_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gateway = sandbox_of(grpc_server)
    user = await register_user(channel)
    bought = await upi_recharge(channel, user, await make_plan(resources, price="10.00"))
    txn_id = bought.transaction.txn_id
    flaky = _Flaky(gateway)
    monkeypatch.setattr(gateway, "refund", flaky)
    key = rid()

    lost = await failure(refund(stub, admin, txn_id, request_id=key))
    assert lost.code == grpc.StatusCode.UNAVAILABLE and lost.reason == "GATEWAY_UNAVAILABLE"
    (pending,) = await refunds_of(resources, txn_id)
    assert pending.status == "pending"  # reserved: it counts against what is left
    # the expiry of unpaid payments leaves a refund waiting for the gateway alone
    async with resources.db.transaction() as conn:
        await expire_pending_payments(conn=conn, now=datetime.now(UTC) + timedelta(days=1))
    (pending,) = await refunds_of(resources, txn_id)
    assert pending.status == "pending"
    more = await failure(refund(stub, admin, txn_id, 1))
    assert more.reason == "REFUND_EXCEEDS_REMAINING"

    reply = await refund(stub, admin, txn_id, request_id=key)
    assert reply.refund_transaction.txn_id == pending.txn_id
    assert reply.refund_transaction.status == tpb.TRANSACTION_STATUS_SUCCESS
    (done,) = await refunds_of(resources, txn_id)
    assert done.status == "success" and done.payment_transaction_id.startswith("sbxrfnd_")
    assert gateway._refunded[bought.transaction.payment_transaction_id] == Decimal("10.00")
    assert flaky.calls == 2
    again = await refund(stub, admin, txn_id, request_id=key)
    assert again == reply and flaky.calls == 2
    assert await plan_status(resources, bought) == "expired"


async def _refuse(**kwargs: Any) -> RefundResult:
    raise ValueError("a refund cannot exceed what was captured")


async def test_a_refund_the_gateway_refuses_releases_what_it_reserved(
    channel: Any,
    stub: Stub,
    admin: Actor,
    resources: Any,
    grpc_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gateway = sandbox_of(grpc_server)
    user = await register_user(channel)
    bought = await upi_recharge(channel, user, await make_plan(resources, price="10.00"))
    top_up = (await upi_top_up(channel, user, 5000)).transaction
    real = gateway.refund
    monkeypatch.setattr(gateway, "refund", _refuse)
    key = rid()

    for txn_id in (bought.transaction.txn_id, top_up.txn_id):
        refused = await failure(refund(stub, admin, txn_id, request_id=f"{key}-{txn_id}"))
        assert refused.code == grpc.StatusCode.FAILED_PRECONDITION
        assert refused.reason == "REFUND_REFUSED"
        replayed = await failure(refund(stub, admin, txn_id, request_id=f"{key}-{txn_id}"))
        assert replayed.reason == "REFUND_REFUSED"
    (failed,) = await refunds_of(resources, bought.transaction.txn_id)
    assert failed.status == "failed"
    (taken,) = await refunds_of(resources, top_up.txn_id)
    (reversal,) = await refunds_of(resources, taken.txn_id)
    assert (taken.txn_type, reversal.txn_type, reversal.status) == ("debit", "credit", "success")
    assert await balance(resources, user.user_id) == Decimal("50.00")
    await assert_ledger_balances(resources)
    assert await plan_status(resources, bought) == "active"

    monkeypatch.setattr(gateway, "refund", real)
    for txn_id, amount in ((bought.transaction.txn_id, 1000), (top_up.txn_id, 5000)):
        reply = await refund(stub, admin, txn_id)  # all of it is refundable again
        assert reply.refund_transaction.amount.units_minor == amount
    assert await balance(resources, user.user_id) == Decimal("0.00")
    await assert_ledger_balances(resources)


# --- idempotency, errors, access, audit --------------------------------------------------------


async def test_a_replay_answers_the_same_and_a_reused_key_is_refused(
    channel: Any, stub: Stub, admin: Actor, resources: Any
) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "100.00")
    bought = await wallet_recharge(channel, user, await make_plan(resources, price="10.00"))
    txn_id = bought.transaction.txn_id
    key = rid()
    first = await refund(stub, admin, txn_id, 300, request_id=key)
    replays = await asyncio.gather(
        *(refund(stub, admin, txn_id, 300, request_id=key) for _ in range(3))
    )
    assert all(r == first for r in replays)
    assert len(await refunds_of(resources, txn_id)) == 1
    reused = await failure(refund(stub, admin, txn_id, 200, request_id=key))
    assert reused.code == grpc.StatusCode.ALREADY_EXISTS
    assert reused.reason == "IDEMPOTENCY_KEY_REUSED"
    assert await balance(resources, user.user_id) == Decimal("93.00")


async def test_bad_requests_and_what_cannot_be_refunded(
    channel: Any, stub: Stub, admin: Actor, resources: Any
) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "100.00")
    bought = await wallet_recharge(channel, user, await make_plan(resources, price="10.00"))
    txn_id = bought.transaction.txn_id

    bad = await failure(
        stub.RefundTransaction(
            pb.RefundTransactionRequest(request_id="short", txn_id=0, amount=inr(-5), reason="  "),
            metadata=admin.metadata,
        )
    )
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad.field_violations) == {"request_id", "txn_id", "amount", "reason"}
    euro = await failure(
        refund(stub, admin, txn_id, amount=common_pb2.Money(units_minor=5, currency_code="EUR"))
    )
    assert set(euro.field_violations) == {"amount.currency_code"}
    missing = await failure(refund(stub, admin, 2_000_000_000))
    assert missing.code == grpc.StatusCode.NOT_FOUND

    refunded = await refund(stub, admin, txn_id, 100)
    adjustment = await stub.AdjustWallet(
        pb.AdjustWalletRequest(
            request_id=rid(), user_id=user.user_id, amount=inr(500), reason="goodwill"
        ),
        metadata=admin.metadata,
    )
    # neither a refund nor an adjustment is a recharge or a top-up
    for other in (refunded.refund_transaction.txn_id, adjustment.txn_id):
        refused = await failure(refund(stub, admin, other))
        assert refused.code == grpc.StatusCode.FAILED_PRECONDITION
        assert refused.reason == "NOT_REFUNDABLE"
    assert len(await refunds_of(resources, txn_id)) == 1
    await assert_ledger_balances(resources)


async def test_only_admins_may_refund(channel: Any, stub: Stub, resources: Any) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "100.00")
    bought = await wallet_recharge(channel, user, await make_plan(resources, price="10.00"))
    support = await create_admin(channel, resources, role_name="Support")
    service = await create_service(channel, resources)
    for actor in (support, user, service):
        denied = await failure(refund(stub, actor, bought.transaction.txn_id))
        assert denied.code == grpc.StatusCode.PERMISSION_DENIED, actor.kind
    anonymous = await failure(
        stub.RefundTransaction(
            pb.RefundTransactionRequest(
                request_id=rid(), txn_id=bought.transaction.txn_id, reason="x"
            )
        )
    )
    assert anonymous.code == grpc.StatusCode.UNAUTHENTICATED
    assert await refunds_of(resources, bought.transaction.txn_id) == []


async def test_every_refund_is_audited_with_its_reason(
    channel: Any, stub: Stub, admin: Actor, resources: Any
) -> None:
    user = await register_user(channel)
    bought = await upi_recharge(channel, user, await make_plan(resources, price="10.00"))
    reply = await refund(stub, admin, bought.transaction.txn_id, reason="double charge")
    collection = resources.mongo_db["AuditLog"]
    query = {"rpc": "/gencharge.v1.AdminService/RefundTransaction", "outcome": "ok"}

    async def both() -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = await collection.find(query).to_list(None)
        return docs if len(docs) >= 2 else []

    docs = await eventually(both)
    assert len(docs) == 2, docs
    by_action = {d["action_type"]: d for d in docs}
    inserted = by_action["INSERT"]
    assert inserted["table_name"] == "Transactions"
    assert inserted["details"]["reason"] == "double charge"
    assert inserted["details"]["refund_of_txn_id"] == bought.transaction.txn_id
    assert inserted["details"]["txn_id"] == reply.refund_transaction.txn_id
    updated = by_action["UPDATE"]
    assert updated["details"]["gateway_refund_id"] == (
        reply.refund_transaction.payment_transaction_id
    )
    assert updated["details"]["ended_active_plan_id"] == bought.active_plan.id
