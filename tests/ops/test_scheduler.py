"""The scheduler's jobs through the real server and database, ticked with run_once():
autopay runs and failures, plan expiry and queued-plan activation, bill reminders,
idempotency-key purge, and safety when several ticks/replicas run at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from gencharge.v1 import common_pb2
from gencharge.v1 import recharge_service_pb2 as pb
from server.ops.scheduler import Scheduler, run_once
from server.recharge.autopay.domain import next_due
from tests.helpers.auth import register_user
from tests.helpers.clock import HANG_SECONDS, eventually
from tests.helpers.money import assert_ledger_balances, balance, fund, make_plan
from tests.recharge.autopay.test_autopay import create as create_autopay
from tests.recharge.autopay.test_autopay import in_days
from tests.recharge.test_recharge import recharge


async def rows(resources: Any, sql: str, **params: Any) -> list[Any]:
    async with resources.db.read_only() as conn:
        return list((await conn.execute(text(sql), params)).all())


async def execute(resources: Any, sql: str, **params: Any) -> None:
    async with resources.db.transaction() as conn:
        await conn.execute(text(sql), params)


async def make_due(resources: Any, autopay_id: int, minutes_ago: int = 1) -> datetime:
    due = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    await execute(
        resources,
        "UPDATE autopay SET next_due_date = :d WHERE autopay_id = :a",
        d=due,
        a=autopay_id,
    )
    return due


async def notifications(resources: Any, user_id: int, type_name: str) -> list[Any]:
    return await rows(
        resources,
        """
        SELECT n.* FROM notifications n JOIN notificationtypes t ON t.type_id = n.type_id
        WHERE n.recipient_id = :u AND t.type_name = :t ORDER BY n.notification_id
        """,
        u=user_id,
        t=type_name,
    )


async def autopay_debits(resources: Any, user_id: int) -> list[Any]:
    return await rows(
        resources,
        "SELECT * FROM transactions WHERE user_id = :u AND source = 'autopay'",
        u=user_id,
    )


# --- autopay ------------------------------------------------------------------------------


async def test_due_regular_autopay_runs_once_and_advances(channel, resources, grpc_server) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "500")
    plan_id = await make_plan(resources, price="199.00", validity=28)
    mandate = await create_autopay(channel, user, plan_id, tag=pb.AUTO_PAY_TAG_REGULAR)
    due = await make_due(resources, mandate.autopay_id)

    report = await grpc_server.scheduler.run_once()
    assert report.autopay is not None and report.autopay.succeeded == 1
    assert await balance(resources, user.user_id) == Decimal("301.00")
    (txn,) = await autopay_debits(resources, user.user_id)
    assert txn.amount == Decimal("199.00") and txn.status == "success"
    assert txn.category == "wallet" and txn.to_phone_number == user.phone_number
    (cap,) = await rows(
        resources, "SELECT * FROM currentactiveplans WHERE user_id = :u", u=user.user_id
    )
    assert cap.status == "active" and cap.plan_id == plan_id
    (row,) = await rows(
        resources, "SELECT * FROM autopay WHERE autopay_id = :a", a=mandate.autopay_id
    )
    assert row.status == "enabled" and row.last_error is None and row.last_run_at is not None
    assert row.next_due_date == next_due(due, 28, datetime.now(UTC))
    assert row.next_due_date > datetime.now(UTC) + timedelta(days=27)
    (note,) = await notifications(resources, user.user_id, "autopay_success")
    assert note.status == "delivered" and note.sender_type == "system"
    assert note.attachments[0]["txn_id"] == txn.txn_id

    # Nothing is due any more: another tick pays nothing.
    again = await grpc_server.scheduler.run_once()
    assert again.autopay is not None and again.autopay.due == 0
    assert len(await autopay_debits(resources, user.user_id)) == 1
    await assert_ledger_balances(resources)


async def test_onetime_autopay_disables_itself_and_queues(channel, resources, grpc_server) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "100")
    plan_id = await make_plan(resources, price="30.00", validity=28)
    await recharge(channel, user, plan_id)  # an active plan: the autopay one is queued
    mandate = await create_autopay(channel, user, plan_id, tag=pb.AUTO_PAY_TAG_ONETIME)
    await make_due(resources, mandate.autopay_id)

    await grpc_server.scheduler.run_once()
    assert await balance(resources, user.user_id) == Decimal("40.00")
    (row,) = await rows(
        resources, "SELECT * FROM autopay WHERE autopay_id = :a", a=mandate.autopay_id
    )
    assert row.status == "disabled"
    statuses = await rows(
        resources,
        "SELECT status FROM currentactiveplans WHERE user_id = :u ORDER BY id",
        u=user.user_id,
    )
    assert [s.status for s in statuses] == ["active", "queued"]
    assert len(await notifications(resources, user.user_id, "autopay_success")) == 1


async def test_insufficient_balance_notifies_and_never_goes_negative(
    channel, resources, grpc_server
) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "50")
    plan_id = await make_plan(resources, price="199.00")
    mandate = await create_autopay(channel, user, plan_id)
    due = await make_due(resources, mandate.autopay_id)

    report = await grpc_server.scheduler.run_once()
    assert report.autopay is not None and report.autopay.failed == 1
    assert await balance(resources, user.user_id) == Decimal("50.00")
    assert await autopay_debits(resources, user.user_id) == []
    (row,) = await rows(
        resources, "SELECT * FROM autopay WHERE autopay_id = :a", a=mandate.autopay_id
    )
    assert row.status == "enabled" and row.next_due_date == due
    assert row.last_error.startswith("INSUFFICIENT_FUNDS")
    (note,) = await notifications(resources, user.user_id, "autopay_failed")
    assert "insufficient" in note.description

    # Within the back-off nothing is retried (and no second notification is sent).
    await grpc_server.scheduler.run_once()
    assert len(await notifications(resources, user.user_id, "autopay_failed")) == 1

    # After the back-off and a top-up, the same occurrence is paid.
    await fund(resources, user.user_id, "200")
    await execute(
        resources,
        "UPDATE autopay SET last_run_at = now() - interval '2 hours' WHERE autopay_id = :a",
        a=mandate.autopay_id,
    )
    report = await grpc_server.scheduler.run_once()
    assert report.autopay is not None and report.autopay.succeeded == 1
    assert await balance(resources, user.user_id) == Decimal("51.00")
    (row,) = await rows(
        resources, "SELECT * FROM autopay WHERE autopay_id = :a", a=mandate.autopay_id
    )
    assert row.last_error is None and row.next_due_date > datetime.now(UTC)
    await assert_ledger_balances(resources)


async def test_withdrawn_plan_disables_the_mandate(channel, resources, grpc_server) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "500")
    plan_id = await make_plan(resources, price="10.00")
    mandate = await create_autopay(channel, user, plan_id)
    await make_due(resources, mandate.autopay_id)
    await execute(resources, "UPDATE plans SET status = 'inactive' WHERE plan_id = :p", p=plan_id)
    grpc_server.scheduler.recharger.catalogue.invalidate()

    await grpc_server.scheduler.run_once()
    (row,) = await rows(
        resources, "SELECT * FROM autopay WHERE autopay_id = :a", a=mandate.autopay_id
    )
    assert row.status == "disabled" and row.last_error.startswith("PLAN_INACTIVE")
    assert await balance(resources, user.user_id) == Decimal("500.00")
    (note,) = await notifications(resources, user.user_id, "autopay_failed")
    assert "turned off" in note.description


async def test_concurrent_ticks_and_replicas_pay_once(channel, resources, grpc_server) -> None:
    users = [await register_user(channel) for _ in range(6)]
    plan_id = await make_plan(resources, price="25.00")
    for user in users:
        await fund(resources, user.user_id, "100")
        mandate = await create_autopay(channel, user, plan_id)
        await make_due(resources, mandate.autopay_id)
    recharges = grpc_server.scheduler.recharger
    other_replica = Scheduler(resources, recharges)
    reports = await asyncio.gather(
        grpc_server.scheduler.run_once(),
        grpc_server.scheduler.run_once(),
        other_replica.run_once(),
        run_once(resources, recharges),
    )
    assert sum(r.autopay.succeeded for r in reports if r.autopay) == len(users)
    for user in users:
        assert len(await autopay_debits(resources, user.user_id)) == 1
        assert await balance(resources, user.user_id) == Decimal("75.00")
        assert len(await notifications(resources, user.user_id, "autopay_success")) == 1
    await assert_ledger_balances(resources)


async def test_a_retried_occurrence_replays_instead_of_paying_again(
    channel, resources, grpc_server
) -> None:
    """A crash after the recharge committed but before the mandate moved on: the next
    tick's recharge has the same request_id and replays."""
    user = await register_user(channel)
    await fund(resources, user.user_id, "100")
    plan_id = await make_plan(resources, price="10.00")
    mandate = await create_autopay(channel, user, plan_id)
    due = await make_due(resources, mandate.autopay_id)
    await grpc_server.scheduler.run_once()
    # Simulate the lost bookkeeping: the mandate is due again for the same occurrence.
    await execute(
        resources,
        "UPDATE autopay SET next_due_date = :d WHERE autopay_id = :a",
        d=due,
        a=mandate.autopay_id,
    )
    await grpc_server.scheduler.run_once()
    assert len(await autopay_debits(resources, user.user_id)) == 1
    assert await balance(resources, user.user_id) == Decimal("90.00")


