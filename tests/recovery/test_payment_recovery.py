"""No customer is charged and left uncredited: payments left between the gateway and the
ledger reach a final state by themselves (server/recovery, through the scheduler).

Through the real server and database: a database-side failure that fires once at the
recording step (a BEFORE INSERT trigger on ``transactions`` in the test's own database),
a gateway whose answer is lost, a gateway that forgot the charge or cannot be reached
while recovering, and a caller that goes away while its charge is in flight. Every test
ends with the customer credited (or the plan bought) exactly once, the retry converging
on that one outcome, and the ledger invariant. The recovery's clock is stepped past the
grace period instead of waited for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from gencharge.v1 import (
    common_pb2,
    recharge_service_pb2,
    recharge_service_pb2_grpc,
    wallet_service_pb2_grpc,
)
from gencharge.v1 import transaction_pb2 as tpb
from gencharge.v1 import wallet_service_pb2 as pb
from server.ops.scheduler import Scheduler, TickReport
from server.payments.gateway import ChargeResult, GatewayError
from server.payments.sandbox import SandboxGateway
from server.recovery.flows import BACKOFF, RecoveryCounts
from tests.helpers.auth import register_user
from tests.helpers.clock import HANG_SECONDS, SteppedUtcClock, eventually
from tests.helpers.money import assert_ledger_balances, balance, make_plan, sandbox_of
from tests.helpers.rpc import ErrorDetails, details_of

#: Seconds a test charge waits for the caller's deadline to pass (a bound on how long
#: the server may take to reach the gateway, not a speed requirement).
DEADLINE_SECONDS = 10.0


def rid() -> str:
    return str(uuid.uuid4())


def wallet(channel: grpc.aio.Channel) -> wallet_service_pb2_grpc.WalletServiceStub:
    return wallet_service_pb2_grpc.WalletServiceStub(channel)


def recharges(channel: grpc.aio.Channel) -> recharge_service_pb2_grpc.RechargeServiceStub:
    return recharge_service_pb2_grpc.RechargeServiceStub(channel)


def upi(vpa: str = "asha@okbank") -> common_pb2.PaymentDetails:
    return common_pb2.PaymentDetails(upi=common_pb2.UpiPayment(vpa=vpa))


def top_up_request(amount_minor: int) -> pb.TopUpRequest:
    return pb.TopUpRequest(
        request_id=rid(),
        amount=common_pb2.Money(units_minor=amount_minor, currency_code="INR"),
        payment_method=common_pb2.PAYMENT_METHOD_UPI,
        payment_details=upi(),
    )


def recharge_request(plan_id: int) -> recharge_service_pb2.RechargeRequest:
    return recharge_service_pb2.RechargeRequest(
        request_id=rid(),
        plan_id=plan_id,
        payment_method=common_pb2.PAYMENT_METHOD_UPI,
        payment_details=upi(),
    )


async def refused(call: Any, code: grpc.StatusCode, reason: str) -> ErrorDetails:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    details = details_of(caught.value)
    assert (details.code, details.reason) == (code, reason), details
    return details


async def scalar(resources: Any, sql: str, **params: Any) -> Any:
    async with resources.db.read_only() as conn:
        return (await conn.execute(text(sql), params)).scalar_one_or_none()


async def fail_next_recording(resources: Any) -> None:
    """The next row inserted into ``transactions`` fails, once (a database-side failure
    at the recording step). The guard is a sequence, not a flag row: a sequence is not
    rolled back with the failing transaction, so the failure really fires only once."""
    statements = [
        "CREATE SEQUENCE test_fail_once_seq",
        """CREATE FUNCTION test_fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
               IF nextval('test_fail_once_seq') = 1 THEN
                   RAISE EXCEPTION 'injected failure at the recording step';
               END IF;
               RETURN NEW;
           END $$""",
        """CREATE TRIGGER test_fail_once BEFORE INSERT ON transactions
           FOR EACH ROW EXECUTE FUNCTION test_fail_once()""",
    ]
    async with resources.db.transaction() as conn:
        for statement in statements:
            await conn.execute(text(statement))


def recovery(grpc_server: Any, gateway: Any = None) -> tuple[Scheduler, SteppedUtcClock]:
    """A scheduler over the test server's recharger (optionally another gateway: the
    gateway after a restart), on a clock the test steps past the grace period."""
    recharger = grpc_server.app.recharger
    if gateway is not None:
        recharger = dataclasses.replace(recharger, gateway=gateway)
    clock = SteppedUtcClock()
    return Scheduler(grpc_server.resources, recharger, clock=clock), clock


def grace(resources: Any) -> float:
    return float(resources.settings.payment_recovery_after_seconds)


def recovered(report: TickReport) -> RecoveryCounts:
    assert "payments" not in report.failed_jobs, report
    assert report.payments is not None and report.payments.ran
    return report.payments


async def attempt_state(resources: Any, request_id: str) -> str | None:
    state: str | None = await scalar(
        resources, "SELECT state FROM payment_attempts WHERE request_id = :r", r=request_id
    )
    return state


async def transactions_of(resources: Any, user_id: int) -> int:
    return int(
        await scalar(resources, "SELECT count(*) FROM transactions WHERE user_id = :u", u=user_id)
    )


# --- a failure at the recording step -----------------------------------------------------


async def test_a_top_up_whose_recording_failed_is_credited_once_by_recovery(
    channel: grpc.aio.Channel, resources: Any, grpc_server: Any
) -> None:
    user = await register_user(channel)
    request = top_up_request(43_210)
    await fail_next_recording(resources)
    await refused(
        wallet(channel).TopUp(request, metadata=user.metadata),
        grpc.StatusCode.UNAVAILABLE,
        "PAYMENT_NOT_RECORDED",
    )
    # The gateway captured the money; nothing is recorded yet, and a retry waits.
    reference = f"topup:user:{user.user_id}:{request.request_id}"
    charge = await sandbox_of(grpc_server).lookup(reference=reference)
    assert charge is not None and charge.status == "authorised"
    assert await transactions_of(resources, user.user_id) == 0
    await refused(
        wallet(channel).TopUp(request, metadata=user.metadata),
        grpc.StatusCode.FAILED_PRECONDITION,
        "IN_PROGRESS",
    )
    assert await attempt_state(resources, request.request_id) == "charging"

    scheduler, clock = recovery(grpc_server)
    assert recovered(await scheduler.run_once()) == RecoveryCounts(ran=True)  # within grace
    clock.advance(grace(resources) + 1)
    assert recovered(await scheduler.run_once()) == RecoveryCounts(ran=True, recorded=1)
    assert recovered(await scheduler.run_once()) == RecoveryCounts(ran=True)

    # The retry converges on the one outcome.
    replay = await wallet(channel).TopUp(request, metadata=user.metadata)
    assert replay.transaction.status == tpb.TRANSACTION_STATUS_SUCCESS
    assert replay.transaction.payment_transaction_id == charge.payment_id
    assert await wallet(channel).TopUp(request, metadata=user.metadata) == replay
    assert await balance(resources, user.user_id) == Decimal("432.10")
    assert await transactions_of(resources, user.user_id) == 1
    assert await attempt_state(resources, request.request_id) == "recorded"
    await assert_ledger_balances(resources)

    # The recovery's change is audited like the scheduler's others.
    async def audited() -> Any:
        return await resources.mongo_db["AuditLog"].find_one(
            {"rpc": "scheduler/payment_recovery", "request_id": request.request_id}
        )

    event = await eventually(audited, every=0.1)
    assert event is not None
    assert (event["table_name"], event["action_type"]) == ("Transactions", "INSERT")
    assert event["details"]["txn_id"] == replay.transaction.txn_id

    # Settled attempts go with the keys' lifetime (the key itself stays until it expires).
    clock.advance(25 * 3600)
    await scheduler.run_once()
    assert await attempt_state(resources, request.request_id) is None
    assert await wallet(channel).TopUp(request, metadata=user.metadata) == replay


async def test_an_external_recharge_whose_recording_failed_is_bought_once_by_recovery(
    channel: grpc.aio.Channel, resources: Any, grpc_server: Any
) -> None:
    user = await register_user(channel)
    plan_id = await make_plan(resources, price="79.00", validity=28)
    request = recharge_request(plan_id)
    await fail_next_recording(resources)
    await refused(
        recharges(channel).Recharge(request, metadata=user.metadata),
        grpc.StatusCode.UNAVAILABLE,
        "PAYMENT_NOT_RECORDED",
    )
    await refused(
        recharges(channel).Recharge(request, metadata=user.metadata),
        grpc.StatusCode.FAILED_PRECONDITION,
        "IN_PROGRESS",
    )
    scheduler, clock = recovery(grpc_server)
    clock.advance(grace(resources) + 1)
    assert recovered(await scheduler.run_once()) == RecoveryCounts(ran=True, recorded=1)

    replay = await recharges(channel).Recharge(request, metadata=user.metadata)
    assert replay.transaction.status == tpb.TRANSACTION_STATUS_SUCCESS
    assert replay.transaction.amount.units_minor == 7_900
    assert replay.active_plan.id and replay.active_plan.plan_id == plan_id
    assert await recharges(channel).Recharge(request, metadata=user.metadata) == replay
    assert await transactions_of(resources, user.user_id) == 1
    plans = await scalar(
        resources, "SELECT count(*) FROM currentactiveplans WHERE user_id = :u", u=user.user_id
    )
    assert plans == 1
    assert await balance(resources, user.user_id) == Decimal("0.00")  # paid by UPI
    await assert_ledger_balances(resources)


async def test_a_charge_the_gateway_forgot_is_released_and_the_retry_charges_afresh(
    channel: grpc.aio.Channel, resources: Any, grpc_server: Any
) -> None:
    """The recording failed and the gateway knows no charge under the reference (the
    sandbox after a restart): the key and the attempt are released, and the retry
    charges once."""
    user = await register_user(channel)
    request = top_up_request(5_000)
    await fail_next_recording(resources)
    await refused(
        wallet(channel).TopUp(request, metadata=user.metadata),
        grpc.StatusCode.UNAVAILABLE,
        "PAYMENT_NOT_RECORDED",
    )
    scheduler, clock = recovery(grpc_server, gateway=SandboxGateway())
    clock.advance(grace(resources) + 1)
    assert recovered(await scheduler.run_once()) == RecoveryCounts(ran=True, released=1)
    assert await attempt_state(resources, request.request_id) == "released"
    assert (
        await scalar(
            resources,
            "SELECT count(*) FROM idempotency_keys WHERE request_id = :r",
            r=request.request_id,
        )
        == 0
    )

    reply = await wallet(channel).TopUp(request, metadata=user.metadata)
    assert reply.transaction.status == tpb.TRANSACTION_STATUS_SUCCESS
    assert await attempt_state(resources, request.request_id) == "recorded"
    assert (
        await scalar(
            resources,
            "SELECT charges FROM payment_attempts WHERE request_id = :r",
            r=request.request_id,
        )
        == 2
    )
    assert await balance(resources, user.user_id) == Decimal("50.00")
    await assert_ledger_balances(resources)


class _Unreachable(SandboxGateway):
    """The gateway after a restart, and unreachable while it lasts."""

    def __init__(self, knows: SandboxGateway) -> None:
        super().__init__()
        self.knows = knows
        self.down = True

    async def lookup(self, *, reference: str) -> ChargeResult | None:
        if self.down:
            raise GatewayError("connection refused")
        return await self.knows.lookup(reference=reference)


async def test_an_unreachable_gateway_backs_the_recovery_off(
    channel: grpc.aio.Channel, resources: Any, grpc_server: Any
) -> None:
    user = await register_user(channel)
    request = top_up_request(7_700)
    await fail_next_recording(resources)
    await refused(
        wallet(channel).TopUp(request, metadata=user.metadata),
        grpc.StatusCode.UNAVAILABLE,
        "PAYMENT_NOT_RECORDED",
    )
    gateway = _Unreachable(knows=sandbox_of(grpc_server))
    scheduler, clock = recovery(grpc_server, gateway=gateway)
    clock.advance(grace(resources) + 1)
    assert recovered(await scheduler.run_once()) == RecoveryCounts(ran=True, deferred=1)
    assert await attempt_state(resources, request.request_id) == "charging"
    last_error = await scalar(
        resources,
        "SELECT last_error FROM payment_attempts WHERE request_id = :r",
        r=request.request_id,
    )
    assert last_error == "GatewayError"
    gateway.down = False
    assert recovered(await scheduler.run_once()) == RecoveryCounts(ran=True)  # backing off
    clock.advance(BACKOFF[0].total_seconds() + 1)
    assert recovered(await scheduler.run_once()) == RecoveryCounts(ran=True, recorded=1)
    reply = await wallet(channel).TopUp(request, metadata=user.metadata)
    assert reply.transaction.status == tpb.TRANSACTION_STATUS_SUCCESS
    assert await balance(resources, user.user_id) == Decimal("77.00")
    await assert_ledger_balances(resources)


# --- the gateway's answer lost, the caller gone ------------------------------------------


class _AnswerLost(SandboxGateway):
    """Charges, then (once) loses the answer: the outcome looks unknown to the caller."""

    def __init__(self) -> None:
        super().__init__()
        self.lose = 1

    async def charge(self, **kwargs: Any) -> ChargeResult:
        result = await super().charge(**kwargs)
        if self.lose:
            self.lose -= 1
            raise GatewayError("read timeout")
        return result


class _Held(SandboxGateway):
    """Holds every charge until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.go = asyncio.Event()

    async def charge(self, **kwargs: Any) -> ChargeResult:
        self.entered.set()
        await self.go.wait()
        return await super().charge(**kwargs)


