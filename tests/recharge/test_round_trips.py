"""What a wallet recharge sends to PostgreSQL (issue #12): one prepared statement, the
``gencharge_wallet_recharge`` function, in autocommit; a second only when the price
rested on a wrong assumption about the payer; BatchRecharge items in groups, in stream
order per wallet, and a group that fails as a whole retried item by item so that only
the bad item fails.

Every statement the server's pooled asyncpg connections run is recorded with asyncpg's
query logger (the real server, the real database; nothing is replaced)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import grpc
from google.rpc import code_pb2
from sqlalchemy import event, text

from gencharge.v1 import auth_service_pb2 as auth_pb
from gencharge.v1 import common_pb2, recharge_service_pb2_grpc
from gencharge.v1 import recharge_service_pb2 as pb
from server.audit.scope import job_scope
from server.auth.principal import Principal
from server.auth.scopes import RECHARGES_WRITE
from server.recharge import queries, wallet
from server.recharge.domain import Order
from server.recharge.group import GroupCommitter
from tests.helpers.auth import Actor, auth_stub, create_service, register_user
from tests.helpers.clock import HANG_SECONDS
from tests.helpers.money import assert_ledger_balances, balance, fund, make_plan
from tests.helpers.rpc import details_of


def rid() -> str:
    return uuid.uuid4().hex


@contextmanager
def statements(resources: Any) -> Iterator[list[str]]:
    """The SQL the server's connections run inside the block (health pings left out)."""
    seen: list[str] = []

    def logged(record: Any) -> None:
        if record.query.strip() != "SELECT 1":
            seen.append(record.query)

    pool = resources.db.engine.sync_engine.pool

    def on_checkout(dbapi_connection: Any, *_: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(logged)

    event.listen(pool, "checkout", on_checkout)
    try:
        yield seen
    finally:
        event.remove(pool, "checkout", on_checkout)


async def recharge(channel: grpc.aio.Channel, actor: Actor, plan_id: int) -> Any:
    stub = recharge_service_pb2_grpc.RechargeServiceStub(channel)
    return await stub.Recharge(
        pb.RechargeRequest(plan_id=plan_id, request_id=rid()), metadata=actor.metadata
    )


async def test_a_wallet_recharge_is_one_statement(channel, resources, grpc_server, server_clock):
    await grpc_server.relay.stop()  # its polling would show up among the statements
    user = await register_user(channel)
    await fund(resources, user.user_id, "100")
    plan_id = await make_plan(resources, price="10.00")
    await recharge(channel, user, plan_id)  # warms the caches (session, catalogue)

    with statements(resources) as seen:
        done = await recharge(channel, user, plan_id)

    assert seen == [queries.WALLET_RECHARGE], [q[:60] for q in seen]
    assert await balance(resources, user.user_id) == Decimal("80.00")
    # The key, the plan period and the audit event were written by that one statement.
    async with resources.db.read_only() as conn:
        key = (
            await conn.execute(
                text("SELECT result FROM idempotency_keys WHERE result->>'txn_id' = :t"),
                {"t": str(done.transaction.txn_id)},
            )
        ).scalar_one()
        events = (
            await conn.execute(
                text("SELECT count(*) FROM audit_outbox WHERE event->'details'->>'txn_id' = :t"),
                {"t": str(done.transaction.txn_id)},
            )
        ).scalar_one()
    assert key == {"txn_id": done.transaction.txn_id, "active_plan_id": done.active_plan.id}
    assert events == 1
    await assert_ledger_balances(resources)


async def test_a_price_for_the_wrong_user_type_is_priced_again(
    channel, resources, grpc_server, server_clock
):
    """The server assumes a prepaid payer; for a postpaid one the function answers
    "reprice" without writing, and the second call goes through."""
    await grpc_server.relay.stop()
    postpaid = await register_user(channel, user_type=common_pb2.USER_TYPE_POSTPAID)
    prepaid = await register_user(channel)
    for actor in (postpaid, prepaid):
        await fund(resources, actor.user_id, "100")
    plan_id = await make_plan(resources, price="10.00", criteria={"user_types": ["postpaid"]})
    await recharge(channel, postpaid, plan_id)  # warms the caches (session, catalogue)

    with statements(resources) as seen:
        done = await recharge(channel, postpaid, plan_id)
    assert seen == [queries.WALLET_RECHARGE, queries.WALLET_RECHARGE], [q[:60] for q in seen]
    assert done.transaction.amount.units_minor == 1000
    assert await balance(resources, postpaid.user_id) == Decimal("80.00")

    # The prepaid payer is refused for the plan's rule, after one statement that wrote
    # nothing (the payer checks come first).
    with statements(resources) as seen:
        try:
            await recharge(channel, prepaid, plan_id)
        except grpc.aio.AioRpcError as exc:
            refused = exc
    assert refused.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert details_of(refused).reason == "USER_TYPE_NOT_ELIGIBLE"
    # (the failed call's SECURITY audit event is written in a transaction of its own)
    assert [q for q in seen if "gencharge_" in q] == [queries.WALLET_RECHARGE], [
        q[:60] for q in seen
    ]
    assert await balance(resources, prepaid.user_id) == Decimal("100.00")
    await assert_ledger_balances(resources)


async def test_batch_items_of_a_wallet_apply_in_stream_order(channel, resources) -> None:
    service = await create_service(channel, resources, [RECHARGES_WRITE])
    payers = [await register_user(channel) for _ in range(3)]
    for payer in payers:
        await fund(resources, payer.user_id, "10000")
    plan_id = await make_plan(resources, price="10.00")
    cheap = await make_plan(resources, price="3.00")
    # 150 items over 3 wallets, two prices: a wallet's ledger shows them in stream order.
    items = [
        pb.BatchRechargeRequest(
            request_id=rid(),
            user_id=payers[i % 3].user_id,
            plan_id=plan_id if i % 2 else cheap,
        )
        for i in range(150)
    ]
    stub = recharge_service_pb2_grpc.RechargeServiceStub(channel)
    results = [r async for r in stub.BatchRecharge(iter(items), metadata=service.metadata)]
    assert [r.WhichOneof("result") for r in results] == ["recharge"] * 150
    for payer in payers:
        mine = [
            r.recharge.transaction
            for r in results
            if r.recharge.transaction.user_id == payer.user_id
        ]
        ids = [t.txn_id for t in mine]
        assert ids == sorted(ids)  # stream order is ledger order
        async with resources.db.read_only() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT txn_type, amount, balance_after FROM transactions"
                        " WHERE user_id = :u ORDER BY txn_id"
                    ),
                    {"u": payer.user_id},
                )
            ).all()
        running = Decimal("0.00")
        for row in rows:  # balance_after is a running balance in txn_id order
            running += row.amount if row.txn_type == "credit" else -row.amount
            assert row.balance_after == running
    await assert_ledger_balances(resources)