def test_next_due_skips_missed_periods() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    assert next_due(now - timedelta(days=1), 28, now) == now + timedelta(days=27)
    assert next_due(now - timedelta(days=60), 28, now) == now + timedelta(days=24)


# --- plan expiry and queued plans ---------------------------------------------------------


async def test_expiry_activates_the_queued_plan(channel, resources, grpc_server) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "100")
    plan_id = await make_plan(resources, price="10.00", validity=28)
    first = await recharge(channel, user, plan_id)
    second = await recharge(channel, user, plan_id)
    assert second.active_plan.status == pb.ACTIVE_PLAN_STATUS_QUEUED
    # The first ends now, the second starts now (the expiry trigger only catches rows
    # written with valid_to already in the past).
    await execute(
        resources,
        "UPDATE currentactiveplans SET valid_to = now() WHERE id = :i",
        i=first.active_plan.id,
    )
    await execute(
        resources,
        "UPDATE currentactiveplans SET valid_from = now() - interval '1 minute' WHERE id = :i",
        i=second.active_plan.id,
    )
    report = await grpc_server.scheduler.run_once()
    assert report.plans is not None and report.plans.expired == 1
    assert report.plans.activated == 1
    statuses = dict(
        (r.id, r.status)
        for r in await rows(
            resources,
            "SELECT id, status FROM currentactiveplans WHERE user_id = :u",
            u=user.user_id,
        )
    )
    assert statuses == {first.active_plan.id: "expired", second.active_plan.id: "active"}
    # The number still has a plan: no expiry notification.
    assert await notifications(resources, user.user_id, "plan_expiry") == []


