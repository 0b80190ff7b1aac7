"""Postpaid bill reminders and PayBill through the real server."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import asyncpg
import grpc
import pytest

from gencharge.v1 import common_pb2
from gencharge.v1 import recharge_service_pb2 as pb
from gencharge.v1 import transaction_pb2 as tpb
from server.payments.gateway import ChargeResult
from server.payments.sandbox import SandboxGateway
from tests.helpers.auth import Actor, register_user
from tests.helpers.money import assert_ledger_balances, balance, fund
from tests.helpers.rpc import details_of
from tests.ops.test_scheduler import execute, postpaid_with_plan, rows
from tests.recharge.autopay.test_autopay import stub


def rid() -> str:
    return uuid.uuid4().hex


async def failure(call: Any) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return details_of(info.value)


async def reminder_for(channel: Any, resources: Any, server: Any, **kw: Any) -> tuple[Actor, int]:
    """A postpaid user with a sent reminder (wallet holds 1000 minus the first bill)."""
    user, _, _ = await postpaid_with_plan(channel, resources, server, due_in_days=2, **kw)
    await server.scheduler.run_once()
    listed = await stub(channel).ListBillReminders(
        pb.ListBillRemindersRequest(), metadata=user.metadata
    )
    (reminder,) = listed.bill_reminders
    return user, reminder.reminder_id


async def pay(channel: Any, user: Actor, reminder_id: int, **fields: Any) -> pb.PayBillResponse:
    fields.setdefault("request_id", rid())
    fields.setdefault("payment_method", common_pb2.PAYMENT_METHOD_WALLET)
    return await stub(channel).PayBill(
        pb.PayBillRequest(reminder_id=reminder_id, **fields), metadata=user.metadata
    )


async def test_list_bill_reminders(channel, resources, grpc_server) -> None:
    user, reminder_id = await reminder_for(channel, resources, grpc_server)
    listed = await stub(channel).ListBillReminders(
        pb.ListBillRemindersRequest(status=pb.BILL_REMINDER_STATUS_SENT), metadata=user.metadata
    )
    (reminder,) = listed.bill_reminders
    assert reminder.reminder_id == reminder_id and reminder.user_id == user.user_id
    assert reminder.amount.units_minor == 39900 and reminder.amount.currency_code == "INR"
    assert reminder.sent_at.seconds > 0 and reminder.due_date.seconds > reminder.sent_at.seconds
    paid = await stub(channel).ListBillReminders(
        pb.ListBillRemindersRequest(status=pb.BILL_REMINDER_STATUS_PAID), metadata=user.metadata
    )
    assert list(paid.bill_reminders) == []
    other = await register_user(channel)
    theirs = await stub(channel).ListBillReminders(
        pb.ListBillRemindersRequest(), metadata=other.metadata
    )
    assert list(theirs.bill_reminders) == []


async def test_pay_bill_from_wallet_once(channel, resources, grpc_server) -> None:
    user, reminder_id = await reminder_for(channel, resources, grpc_server)
    before = await balance(resources, user.user_id)
    key = rid()
    paid = await pay(channel, user, reminder_id, request_id=key)
    txn = paid.transaction
    assert txn.amount.units_minor == 39900 and txn.status == tpb.TRANSACTION_STATUS_SUCCESS
    assert txn.source == tpb.TRANSACTION_SOURCE_RECHARGE
    assert txn.category == tpb.TRANSACTION_CATEGORY_WALLET
    assert txn.to_phone_number == user.phone_number
    assert paid.bill_reminder.status == pb.BILL_REMINDER_STATUS_PAID
    assert not paid.HasField("pending_payment")
    assert await balance(resources, user.user_id) == before - Decimal("399.00")
    (row,) = await rows(
        resources, "SELECT * FROM billreminders WHERE reminder_id = :r", r=reminder_id
    )
    assert row.status == "paid" and row.paid_txn_id == txn.txn_id
    # The next period is queued behind the current plan.
    plans = await rows(
        resources,
        "SELECT status FROM currentactiveplans WHERE user_id = :u ORDER BY id",
        u=user.user_id,
    )
    assert [p.status for p in plans] == ["active", "queued"]

    replay = await pay(channel, user, reminder_id, request_id=key)
    assert replay.transaction.txn_id == txn.txn_id
    assert replay.bill_reminder.status == pb.BILL_REMINDER_STATUS_PAID
    assert await balance(resources, user.user_id) == before - Decimal("399.00")

    again = await failure(pay(channel, user, reminder_id))
    assert again.code == grpc.StatusCode.FAILED_PRECONDITION and again.reason == "ALREADY_PAID"
    mismatch = await failure(
        pay(
            channel,
            user,
            reminder_id,
            request_id=key,
            payment_method=common_pb2.PAYMENT_METHOD_UPI,
            payment_details=common_pb2.PaymentDetails(upi=common_pb2.UpiPayment(vpa="a@b")),
        )
    )
    assert mismatch.code == grpc.StatusCode.ALREADY_EXISTS
    assert await balance(resources, user.user_id) == before - Decimal("399.00")
    await assert_ledger_balances(resources)


async def test_concurrent_payments_of_one_bill_pay_once(channel, resources, grpc_server) -> None:
    user, reminder_id = await reminder_for(channel, resources, grpc_server)
    before = await balance(resources, user.user_id)
    results = await asyncio.gather(
        *(pay(channel, user, reminder_id) for _ in range(5)), return_exceptions=True
    )
    ok = [r for r in results if isinstance(r, pb.PayBillResponse)]
    refused = [details_of(r) for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(ok) == 1 and len(refused) == 4
    assert {d.reason for d in refused} == {"ALREADY_PAID"}
    assert await balance(resources, user.user_id) == before - Decimal("399.00")
    await assert_ledger_balances(resources)


async def test_insufficient_funds_leaves_the_bill_unpaid(channel, resources, grpc_server) -> None:
    user, reminder_id = await reminder_for(channel, resources, grpc_server, price="700.00")
    # 1000 - 700 = 300 left: the 700 bill cannot be paid from the wallet.
    short = await failure(pay(channel, user, reminder_id))
    assert short.code == grpc.StatusCode.FAILED_PRECONDITION
    assert short.reason == "INSUFFICIENT_FUNDS"
    assert await balance(resources, user.user_id) == Decimal("300.00")
    (row,) = await rows(
        resources, "SELECT * FROM billreminders WHERE reminder_id = :r", r=reminder_id
    )
    assert row.status == "sent" and row.paid_txn_id is None
    await fund(resources, user.user_id, "400")
    paid = await pay(channel, user, reminder_id)
    assert paid.bill_reminder.status == pb.BILL_REMINDER_STATUS_PAID


async def test_pending_external_payment_settles_through_the_scheduler(
    channel, resources, grpc_server
) -> None:
    user, reminder_id = await reminder_for(channel, resources, grpc_server)
    upi = common_pb2.PaymentDetails(upi=common_pb2.UpiPayment(vpa="pending@sandbox"))
    pending = await pay(
        channel,
        user,
        reminder_id,
        payment_method=common_pb2.PAYMENT_METHOD_UPI,
        payment_details=upi,
    )
    assert pending.transaction.status == tpb.TRANSACTION_STATUS_PENDING
    assert pending.HasField("pending_payment")
    assert pending.bill_reminder.status == pb.BILL_REMINDER_STATUS_SENT
    blocked = await failure(pay(channel, user, reminder_id))
    assert blocked.reason == "PAYMENT_PENDING"

    # The gateway confirms (the ledger row settles); the next tick marks the bill paid.
    await execute(
        resources,
        "UPDATE transactions SET status = 'success' WHERE txn_id = :t",
        t=pending.transaction.txn_id,
    )
    report = await grpc_server.scheduler.run_once()
    assert report.bills is not None and report.bills.paid == 1
    (row,) = await rows(
        resources, "SELECT * FROM billreminders WHERE reminder_id = :r", r=reminder_id
    )
    assert row.status == "paid" and row.paid_txn_id == pending.transaction.txn_id


async def test_failed_external_payment_makes_the_bill_payable_again(
    channel, resources, grpc_server
) -> None:
    user, reminder_id = await reminder_for(channel, resources, grpc_server)
    card = common_pb2.PaymentDetails(card=common_pb2.CardPayment(card_token="tok_pending"))
    pending = await pay(
        channel,
        user,
        reminder_id,
        payment_method=common_pb2.PAYMENT_METHOD_CARD,
        payment_details=card,
    )
    await execute(
        resources,
        "UPDATE transactions SET status = 'failed' WHERE txn_id = :t",
        t=pending.transaction.txn_id,
    )
    report = await grpc_server.scheduler.run_once()
    assert report.bills is not None and report.bills.released == 1
    paid = await pay(channel, user, reminder_id)
    assert paid.bill_reminder.status == pb.BILL_REMINDER_STATUS_PAID


async def test_pay_bill_ownership_and_validation(channel, resources, grpc_server) -> None:
    user, reminder_id = await reminder_for(channel, resources, grpc_server)
    other = await register_user(channel)
    await fund(resources, other.user_id, "1000")
    theirs = await failure(pay(channel, other, reminder_id))
    assert theirs.code == grpc.StatusCode.NOT_FOUND
    assert await balance(resources, other.user_id) == Decimal("1000.00")
    missing = await failure(pay(channel, user, 999_999))
    assert missing.code == grpc.StatusCode.NOT_FOUND
    no_method = await failure(
        pay(channel, user, reminder_id, payment_method=common_pb2.PAYMENT_METHOD_UNSPECIFIED)
    )
    assert no_method.code == grpc.StatusCode.INVALID_ARGUMENT
    no_details = await failure(
        pay(channel, user, reminder_id, payment_method=common_pb2.PAYMENT_METHOD_UPI)
    )
    assert no_details.code == grpc.StatusCode.INVALID_ARGUMENT
    bad_key = await failure(pay(channel, user, reminder_id, request_id="x"))
    assert "request_id" in bad_key.field_violations


# --- PayBill holds no transaction or lock across the gateway or another transaction -------

_BILL_LOCKS = """
    SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
    WHERE c.relname = 'billreminders' AND l.pid <> pg_backend_pid()
