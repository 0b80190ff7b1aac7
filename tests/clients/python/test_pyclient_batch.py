"""batch_recharge through the real server: good and bad items answered in order with
typed errors, bounded in-flight items, and a stream dropped mid-batch resumed with the
same request ids and no double debit."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

from gencharge_client import (
    AsyncClient,
    BatchProgress,
    InsufficientFunds,
    InvalidArgument,
    NotFound,
)
from gencharge_client.v1 import recharge_service_pb2 as recharge_pb

from tests.clients.h2proxy import H2Proxy
from tests.clients.python.support import debits, funded_user, partner
from tests.helpers.money import assert_ledger_balances, balance, make_plan


async def test_good_and_bad_items(client: AsyncClient, channel: Any, resources: Any) -> None:
    service = await partner(client, channel, resources)
    rich = (await funded_user(channel, resources, "100")).user_id
    poor = (await funded_user(channel, resources, "5")).user_id
    plan_id = await make_plan(resources, price="10.00")
    items = [
        recharge_pb.BatchRechargeRequest(user_id=rich, plan_id=plan_id),
        recharge_pb.BatchRechargeRequest(user_id=rich, plan_id=987654),  # no such plan
        recharge_pb.BatchRechargeRequest(user_id=poor, plan_id=plan_id),  # cannot pay
        recharge_pb.BatchRechargeRequest(user_id=rich, plan_id=plan_id, request_id="bad"),
        recharge_pb.BatchRechargeRequest(user_id=rich, plan_id=plan_id, phone_number="9999900077"),
    ]
    progress: list[BatchProgress] = []

    outcomes = [o async for o in service.batch_recharge(items, on_progress=progress.append)]

    assert [o.item.plan_id for o in outcomes] == [i.plan_id for i in items]
    assert [o.ok for o in outcomes] == [True, False, False, False, True]
    ids = [o.item.request_id for o in outcomes]
    assert ids[3] == "bad" and all(uuid.UUID(i) for i in ids[:3] + ids[4:])
    assert len(set(ids)) == len(ids)
    assert isinstance(outcomes[1].result, NotFound)
    assert isinstance(outcomes[2].result, InsufficientFunds)
    assert outcomes[2].result.request_id == ids[2]
    assert isinstance(outcomes[3].result, InvalidArgument)
    assert "request_id" in outcomes[3].result.violations_by_field()
    good = [o.result for o in outcomes if o.ok]
    assert all(isinstance(r, recharge_pb.Recharge) for r in good)
    assert progress[-1].completed == 5 and progress[-1].succeeded == 2
    assert progress[-1].failed == 3 and progress[-1].in_flight == 0
    assert await balance(resources, rich) == Decimal("80.00")
    assert await balance(resources, poor) == Decimal("5.00")
    assert len(await debits(resources, rich)) == 2
    await assert_ledger_balances(resources)


async def test_in_flight_items_stay_bounded(
    client: AsyncClient, channel: Any, resources: Any
) -> None:
    service = await partner(client, channel, resources)
    user_id = (await funded_user(channel, resources, "1000")).user_id
    plan_id = await make_plan(resources, price="1.00")
    pulled = 0

    async def items() -> AsyncIterator[recharge_pb.BatchRechargeRequest]:
        nonlocal pulled
        for _ in range(120):
            pulled += 1
            yield recharge_pb.BatchRechargeRequest(user_id=user_id, plan_id=plan_id)

    ahead: list[int] = []
    answered = 0
    async for outcome in service.batch_recharge(items(), max_in_flight=8):
        assert outcome.ok, outcome.result
        answered += 1
        ahead.append(pulled - answered)
    assert answered == 120
    assert max(ahead) <= 8
    assert await balance(resources, user_id) == Decimal("880.00")


async def test_a_stream_dropped_mid_batch_resumes_without_double_debits(
    proxied: AsyncClient, proxy: H2Proxy, channel: Any, resources: Any
) -> None:
    service = await partner(proxied, channel, resources)
    user_id = (await funded_user(channel, resources, "1000")).user_id
    plan_id = await make_plan(resources, price="10.00")
    items = [recharge_pb.BatchRechargeRequest(user_id=user_id, plan_id=plan_id) for _ in range(40)]
    progress: list[BatchProgress] = []
    # Cut the connection instead of passing on the server's 10th answer: the 10th item
    # (at least) is applied and its answer lost, so it must be sent again.
    proxy.arm_data(10)

    outcomes = [
        o
        async for o in service.batch_recharge(items, max_in_flight=16, on_progress=progress.append)
    ]

    assert proxy.dropped == 1
    assert progress[-1].reconnects == 1
    assert progress[-1].sent == 40 and progress[-1].completed == 40
    assert progress[-1].resent >= 1
    assert all(o.ok for o in outcomes), [o.result for o in outcomes if not o.ok]
    txn_ids = {o.result.transaction.txn_id for o in outcomes}  # type: ignore[union-attr]
    assert len(txn_ids) == 40  # each item one recharge, replays answered with the original
    assert len({o.item.request_id for o in outcomes}) == 40
    assert len(await debits(resources, user_id)) == 40
    assert await balance(resources, user_id) == Decimal("600.00")
    await assert_ledger_balances(resources)
