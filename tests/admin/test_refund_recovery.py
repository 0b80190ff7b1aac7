"""The refund-recovery job (server/admin/money/flows.py ``recover_refunds``, ticked by the
scheduler): a gateway refund whose answer was never recorded is finished without an
admin's retry.

Through the real server and database with the sandbox gateway: the gateway loses its
answer (or is never reached), the job (on a clock the test steps past the grace period)
repeats the refund under the same reference and records it once; a refund inside the
grace period is left alone; a gateway that still does not answer backs the refund off;
a refusal found by the job releases the reservation; a later retry of the RPC with the
same request_id answers what the job recorded; the job's change is audited as the
scheduler's; one replica runs it at a time.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import grpc
import pytest

from gencharge.v1 import transaction_pb2 as tpb
from server.admin.money.flows import REFUND_BACKOFF, RefundRecoveryCounts
from server.core.jobs import LOCK_REFUND_RECOVERY, held_job_lock
from server.ops.scheduler import Scheduler, TickReport
from server.payments.gateway import GatewayError, GatewayRefused, RefundResult
from server.payments.sandbox import SandboxGateway
from tests.admin.test_refunds import (
    Stub,
    failure,
    plan_status,
    refund,
    refunds_of,
    rid,
    upi_recharge,
    upi_top_up,
    wallet_recharge,
)
from tests.helpers.auth import Actor, create_admin, register_user
from tests.helpers.clock import SteppedUtcClock, eventually
from tests.helpers.money import assert_ledger_balances, balance, fund, make_plan, sandbox_of


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> Stub:
    return Stub(channel)


@pytest.fixture
async def admin(channel: grpc.aio.Channel, resources: Any) -> Actor:
    return await create_admin(channel, resources)


class _Gateway:
    """The sandbox's refund, wrapped: ``plan`` says what each call does in turn
    (``lose``: refund, then lose the answer; ``down``: no answer, nothing refunded;
    ``refuse``: the gateway refuses; ``ok``: the sandbox's answer), ``ok`` after it."""

    def __init__(self, gateway: SandboxGateway, *plan: str) -> None:
        self.real = gateway.refund
        self.plan = list(plan)
        self.calls = 0

    async def __call__(self, **kwargs: Any) -> RefundResult:
        self.calls += 1
        step = self.plan.pop(0) if self.plan else "ok"
        if step == "down":
            raise GatewayError("connection refused")
        if step == "refuse":
            raise GatewayRefused("Refund is not supported by the bank")
        result = await self.real(**kwargs)
        if step == "lose":
            raise GatewayError("read timeout")
        return result


def job(grpc_server: Any) -> tuple[Scheduler, SteppedUtcClock]:
    """A scheduler over the test server (its gateway), on a clock the test steps."""
    clock = SteppedUtcClock()
    return Scheduler(grpc_server.resources, grpc_server.app.recharger, clock=clock), clock


def refunds_done(report: TickReport) -> RefundRecoveryCounts:
    assert "refunds" not in report.failed_jobs, report
    assert report.refunds is not None
    return report.refunds


def grace(resources: Any) -> float:
    return float(resources.settings.payment_recovery_after_seconds)


async def test_a_lost_answer_is_finished_by_the_job_exactly_once(
    channel: Any,
    stub: Stub,
    admin: Actor,
    resources: Any,
    grpc_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox = sandbox_of(grpc_server)
    assert grpc_server.app.recharger.gateway is sandbox
    user = await register_user(channel)
    bought = await upi_recharge(channel, user, await make_plan(resources, price="10.00"))
    txn_id = bought.transaction.txn_id
    gateway = _Gateway(sandbox, "lose")
    monkeypatch.setattr(sandbox, "refund", gateway)
    key = rid()
    lost = await failure(refund(stub, admin, txn_id, request_id=key))
    assert (lost.code, lost.reason) == (grpc.StatusCode.UNAVAILABLE, "GATEWAY_UNAVAILABLE")
    (pending,) = await refunds_of(resources, txn_id)
    assert pending.status == "pending"

    scheduler, clock = job(grpc_server)
    # Inside the grace period the refund may still be a live call: left alone.
    assert refunds_done(await scheduler.run_once()) == RefundRecoveryCounts(ran=True)
    assert gateway.calls == 1
    clock.advance(grace(resources) + 1)
    assert refunds_done(await scheduler.run_once()) == RefundRecoveryCounts(ran=True, finished=1)
    assert refunds_done(await scheduler.run_once()) == RefundRecoveryCounts(ran=True)
    assert gateway.calls == 2  # asked once more, under the same reference

    (done,) = await refunds_of(resources, txn_id)
    assert done.status == "success" and done.payment_transaction_id.startswith("sbxrfnd_")
    # The sandbox refunded once: the second call answered with the first refund.
    assert sandbox._refunded[bought.transaction.payment_transaction_id] == Decimal("10.00")
    assert len(sandbox._refunds) == 1
    assert await plan_status(resources, bought) == "expired"  # as step 3 does

    # The admin's retry with the same request_id answers the finished refund.
    reply = await refund(stub, admin, txn_id, request_id=key)
    assert reply.refund_transaction.txn_id == done.txn_id
    assert reply.refund_transaction.status == tpb.TRANSACTION_STATUS_SUCCESS
    assert reply.refund_transaction.payment_transaction_id == done.payment_transaction_id
    assert reply.total_refunded.units_minor == 1000
    assert gateway.calls == 2
    await assert_ledger_balances(resources)

    # Audited as the scheduler's change, with the gateway's refund id.
    async def audited() -> Any:
        return await resources.mongo_db["AuditLog"].find_one(
            {"rpc": "scheduler/refund_recovery", "request_id": f"refund:txn:{done.txn_id}"}
        )

    event = await eventually(audited, every=0.1)
    assert event is not None, "no audit event of the refund recovery"
    assert event["user_id"] == "system:scheduler"  # the AuditLog names the actor user_id
    assert (event["table_name"], event["action_type"]) == ("Transactions", "UPDATE")
    assert event["details"]["gateway_refund_id"] == done.payment_transaction_id
    assert event["details"]["ended_active_plan_id"] == bought.active_plan.id


async def test_a_top_up_refund_never_sent_to_the_gateway_is_made_once(
    channel: Any,
    stub: Stub,
    admin: Actor,
    resources: Any,
    grpc_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The process stopped between step 1 and the gateway (here: a gateway that was never
    reached): the job makes the refund; the wallet was debited once, in step 1."""
    sandbox = sandbox_of(grpc_server)
    user = await register_user(channel)
    top_up = (await upi_top_up(channel, user, 5000)).transaction
    gateway = _Gateway(sandbox, "down")
    monkeypatch.setattr(sandbox, "refund", gateway)
    key = rid()
    lost = await failure(refund(stub, admin, top_up.txn_id, 2000, request_id=key))
    assert lost.reason == "GATEWAY_UNAVAILABLE"
    assert top_up.payment_transaction_id not in sandbox._refunded
    assert await balance(resources, user.user_id) == Decimal("30.00")

    scheduler, clock = job(grpc_server)
    clock.advance(grace(resources) + 1)
    assert refunds_done(await scheduler.run_once()) == RefundRecoveryCounts(ran=True, finished=1)
    assert refunds_done(await scheduler.run_once()) == RefundRecoveryCounts(ran=True)
    (taken,) = await refunds_of(resources, top_up.txn_id)
    assert (taken.status, taken.txn_type) == ("success", "debit")
    assert taken.payment_transaction_id.startswith("sbxrfnd_")
    assert await refunds_of(resources, taken.txn_id) == []  # no reversal
    assert sandbox._refunded[top_up.payment_transaction_id] == Decimal("20.00")
    assert await balance(resources, user.user_id) == Decimal("30.00")

    reply = await refund(stub, admin, top_up.txn_id, 2000, request_id=key)
    assert reply.refund_transaction.payment_transaction_id == taken.payment_transaction_id
    assert gateway.calls == 2
    await assert_ledger_balances(resources)


async def test_a_gateway_that_still_does_not_answer_backs_off(
    channel: Any,
    stub: Stub,
    admin: Actor,
    resources: Any,
    grpc_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox = sandbox_of(grpc_server)
    user = await register_user(channel)
    bought = await upi_recharge(channel, user, await make_plan(resources, price="10.00"))
    txn_id = bought.transaction.txn_id
    gateway = _Gateway(sandbox, "down", "down", "down", "down")
    monkeypatch.setattr(sandbox, "refund", gateway)
    key = rid()
    await failure(refund(stub, admin, txn_id, 400, request_id=key))  # call 1

    scheduler, clock = job(grpc_server)
    clock.advance(grace(resources) + 1)
    deferred = RefundRecoveryCounts(ran=True, deferred=1)
    assert refunds_done(await scheduler.run_once()) == deferred  # call 2
    assert refunds_done(await scheduler.run_once()) == RefundRecoveryCounts(ran=True)
    assert gateway.calls == 2  # backed off: not asked again at once
    clock.advance(REFUND_BACKOFF[0].total_seconds() + 1)
    assert refunds_done(await scheduler.run_once()) == deferred  # call 3
    clock.advance(REFUND_BACKOFF[0].total_seconds() + 1)  # the second pause is longer
    assert refunds_done(await scheduler.run_once()) == RefundRecoveryCounts(ran=True)
    assert gateway.calls == 3
    (waiting,) = await refunds_of(resources, txn_id)
    assert waiting.status == "pending"  # still reserved, still counted as refunded
    more = await failure(refund(stub, admin, txn_id, 601))
    assert more.reason == "REFUND_EXCEEDS_REMAINING"

    # An admin's retry is never backed off (call 4: still down), and the gateway back.
    again = await failure(refund(stub, admin, txn_id, 400, request_id=key))
    assert again.reason == "GATEWAY_UNAVAILABLE"
    clock.advance(REFUND_BACKOFF[1].total_seconds())
    finished = RefundRecoveryCounts(ran=True, finished=1)
    assert refunds_done(await scheduler.run_once()) == finished  # call 5
    assert gateway.calls == 5
    assert scheduler.refund_backoff.waiting == {}
    reply = await refund(stub, admin, txn_id, 400, request_id=key)
    assert reply.refund_transaction.status == tpb.TRANSACTION_STATUS_SUCCESS
    assert sandbox._refunded[bought.transaction.payment_transaction_id] == Decimal("4.00")
    assert await plan_status(resources, bought) == "active"  # a partial refund keeps it


async def test_a_refusal_found_by_the_job_releases_the_reservation(
    channel: Any,
    stub: Stub,
    admin: Actor,
    resources: Any,
    grpc_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox = sandbox_of(grpc_server)
    user = await register_user(channel)
    bought = await upi_recharge(channel, user, await make_plan(resources, price="10.00"))
    top_up = (await upi_top_up(channel, user, 5000)).transaction
    gateway = _Gateway(sandbox, "down", "down", "refuse", "refuse")
    monkeypatch.setattr(sandbox, "refund", gateway)
    keys = {bought.transaction.txn_id: rid(), top_up.txn_id: rid()}
    for txn_id, key in keys.items():
        await failure(refund(stub, admin, txn_id, request_id=key))
    assert await balance(resources, user.user_id) == Decimal("0.00")  # the top-up taken

    scheduler, clock = job(grpc_server)
    clock.advance(grace(resources) + 1)
    assert refunds_done(await scheduler.run_once()) == RefundRecoveryCounts(ran=True, refused=2)
    (failed,) = await refunds_of(resources, bought.transaction.txn_id)
    assert failed.status == "failed"
    (taken,) = await refunds_of(resources, top_up.txn_id)
    (reversal,) = await refunds_of(resources, taken.txn_id)
    assert (reversal.txn_type, reversal.status) == ("credit", "success")
    assert await balance(resources, user.user_id) == Decimal("50.00")
    # A reversal is never taken for a refund waiting for the gateway.
    assert refunds_done(await scheduler.run_once()) == RefundRecoveryCounts(ran=True)
    for txn_id, key in keys.items():
        refused = await failure(refund(stub, admin, txn_id, request_id=key))
        assert (refused.code, refused.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "REFUND_REFUSED",
        )
    assert gateway.calls == 4
    await assert_ledger_balances(resources)


async def test_wallet_refunds_are_not_the_jobs_and_one_replica_runs_it(
    channel: Any,
    stub: Stub,
    admin: Actor,
    resources: Any,
    grpc_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox = sandbox_of(grpc_server)
    user = await register_user(channel)
    bought = await upi_recharge(channel, user, await make_plan(resources, price="10.00"))
    gateway = _Gateway(sandbox, "down")
    monkeypatch.setattr(sandbox, "refund", gateway)
    await failure(refund(stub, admin, bought.transaction.txn_id))
    await fund(resources, user.user_id, "100.00")
    paid = await wallet_recharge(channel, user, await make_plan(resources, price="10.00"))
    await refund(stub, admin, paid.transaction.txn_id)  # complete at once, no gateway

    scheduler, clock = job(grpc_server)
    clock.advance(grace(resources) + 1)
    async with held_job_lock(resources.db.engine, LOCK_REFUND_RECOVERY) as mine:
        assert mine
        # Another replica runs the job: this one skips it this tick.
        assert refunds_done(await scheduler.run_once()) == RefundRecoveryCounts(ran=False)
    assert gateway.calls == 1
    assert refunds_done(await scheduler.run_once()) == RefundRecoveryCounts(ran=True, finished=1)
    assert gateway.calls == 2
    await assert_ledger_balances(resources)