"""


async def _outside_view(database_url: str, reminder_id: int) -> tuple[int, bool]:
    """What another session sees: how many locks other sessions hold on billreminders
    (an open transaction that read or locked the reminder keeps one until it ends), and
    whether the reminder's row can be locked right now."""
    conn = await asyncpg.connect(database_url)
    try:
        held = int(await conn.fetchval(_BILL_LOCKS))
        try:
            async with conn.transaction():
                await conn.execute(
                    "SELECT 1 FROM billreminders WHERE reminder_id = $1 FOR UPDATE NOWAIT",
                    reminder_id,
                )
            row_free = True
        except asyncpg.LockNotAvailableError:
            row_free = False
        return held, row_free
    finally:
        await conn.close()


class _WatchingGateway(SandboxGateway):
    """The sandbox gateway that, while it is being charged, looks at the database from
    outside the service."""

    def __init__(self, database_url: str) -> None:
        super().__init__()
        self.database_url = database_url
        self.reminder_id = 0
        self.seen: list[tuple[int, bool]] = []

    async def charge(self, **kwargs: Any) -> ChargeResult:
        self.seen.append(await _outside_view(self.database_url, self.reminder_id))
        return await super().charge(**kwargs)


async def test_pay_bill_holds_no_lock_while_the_gateway_is_called(resources) -> None:
    from server.ops.scheduler import Scheduler
    from server.rpc.app import start_server

    gateway = _WatchingGateway(resources.settings.database_url)
    server = await start_server(resources, "127.0.0.1:0", gateway=gateway)
    server.scheduler = Scheduler(resources, server.app.recharger)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            user, reminder_id = await reminder_for(channel, resources, server)
            gateway.reminder_id = reminder_id
            for vpa in ("payer@okbank", "pending@sandbox"):
                if vpa == "pending@sandbox":  # a second bill, paid by a pending payment
                    user, reminder_id = await reminder_for(channel, resources, server)
                    gateway.reminder_id = reminder_id
                paid = await pay(
                    channel,
                    user,
                    reminder_id,
                    payment_method=common_pb2.PAYMENT_METHOD_UPI,
                    payment_details=common_pb2.PaymentDetails(upi=common_pb2.UpiPayment(vpa=vpa)),
                )
                assert paid.transaction.txn_id > 0
    finally:
        await server.stop(0)
    # Both charges happened with nothing of the bill held by the service.
    assert gateway.seen == [(0, True), (0, True)]