@asynccontextmanager
async def serving(resources: Any, gateway: SandboxGateway) -> AsyncIterator[tuple[Any, Any]]:
    from server.rpc.app import start_server

    running = await start_server(resources, "127.0.0.1:0", gateway=gateway)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield running, channel
    finally:
        await running.stop(0)


async def test_a_lost_gateway_answer_is_credited_once_by_recovery_or_by_the_retry(
    resources: Any,
) -> None:
    gateway = _AnswerLost()
    async with serving(resources, gateway) as (running, channel):
        user = await register_user(channel)
        # 1. Nobody retries: the recovery finds the charge and credits it.
        request = top_up_request(10_000)
        await refused(
            wallet(channel).TopUp(request, metadata=user.metadata),
            grpc.StatusCode.UNAVAILABLE,
            "GATEWAY_UNAVAILABLE",
        )
        assert await attempt_state(resources, request.request_id) == "charging"
        scheduler, clock = recovery(running)
        clock.advance(grace(resources) + 1)
        assert recovered(await scheduler.run_once()) == RecoveryCounts(ran=True, recorded=1)
        replay = await wallet(channel).TopUp(request, metadata=user.metadata)
        assert replay.transaction.status == tpb.TRANSACTION_STATUS_SUCCESS
        # 2. The caller retries at once: the same reference captures once, the retry
        # records it, and the recovery finds nothing left to do.
        gateway.lose = 1
        again = top_up_request(2_000)
        await refused(
            wallet(channel).TopUp(again, metadata=user.metadata),
            grpc.StatusCode.UNAVAILABLE,
            "GATEWAY_UNAVAILABLE",
        )
        retried = await wallet(channel).TopUp(again, metadata=user.metadata)
        assert retried.transaction.status == tpb.TRANSACTION_STATUS_SUCCESS
        clock.advance(grace(resources) + 1)
        assert recovered(await scheduler.run_once()) == RecoveryCounts(ran=True)
        assert await balance(resources, user.user_id) == Decimal("120.00")
        assert await transactions_of(resources, user.user_id) == 2
    await assert_ledger_balances(resources)