async def referral_pair(channel: grpc.aio.Channel, resources: Any) -> tuple[Actor, Actor]:
    """A referred user, funded, whose first recharge pays a reward into a referrer's
    wallet that cannot hold it (NUMERIC(10,2) would overflow): an error no check of the
    function foresees, so the whole statement fails."""
    referrer = await register_user(channel)
    me = await auth_stub(channel).GetMe(auth_pb.GetMeRequest(), metadata=referrer.metadata)
    referred = await register_user(channel, referral_code=me.user.referral_code)
    await fund(resources, referrer.user_id, "99999990.00")
    await fund(resources, referred.user_id, "100")
    return referrer, referred


async def test_a_failing_group_is_retried_item_by_item(channel, resources, grpc_server) -> None:
    """Four items written as one group: the group statement fails for the one item
    whose referral reward overflows; nothing of it is kept, each item is then written
    alone, and only that item fails."""
    _, referred = await referral_pair(channel, resources)
    good = await register_user(channel)
    await fund(resources, good.user_id, "100")
    plan_id = await make_plan(resources, price="10.00")
    catalogue = grpc_server.app.recharger.catalogue
    who = Principal("service", "test-service")
    committer = GroupCommitter(resources.db, ordered=True, slots=asyncio.Semaphore(2))
    payers = [good.user_id, referred.user_id, good.user_id, good.user_id]

    arguments = []
    for index, user_id in enumerate(payers):
        with job_scope("test-batch"):
            item = wallet.prepare(
                who,
                Order(rid(), "", plan_id, None, "Wallet", {}, user_id),
                f"hash-{index}",
                source="recharge",
                scope=None,
            )
            await wallet.price(catalogue, item)
            arguments.append(wallet.call_args(item, Decimal("50.00")))

    with statements(resources) as seen:
        # Handed in together, before the committer's writer runs: one group.
        outcomes = await asyncio.gather(
            *(committer.submit(a, i) for i, a in enumerate(arguments)), return_exceptions=True
        )
    writes = [s for s in seen if "gencharge_wallet" in s]
    assert writes == [queries.WALLET_RECHARGES] + [queries.WALLET_RECHARGE] * 4
    assert [o["outcome"] for i, o in enumerate(outcomes) if i != 1] == ["ok"] * 3
    assert isinstance(outcomes[1], Exception)
    assert getattr(outcomes[1].orig, "sqlstate", None) == "22003"  # numeric overflow
    assert await balance(resources, good.user_id) == Decimal("70.00")
    assert await balance(resources, referred.user_id) == Decimal("100.00")
    await assert_ledger_balances(resources)