async def test_pay_bill_holds_no_lock_while_its_recharge_waits(
    channel, resources, grpc_server
) -> None:
    user, reminder_id = await reminder_for(channel, resources, grpc_server)
    url = resources.settings.database_url
    blocker = await asyncpg.connect(url)
    try:
        # Hold the number's queue lock, so the bill's recharge transaction waits on it.
        await blocker.execute("SELECT pg_advisory_lock(hashtextextended($1, 7))", user.phone_number)
        paying = asyncio.create_task(pay(channel, user, reminder_id))
        # A bound on a hang, not a speed requirement.
        deadline = asyncio.get_running_loop().time() + 60
        while not await blocker.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ):
            assert not paying.done(), paying
            assert asyncio.get_running_loop().time() < deadline, "the recharge never waited"
            await asyncio.sleep(0.02)
        # The recharge transaction is waiting: no other transaction of the call is open.
        assert await _outside_view(url, reminder_id) == (0, True)
        await blocker.execute(
            "SELECT pg_advisory_unlock(hashtextextended($1, 7))", user.phone_number
        )
        paid = await paying
    finally:
        await blocker.close()
    assert paid.bill_reminder.status == pb.BILL_REMINDER_STATUS_PAID


async def test_a_declined_payment_leaves_the_bill_payable(channel, resources, grpc_server) -> None:
    user, reminder_id = await reminder_for(channel, resources, grpc_server)
    before = await balance(resources, user.user_id)
    declined = await failure(
        pay(
            channel,
            user,
            reminder_id,
            payment_method=common_pb2.PAYMENT_METHOD_UPI,
            payment_details=common_pb2.PaymentDetails(
                upi=common_pb2.UpiPayment(vpa="decline@sandbox")
            ),
        )
    )
    assert declined.code == grpc.StatusCode.FAILED_PRECONDITION
    assert declined.reason == "PAYMENT_DECLINED"
    (row,) = await rows(
        resources, "SELECT * FROM billreminders WHERE reminder_id = :r", r=reminder_id
    )
    assert row.status == "sent" and row.paid_txn_id is None
    # Nothing was kept of the declined attempt: the bill's own key runs again.
    paid = await pay(channel, user, reminder_id)
    assert paid.bill_reminder.status == pb.BILL_REMINDER_STATUS_PAID
    assert await balance(resources, user.user_id) == before - Decimal("399.00")


async def test_a_bill_is_paid_at_its_own_amount(channel, resources, grpc_server) -> None:
    user, reminder_id = await reminder_for(channel, resources, grpc_server)
    (row,) = await rows(
        resources, "SELECT * FROM billreminders WHERE reminder_id = :r", r=reminder_id
    )
    await execute(resources, "UPDATE plans SET price = 450 WHERE plan_id = :p", p=row.plan_id)
    grpc_server.scheduler.recharger.catalogue.invalidate()
    changed = await failure(pay(channel, user, reminder_id))
    assert changed.code == grpc.StatusCode.FAILED_PRECONDITION
    assert changed.reason == "PRICE_CHANGED"
    (row,) = await rows(
        resources, "SELECT * FROM billreminders WHERE reminder_id = :r", r=reminder_id
    )
    assert row.status == "sent" and row.paid_txn_id is None