async def test_a_caller_gone_during_the_charge_still_ends_recorded(resources: Any) -> None:
    """A passed deadline (TopUp) or a cancelled call (Recharge) while the gateway is
    charging: the charge is recorded all the same, and the retry gets that outcome."""
    gateway = _Held()
    async with serving(resources, gateway) as (_running, channel):
        user = await register_user(channel)
        plan_id = await make_plan(resources, price="15.00")

        # TopUp: the deadline passes while the gateway holds the charge.
        request = top_up_request(3_300)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await wallet(channel).TopUp(request, metadata=user.metadata, timeout=DEADLINE_SECONDS)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert gateway.entered.is_set()
        gateway.go.set()

        async def recorded(request_id: str) -> bool:
            return await attempt_state(resources, request_id) == "recorded"

        assert await eventually(lambda: recorded(request.request_id))
        reply = await wallet(channel).TopUp(request, metadata=user.metadata)
        assert reply.transaction.status == tpb.TRANSACTION_STATUS_SUCCESS

        # Recharge: the caller cancels while the gateway holds the charge.
        gateway.go.clear()
        gateway.entered.clear()
        buy = recharge_request(plan_id)
        call = recharges(channel).Recharge(buy, metadata=user.metadata)
        await asyncio.wait_for(gateway.entered.wait(), HANG_SECONDS)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        gateway.go.set()
        assert await eventually(lambda: recorded(buy.request_id))
        bought = await recharges(channel).Recharge(buy, metadata=user.metadata)
        assert bought.transaction.status == tpb.TRANSACTION_STATUS_SUCCESS
        assert bought.active_plan.plan_id == plan_id

        assert await balance(resources, user.user_id) == Decimal("33.00")
        assert await transactions_of(resources, user.user_id) == 2
    await assert_ledger_balances(resources)