async def test_a_bad_item_in_a_stream_fails_alone(channel, resources) -> None:
    service = await create_service(channel, resources, [RECHARGES_WRITE])
    referrer, referred = await referral_pair(channel, resources)
    good = await register_user(channel)
    await fund(resources, good.user_id, "100")
    plan_id = await make_plan(resources, price="10.00")
    users = [good.user_id, referred.user_id, good.user_id, good.user_id]
    items = [pb.BatchRechargeRequest(request_id=rid(), user_id=u, plan_id=plan_id) for u in users]
    stub = recharge_service_pb2_grpc.RechargeServiceStub(channel)
    results = [r async for r in stub.BatchRecharge(iter(items), metadata=service.metadata)]
    assert [r.WhichOneof("result") for r in results] == [
        "recharge",
        "error",
        "recharge",
        "recharge",
    ]
    assert results[1].error.code == code_pb2.INTERNAL
    assert await balance(resources, good.user_id) == Decimal("70.00")
    assert await balance(resources, referred.user_id) == Decimal("100.00")
    assert await balance(resources, referrer.user_id) == Decimal("99999990.00")
    await assert_ledger_balances(resources)


async def test_concurrent_calls_of_different_callers_share_a_group(
    channel, resources, grpc_server
) -> None:
    """The process-wide committer of unary calls: recharges of different callers handed
    in together are one group statement, each key scoped to its own caller (the same
    request_id from two callers is two recharges)."""
    payers = [await register_user(channel) for _ in range(3)]
    for payer in payers:
        await fund(resources, payer.user_id, "100")
    plan_id = await make_plan(resources, price="10.00")
    catalogue = grpc_server.app.recharger.catalogue
    committer = GroupCommitter(resources.db, ordered=False, writers=1)
    shared_request_id = rid()
    arguments = []
    for payer in payers:
        with job_scope("test-unary"):
            item = wallet.prepare(
                Principal("user", str(payer.user_id)),
                Order(shared_request_id, "", plan_id, None, "Wallet", {}, 0),
                "same-hash",
                source="recharge",
                scope=None,
            )
            await wallet.price(catalogue, item)
            arguments.append(wallet.call_args(item, Decimal("50.00")))

    with statements(resources) as seen:
        rows = await asyncio.gather(*(committer.submit(a) for a in arguments))
    assert [s for s in seen if "gencharge_wallet" in s] == [queries.WALLET_RECHARGES]
    assert [r["outcome"] for r in rows] == ["ok"] * 3
    async with resources.db.read_only() as conn:
        callers = (
            await conn.execute(
                text("SELECT caller FROM idempotency_keys WHERE request_id = :r ORDER BY caller"),
                {"r": shared_request_id},
            )
        ).scalars()
        assert list(callers) == sorted(f"user:{p.user_id}" for p in payers)
    for payer in payers:
        assert await balance(resources, payer.user_id) == Decimal("90.00")
    # The same group again: every item is a replay, nothing more is written.
    again = await asyncio.gather(*(committer.submit(a) for a in arguments))
    assert [r["outcome"] for r in again] == ["replay"] * 3
    for payer in payers:
        assert await balance(resources, payer.user_id) == Decimal("90.00")
    await assert_ledger_balances(resources)


async def test_a_recharge_handed_in_right_after_a_result_is_written(
    channel, resources, grpc_server
) -> None:
    """The caller woken by a group's last result hands in its next recharge before the
    finished writer's task is done: it must still get a writer (a stream's next item,
    a client's next call). Each wait is bounded only to fail instead of hanging."""
    payer = await register_user(channel)
    await fund(resources, payer.user_id, "100")
    plan_id = await make_plan(resources, price="10.00")
    catalogue = grpc_server.app.recharger.catalogue
    who = Principal("service", "test-service")
    arguments = []
    for index in range(6):
        with job_scope("test-sequential"):
            item = wallet.prepare(
                who,
                Order(rid(), "", plan_id, None, "Wallet", {}, payer.user_id),
                f"hash-{index}",
                source="recharge",
                scope=None,
            )
            await wallet.price(catalogue, item)
            arguments.append(wallet.call_args(item, Decimal("50.00")))
    ordered = GroupCommitter(resources.db, ordered=True, slots=asyncio.Semaphore(1))
    unordered = GroupCommitter(resources.db, ordered=False, writers=1)
    for index, args in enumerate(arguments):
        # Nothing in between: the next one is handed in as soon as the result is in.
        committer = ordered if index < 3 else unordered
        async with asyncio.timeout(HANG_SECONDS):  # in this task: no turn of the loop
            row = await committer.submit(args, index)
        assert row["outcome"] == "ok"
    assert await balance(resources, payer.user_id) == Decimal("40.00")
    await assert_ledger_balances(resources)