async def test_expired_plan_with_nothing_queued_notifies(channel, resources, grpc_server) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "100")
    plan_id = await make_plan(resources, price="10.00")
    only = await recharge(channel, user, plan_id)
    await execute(
        resources,
        "UPDATE currentactiveplans SET valid_to = now() WHERE id = :i",
        i=only.active_plan.id,
    )
    await grpc_server.scheduler.run_once()
    (status,) = await rows(
        resources, "SELECT status FROM currentactiveplans WHERE id = :i", i=only.active_plan.id
    )
    assert status.status == "expired"
    (note,) = await notifications(resources, user.user_id, "plan_expiry")
    assert user.phone_number in note.description
    await grpc_server.scheduler.run_once()
    assert len(await notifications(resources, user.user_id, "plan_expiry")) == 1


# --- bill reminders -----------------------------------------------------------------------


async def postpaid_with_plan(
    channel: Any, resources: Any, server: Any, *, due_in_days: float, price: str = "399.00"
) -> tuple[Any, int, int]:
    """A postpaid user with an active postpaid plan whose bill is due in ``due_in_days``."""
    user = await register_user(channel, user_type=common_pb2.USER_TYPE_POSTPAID)
    await fund(resources, user.user_id, "1000")
    plan_id = await make_plan(resources, price=price, validity=30, plan_type="postpaid")
    server.scheduler.recharger.catalogue.invalidate()  # the plan is new: no cache wait
    bought = await recharge(channel, user, plan_id)
    await execute(
        resources,
        "UPDATE currentactiveplans SET valid_to = now() + make_interval(secs => :s) WHERE id = :i",
        s=due_in_days * 86400,
        i=bought.active_plan.id,
    )
    return user, plan_id, bought.active_plan.id