async def test_a_bill_paid_by_upi_whose_recording_failed_is_paid_once(
    channel: grpc.aio.Channel, resources: Any, grpc_server: Any
) -> None:
    """PayBill pays through the recharge path: its charge is recovered as a recharge,
    and the retry of PayBill links the bill to it."""
    from tests.recharge.bills.test_bills import pay, reminder_for

    user, reminder_id = await reminder_for(channel, resources, grpc_server)
    before = await balance(resources, user.user_id)
    await fail_next_recording(resources)
    fields = {
        "request_id": rid(),
        "payment_method": common_pb2.PAYMENT_METHOD_UPI,
        "payment_details": upi(),
    }
    await refused(
        pay(channel, user, reminder_id, **fields),
        grpc.StatusCode.UNAVAILABLE,
        "PAYMENT_NOT_RECORDED",
    )
    await refused(
        pay(channel, user, reminder_id, **fields),
        grpc.StatusCode.FAILED_PRECONDITION,
        "IN_PROGRESS",
    )
    scheduler, clock = recovery(grpc_server)
    clock.advance(grace(resources) + 1)
    assert recovered(await scheduler.run_once()) == RecoveryCounts(ran=True, recorded=1)

    paid = await pay(channel, user, reminder_id, **fields)
    assert paid.transaction.status == tpb.TRANSACTION_STATUS_SUCCESS
    assert paid.bill_reminder.status == recharge_service_pb2.BILL_REMINDER_STATUS_PAID
    linked = await scalar(
        resources, "SELECT paid_txn_id FROM billreminders WHERE reminder_id = :r", r=reminder_id
    )
    assert linked == paid.transaction.txn_id
    assert await pay(channel, user, reminder_id, **fields) == paid
    bills = await scalar(
        resources,
        "SELECT count(*) FROM transactions WHERE user_id = :u AND category = 'service'"
        " AND payment_method = 'UPI'",
        u=user.user_id,
    )
    assert bills == 1
    assert await balance(resources, user.user_id) == before  # paid by UPI
    await assert_ledger_balances(resources)
