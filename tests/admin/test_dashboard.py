"""AdminService GetDashboardStats through the real server: the figures against the
ledger, the range boundaries, bad ranges, RBAC per role, and the query plans (EXPLAIN
on a database large enough for the planner to prefer the indexes)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import insert, text

from gencharge.v1 import admin_service_pb2 as pb
from gencharge.v1 import admin_service_pb2_grpc, recharge_service_pb2_grpc
from gencharge.v1 import recharge_service_pb2 as rpb
from server.admin.insight import queries
from server.core.schema import transactions
from tests.helpers.auth import Actor, create_admin, create_service, register_user
from tests.helpers.money import fund, make_plan
from tests.helpers.rpc import details_of

Stub = admin_service_pb2_grpc.AdminServiceStub


def ts(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


async def stats(channel: Any, who: Actor, start: datetime | None, end: datetime | None) -> Any:
    request = pb.GetDashboardStatsRequest()
    if start is not None:
        request.start_time.CopyFrom(ts(start))
    if end is not None:
        request.end_time.CopyFrom(ts(end))
    return await Stub(channel).GetDashboardStats(request, metadata=who.metadata)


async def recharge(channel: Any, user: Actor, plan_id: int) -> int:
    reply = await recharge_service_pb2_grpc.RechargeServiceStub(channel).Recharge(
        rpb.RechargeRequest(plan_id=plan_id, request_id=uuid.uuid4().hex),
        metadata=user.metadata,
    )
    return int(reply.transaction.txn_id)


async def created_at(resources: Any, table: str, key: str, ident: int) -> datetime:
    async with resources.db.read_only() as conn:
        value = (
            await conn.execute(
                text(f"SELECT created_at FROM {table} WHERE {key} = :i"), {"i": ident}
            )
        ).scalar_one()
    assert isinstance(value, datetime)
    return value


async def ledger_row(resources: Any, user_id: int, **values: Any) -> None:
    async with resources.db.transaction() as conn:
        await conn.execute(insert(transactions).values(user_id=user_id, **values))


async def test_figures_match_the_ledger(channel: Any, resources: Any) -> None:
    admin = await create_admin(channel, resources)
    start = datetime.now(UTC) - timedelta(seconds=1)
    alice, bob, carol = [await register_user(channel) for _ in range(3)]
    async with resources.db.transaction() as conn:
        await conn.execute(
            text("UPDATE users SET status = 'blocked' WHERE user_id = :u"), {"u": carol.user_id}
        )
    popular = await make_plan(resources, price="20.00", name="Popular")
    rare = await make_plan(resources, price="50.00", name="Rare")
    await fund(resources, alice.user_id, "200")  # top-up 1
    await fund(resources, bob.user_id, "100")  # top-up 2
    for user in (alice, bob, alice):
        await recharge(channel, user, popular)
    await recharge(channel, bob, rare)
    await ledger_row(
        resources,
        alice.user_id,
        category="wallet",
        txn_type="credit",
        amount=Decimal("5.00"),
        source="refund",
        status="success",
    )
    await ledger_row(
        resources,
        bob.user_id,
        category="service",
        txn_type="debit",
        amount=Decimal("20.00"),
        source="recharge",
        status="failed",
        plan_id=popular,
        payment_method="UPI",
    )
    reply = await stats(channel, admin, start, datetime.now(UTC) + timedelta(seconds=1))

    async with resources.db.read_only() as conn:
        every_user = (await conn.execute(text("SELECT count(*) FROM users"))).scalar_one()
        active_plans = (
            await conn.execute(
                text("SELECT count(*) FROM currentactiveplans WHERE status = 'active'")
            )
        ).scalar_one()
    assert reply.total_users == every_user
    assert reply.blocked_users == 1
    assert reply.active_users == every_user - 1
    assert reply.new_users == 3
    assert reply.recharge_count == 4
    assert reply.recharge_amount.units_minor == 110_00
    assert reply.topup_count == 2
    assert reply.topup_amount.units_minor == 300_00
    assert reply.refund_amount.units_minor == 5_00
    assert reply.failed_transaction_count == 1
    assert reply.active_plan_count == active_plans and active_plans >= 2
    assert [
        (p.plan_id, p.plan_name, p.recharge_count, p.recharge_amount.units_minor)
        for p in reply.top_plans
    ] == [(popular, "Popular", 3, 60_00), (rare, "Rare", 1, 50_00)]
    assert reply.start_time.ToDatetime(tzinfo=UTC) == start


async def test_a_row_at_start_counts_and_a_row_at_end_does_not(
    channel: Any, resources: Any
) -> None:
    support = await create_admin(channel, resources, "Support")
    plan = await make_plan(resources, price="10.00")
    user = await register_user(channel)
    await fund(resources, user.user_id, "100")
    txns = [await recharge(channel, user, plan) for _ in range(3)]
    first, second, third = [await created_at(resources, "transactions", "txn_id", t) for t in txns]
    assert first < second < third

    exact = await stats(channel, support, first, third)
    assert (exact.recharge_count, exact.recharge_amount.units_minor) == (2, 20_00)
    micro = timedelta(microseconds=1)
    assert (await stats(channel, support, first + micro, third)).recharge_count == 1
    assert (await stats(channel, support, first, third + micro)).recharge_count == 3
    assert (await stats(channel, support, second, third)).recharge_count == 1
    assert (await stats(channel, support, third, third + micro)).recharge_count == 1
    assert exact.top_plans[0].recharge_count == 2

    joined = await created_at(resources, "users", "user_id", user.user_id)
    assert (await stats(channel, support, joined, joined + micro)).new_users == 1
    assert (await stats(channel, support, joined - micro, joined)).new_users == 0


async def test_bad_ranges_are_invalid_argument(channel: Any, resources: Any) -> None:
    admin = await create_admin(channel, resources)
    now = datetime.now(UTC)
    for start, end, field in [
        (now, now, "start_time"),
        (now, now - timedelta(seconds=1), "start_time"),
        (now - timedelta(days=366, seconds=1), now, "end_time"),
        (now + timedelta(days=1), None, "start_time"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stats(channel, admin, start, end)
        details = details_of(info.value)
        assert details.code is grpc.StatusCode.INVALID_ARGUMENT
        assert details.reason == "INVALID_RANGE"
        assert field in details.field_violations
    # The longest range allowed, and the defaults.
    widest = await stats(channel, admin, now - timedelta(days=366), now)
    assert widest.end_time.ToDatetime(tzinfo=UTC) == now
    default = await stats(channel, admin, None, None)
    span = default.end_time.ToDatetime(tzinfo=UTC) - default.start_time.ToDatetime(tzinfo=UTC)
    assert span == timedelta(days=30)
    only_end = await stats(channel, admin, None, now)
    assert only_end.start_time.ToDatetime(tzinfo=UTC) == now - timedelta(days=30)
    # An end in the first days of year 1: the default start stops at the earliest time
    # (found by the fuzz sweep: 30 days before it overflowed into INTERNAL).
    year_one = datetime(1, 1, 2, tzinfo=UTC)
    early = await stats(channel, admin, None, year_one)
    assert early.start_time.ToDatetime(tzinfo=UTC) == datetime.min.replace(tzinfo=UTC)
    assert early.recharge_count == 0
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stats(channel, admin, None, datetime.min.replace(tzinfo=UTC))
    assert details_of(info.value).reason == "INVALID_RANGE"


async def test_rbac_per_role(channel: Any, resources: Any) -> None:
    now = datetime.now(UTC)
    for role in ("Admin", "Support"):
        who = await create_admin(channel, resources, role)
        assert (await stats(channel, who, now - timedelta(days=1), now)).total_users >= 0
    customer = await register_user(channel)
    service = await create_service(channel, resources, ["recharges.write", "recharges.read"])
    for who, code in [
        (customer, grpc.StatusCode.PERMISSION_DENIED),
        (service, grpc.StatusCode.PERMISSION_DENIED),
        (Actor(kind="anonymous", access_token=""), grpc.StatusCode.UNAUTHENTICATED),
    ]:
        metadata = who.metadata if who.access_token else ()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await Stub(channel).GetDashboardStats(pb.GetDashboardStatsRequest(), metadata=metadata)
        assert info.value.code() is code


# ------------------------------------------------------------------- query plans

#: Per statement: the index its plan must use on a large database and a narrow range.
EXPECTED_INDEXES = {
    "user_counts": "Seq Scan",  # a count of every customer reads them all
    "new_users": "idx_users_created_at",
    "transaction_figures": "idx_transactions_created_at",
    "active_plans": "idx_currentactiveplans_status",
    "top_plans": "idx_transactions_created_at",
}


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(_nodes(child))
    return found


def _summary(plan: dict[str, Any]) -> str:
    return " > ".join(
        f"{n['Node Type']}" + (f" using {n['Index Name']}" if "Index Name" in n else "")
        for n in _nodes(plan)
    )


async def test_every_dashboard_statement_uses_its_index(resources: Any) -> None:
    """About 20,000 customers, 100,000 ledger rows over a year and 20,000 plan periods,
    VACUUM ANALYZEd: each statement's plan for a one-day range reads its index (the
    plans are in docs/dashboard.md); the count of every customer is a sequential scan."""
    now = datetime.now(UTC)
    async with resources.db.transaction() as conn:
        plan_id = (
            await conn.execute(
                text(
                    "INSERT INTO plans (plan_name, validity, plan_type, group_id, price) "
                    "VALUES ('Bulk', 28, 'prepaid', 1, 10) RETURNING plan_id"
                )
            )
        ).scalar_one()
        await conn.execute(
            text(
                "INSERT INTO users (name, email, phone_number, user_type, status, created_at) "
                "SELECT 'Bulk ' || i, 'bulk' || i || '@example.com', (8000000000 + i)::text, "
                "'prepaid', "
                "CASE WHEN i % 50 = 0 THEN 'blocked' ELSE 'active' END::user_status_enum, "
                "now() - (i % 365) * interval '1 day' - (i % 1440) * interval '1 minute' "
                "FROM generate_series(1, 20000) AS i"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO transactions (user_id, category, txn_type, amount, source, status, "
                "plan_id, payment_method) "
                "SELECT u.user_id, 'service', 'debit', 10, 'recharge', "
                "CASE WHEN u.user_id % 20 = 0 THEN 'failed' ELSE 'success' END::txn_status_enum, "
                ":plan, 'UPI' FROM users u, generate_series(1, 5)"
            ),
            {"plan": plan_id},
        )
        # The ledger trigger stamps now(): spread the rows over the past year.
        await conn.execute(text("ALTER TABLE transactions DISABLE TRIGGER USER; "))
        await conn.execute(
            text(
                "UPDATE transactions SET created_at = "
                "now() - (txn_id % 365) * interval '1 day' - (txn_id % 1440) * interval '1 minute'"
            )
        )
        await conn.execute(text("ALTER TABLE transactions ENABLE TRIGGER USER"))
        await conn.execute(
            text(
                "INSERT INTO currentactiveplans (user_id, plan_id, phone_number, valid_from, "
                "valid_to, status) SELECT user_id, :plan, phone_number, "
                "now() - interval '400 days', "
                "now() - interval '372 days', 'expired' FROM users"
            ),
            {"plan": plan_id},
        )
    async with resources.engine.connect() as conn:
        raw = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await raw.execute(text("VACUUM ANALYZE users, transactions, currentactiveplans"))

    params = {"start": now - timedelta(days=1), "end": now, "now": now}
    plans = {}
    async with resources.db.read_only() as conn:
        for name in queries.DASHBOARD_STATEMENTS:
            result = await queries.explain(conn, name, params)
            document = result if isinstance(result, list) else json.loads(result)
            plans[name] = _summary(document[0]["Plan"])
    print()
    for name, summary in plans.items():
        print(f"{name}: {summary}")
    for name, index in EXPECTED_INDEXES.items():
        assert index in plans[name], f"{name}: {plans[name]}"