async def test_bill_reminders_before_the_due_date(channel, resources, grpc_server) -> None:
    due_soon, plan_id, cap_id = await postpaid_with_plan(
        channel, resources, grpc_server, due_in_days=2
    )
    due_later, _, _ = await postpaid_with_plan(channel, resources, grpc_server, due_in_days=10)
    prepaid = await register_user(channel)
    await fund(resources, prepaid.user_id, "100")
    prepaid_plan = await make_plan(resources, price="10.00")
    grpc_server.scheduler.recharger.catalogue.invalidate()
    bought = await recharge(channel, prepaid, prepaid_plan)
    await execute(
        resources,
        "UPDATE currentactiveplans SET valid_to = now() + interval '1 day' WHERE id = :i",
        i=bought.active_plan.id,
    )

    report = await grpc_server.scheduler.run_once()
    assert report.bills is not None and report.bills.created == 1
    (reminder,) = await rows(resources, "SELECT * FROM billreminders")
    (cap,) = await rows(resources, "SELECT * FROM currentactiveplans WHERE id = :i", i=cap_id)
    assert reminder.user_id == due_soon.user_id and reminder.plan_id == plan_id
    assert reminder.due_date == cap.valid_to
    assert reminder.amount == Decimal("399.00")
    assert reminder.phone_number == due_soon.phone_number
    assert reminder.status == "sent" and reminder.sent_at is not None
    (note,) = await notifications(resources, due_soon.user_id, "bill_reminder")
    assert note.status == "delivered" and "399.00" in note.description
    assert await notifications(resources, due_later.user_id, "bill_reminder") == []
    assert await notifications(resources, prepaid.user_id, "bill_reminder") == []

    # One reminder per due date, however many ticks (or replicas) run.
    await asyncio.gather(
        grpc_server.scheduler.run_once(),
        Scheduler(resources, grpc_server.scheduler.recharger).run_once(),
    )
    assert len(await rows(resources, "SELECT * FROM billreminders")) == 1
    assert len(await notifications(resources, due_soon.user_id, "bill_reminder")) == 1


async def test_the_database_allows_one_reminder_per_bill(channel, resources, grpc_server) -> None:
    await postpaid_with_plan(channel, resources, grpc_server, due_in_days=2)
    await grpc_server.scheduler.run_once()
    (reminder,) = await rows(resources, "SELECT * FROM billreminders")
    copy = (
        "INSERT INTO billreminders (user_id, plan_id, due_date, amount, phone_number)"
        " VALUES (:u, :p, :d, :a, :n)"
    )
    values = {
        "u": reminder.user_id,
        "p": reminder.plan_id,
        "d": reminder.due_date,
        "a": reminder.amount,
    }
    with pytest.raises(IntegrityError, match="uq_billreminders_bill"):
        await execute(resources, copy, **values, n=reminder.phone_number)
    # Without a phone number, two reminders for one due date collide as well.
    await execute(resources, copy, **values, n=None)
    with pytest.raises(IntegrityError, match="uq_billreminders_bill"):
        await execute(resources, copy, **values, n=None)
    # Another due date is another bill.
    await execute(
        resources, copy, **{**values, "d": reminder.due_date + timedelta(days=30)}, n=None
    )


# --- idempotency keys ---------------------------------------------------------------------


async def test_expired_idempotency_keys_are_purged(channel, resources, grpc_server) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "100")
    plan_id = await make_plan(resources)
    old = await recharge(channel, user, plan_id)
    fresh = await recharge(channel, user, plan_id)
    await execute(
        resources,
        "UPDATE idempotency_keys SET expires_at = now() - interval '1 second'"
        " WHERE result->>'txn_id' = :t",
        t=str(old.transaction.txn_id),
    )
    report = await grpc_server.scheduler.run_once()
    assert report.purged_keys == 1
    left = await rows(resources, "SELECT result->>'txn_id' AS txn FROM idempotency_keys")
    assert [r.txn for r in left] == [str(fresh.transaction.txn_id)]


async def test_scheduler_ticks_in_the_background(channel, resources, grpc_server) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "100")
    plan_id = await make_plan(resources, price="10.00")
    mandate = await create_autopay(channel, user, plan_id, next_due_date=in_days(1))
    await make_due(resources, mandate.autopay_id)
    scheduler = Scheduler(resources, grpc_server.scheduler.recharger, interval=0.05)
    scheduler.start()
    try:
        # The first tick, however long it takes (the bound only catches a hang).
        await asyncio.wait_for(scheduler.wait_ticks(1), HANG_SECONDS)
        assert len(await autopay_debits(resources, user.user_id)) == 1
    finally:
        await scheduler.stop(grace=HANG_SECONDS)  # a tick under way finishes
    assert not scheduler.running
    assert scheduler.ticks >= 1
    assert len(await autopay_debits(resources, user.user_id)) == 1


async def pending_topup(channel: Any, user: Any) -> int:
    """A ₹50 UPI top-up the sandbox leaves pending; its txn_id."""
    import uuid

    from gencharge.v1 import wallet_service_pb2, wallet_service_pb2_grpc

    reply = await wallet_service_pb2_grpc.WalletServiceStub(channel).TopUp(
        wallet_service_pb2.TopUpRequest(
            request_id=uuid.uuid4().hex,
            amount=common_pb2.Money(units_minor=5000, currency_code="INR"),
            payment_method=common_pb2.PAYMENT_METHOD_UPI,
            payment_details=common_pb2.PaymentDetails(
                upi=common_pb2.UpiPayment(vpa="pending@sandbox")
            ),
        ),
        metadata=user.metadata,
    )
    return reply.transaction.txn_id


async def test_pending_payments_past_their_deadline_fail(channel, resources, grpc_server) -> None:
    user = await register_user(channel)
    txn_id = await pending_topup(channel, user)
    report = await grpc_server.scheduler.run_once()
    assert report.expired_payments == 0  # not yet past the deadline
    await execute(
        resources,
        "UPDATE transactions SET created_at = now() - interval '31 minutes' WHERE txn_id = :t",
        t=txn_id,
    )
    report = await grpc_server.scheduler.run_once()
    assert report.expired_payments == 1
    (row,) = await rows(resources, "SELECT status FROM transactions WHERE txn_id = :t", t=txn_id)
    assert row.status == "failed"
    assert await balance(resources, user.user_id) == Decimal("0.00")


# --- audit --------------------------------------------------------------------------------


async def scheduler_events(resources: Any, job: str, want: int = 1) -> list[dict[str, Any]]:
    from tests.audit.test_audit_e2e import _documents

    return await _documents(resources.mongo_db, {"rpc": f"scheduler/{job}"}, want=want)


async def test_scheduler_changes_are_audited(channel, resources, grpc_server) -> None:
    quiet = await grpc_server.scheduler.run_once()
    assert not quiet.busy
    # Autopay: the debit is one event in the recharge's own transaction.
    user = await register_user(channel)
    await fund(resources, user.user_id, "100")
    plan_id = await make_plan(resources, price="10.00", validity=28)
    mandate = await create_autopay(channel, user, plan_id, tag=pb.AUTO_PAY_TAG_REGULAR)
    await make_due(resources, mandate.autopay_id)
    # A plan that has just ended: the plan-expiry job expires it.
    ended = await recharge(channel, user, plan_id, phone_number="9000000001")
    await execute(
        resources,
        "UPDATE currentactiveplans SET valid_to = now() WHERE id = :i",
        i=ended.active_plan.id,
    )
    # An external payment past its deadline.
    pending_id = await pending_topup(channel, user)
    await execute(
        resources,
        "UPDATE transactions SET created_at = now() - interval '31 minutes' WHERE txn_id = :t",
        t=pending_id,
    )
    # A postpaid bill due soon: the reminder job creates its reminder.
    await postpaid_with_plan(channel, resources, grpc_server, due_in_days=1)

    report = await grpc_server.scheduler.run_once()
    assert report.autopay is not None and report.autopay.succeeded == 1
    assert report.plans is not None and report.plans.expired == 1
    assert report.expired_payments == 1
    assert report.bills is not None and report.bills.created == 1

    (debit,) = await autopay_debits(resources, user.user_id)
    (autopay,) = await scheduler_events(resources, "autopay")
    assert autopay["user_id"] == "system:scheduler" and autopay["outcome"] == "ok"
    assert autopay["table_name"] == "Transactions" and autopay["action_type"] == "INSERT"
    assert autopay["details"]["txn_id"] == debit.txn_id
    assert autopay["request_id"].startswith("autopay-")
    (expiry,) = await scheduler_events(resources, "plan_expiry")
    assert expiry["table_name"] == "CurrentActivePlans" and expiry["action_type"] == "UPDATE"
    assert expiry["details"]["expired"] == {"count": 1, "ids": [ended.active_plan.id]}
    (payments,) = await scheduler_events(resources, "expire_payments")
    assert payments["details"]["ids"] == [pending_id]
    assert payments["details"]["status"] == "failed"
    (bills,) = await scheduler_events(resources, "bill_reminders")
    (reminder,) = await rows(resources, "SELECT reminder_id FROM billreminders")
    assert bills["action_type"] == "INSERT"
    assert bills["details"]["created"] == {"count": 1, "ids": [reminder.reminder_id]}

    # A tick that changes nothing records nothing.
    await grpc_server.scheduler.run_once()

    async def outbox_empty() -> bool:  # the relay has shipped whatever the tick wrote
        return not await rows(resources, "SELECT 1 FROM audit_outbox")

    assert await eventually(outbox_empty, every=0.1)
    shipped = await resources.mongo_db["AuditLog"].count_documents(
        {"rpc": {"$regex": "^scheduler/"}}
    )
    assert shipped == 4
