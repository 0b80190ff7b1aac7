"""BatchRechargeChunks through the real server: the items, answers, order and audit of
BatchRecharge with many items per message; a bad message ends the stream after the
items before it are answered, and none of its own items is applied."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import grpc
import pytest
from google.rpc import code_pb2

from gencharge.v1 import recharge_service_pb2 as pb
from gencharge.v1 import recharge_service_pb2_grpc
from server.auth.scopes import RECHARGES_WRITE
from server.recharge.batch.servicer import MAX_CHUNK
from tests.helpers.auth import Actor, create_service, register_user
from tests.helpers.money import assert_ledger_balances, balance, fund, make_plan
from tests.recharge.batch.test_batch import audit_documents, error_info, item, scalar

RPC = "/gencharge.v1.RechargeService/BatchRechargeChunks"


def chunk(*items: pb.BatchRechargeRequest) -> pb.BatchRechargeChunksRequest:
    return pb.BatchRechargeChunksRequest(items=items)


async def chunks(
    channel: grpc.aio.Channel, actor: Actor, messages: Sequence[pb.BatchRechargeChunksRequest]
) -> list[pb.BatchRechargeChunksResponse]:
    stub = recharge_service_pb2_grpc.RechargeServiceStub(channel)
    call = stub.BatchRechargeChunks(iter(messages), metadata=actor.metadata)
    return [response async for response in call]


def flat(messages: Sequence[pb.BatchRechargeChunksResponse]) -> list[pb.BatchRechargeResponse]:
    return [result for message in messages for result in message.results]


async def test_items_across_messages_answer_in_order_and_apply_once(channel, resources) -> None:
    service = await create_service(channel, resources, [RECHARGES_WRITE])
    rich = await register_user(channel)
    poor = await register_user(channel)
    await fund(resources, rich.user_id, "100")
    await fund(resources, poor.user_id, "5")
    plan_id = await make_plan(resources, price="10.00")
    first = item(rich.user_id, plan_id)
    items = [
        first,  # 0 ok
        item(poor.user_id, plan_id),  # 1 insufficient funds
        item(rich.user_id, plan_id, request_id="bad"),  # 2 bad request_id
        item(rich.user_id, 987654),  # 3 unknown plan
        item(rich.user_id, plan_id, phone_number="9999900077"),  # 4 ok, a friend's number
        first,  # 5 the same item again: its original answer
    ]
    results = flat(await chunks(channel, service, [chunk(*items[:2]), chunk(*items[2:])]))

    assert [r.index for r in results] == list(range(len(items)))
    assert [r.request_id for r in results] == [i.request_id for i in items]
    kinds = [r.WhichOneof("result") for r in results]
    assert kinds == ["recharge", "error", "error", "error", "recharge", "recharge"]
    assert error_info(results[1].error)[0] == "INSUFFICIENT_FUNDS"
    assert results[2].error.code == code_pb2.INVALID_ARGUMENT
    assert "request_id" in error_info(results[2].error)[1]
    assert results[3].error.code == code_pb2.NOT_FOUND
    assert results[5].recharge.transaction.txn_id == results[0].recharge.transaction.txn_id
    assert results[4].recharge.transaction.to_phone_number == "9999900077"
    # Two recharges applied, once each.
    assert await balance(resources, rich.user_id) == Decimal("80.00")
    assert await balance(resources, poor.user_id) == Decimal("5.00")
    await assert_ledger_balances(resources)

    # Audit as BatchRecharge: one event per item (the replay is answered from the key
    # and writes none), request ids <call request id>/<index>, no stream event.
    events = await audit_documents(resources, want=5, rpc=RPC)
    assert len(events) == 5
    inserts = {e["request_id"].rsplit("/", 1)[1] for e in events if e["action_type"] == "INSERT"}
    failures = {e["request_id"].rsplit("/", 1)[1] for e in events if e["outcome"] == "failed"}
    assert (inserts, failures) == ({"0", "4"}, {"1", "2", "3"})


async def test_answers_of_a_group_share_a_message(channel, resources) -> None:
    service = await create_service(channel, resources, [RECHARGES_WRITE])
    plan_id = await make_plan(resources, price="10.00")
    users = [await register_user(channel) for _ in range(8)]
    for user in users:
        await fund(resources, user.user_id, "80")  # 8 recharges each
    items = [item(users[i % 8].user_id, plan_id) for i in range(64)]
    messages = await chunks(channel, service, [chunk(*items)])

    results = flat(messages)
    assert [r.index for r in results] == list(range(64))
    assert all(r.WhichOneof("result") == "recharge" for r in results)
    # Answers come in order, several per message (those of one written group).
    assert len(messages) < len(items)
    for user in users:
        assert await balance(resources, user.user_id) == Decimal("0.00")
    # Each customer's ledger reads as a running balance in txn_id order.
    for user in users:
        mine = sorted(
            (
                r.recharge.transaction
                for r in results
                if r.recharge.transaction.user_id == user.user_id
            ),
            key=lambda t: t.txn_id,
        )
        assert [t.balance_after.units_minor for t in mine] == [8000 - 1000 * n for n in range(1, 9)]
    await assert_ledger_balances(resources)


@pytest.mark.parametrize("size", [0, MAX_CHUNK + 1])
async def test_a_bad_message_ends_the_stream_after_the_items_before_it(
    channel, resources, size: int
) -> None:
    service = await create_service(channel, resources, [RECHARGES_WRITE])
    user = await register_user(channel)
    await fund(resources, user.user_id, "100")
    plan_id = await make_plan(resources, price="1.00")
    before = [item(user.user_id, plan_id), item(user.user_id, plan_id)]
    bad = [item(user.user_id, plan_id) for _ in range(size)]
    stub = recharge_service_pb2_grpc.RechargeServiceStub(channel)
    call = stub.BatchRechargeChunks(
        iter([chunk(*before), chunk(*bad), chunk(item(user.user_id, plan_id))]),
        metadata=service.metadata,
    )
    answered: list[pb.BatchRechargeResponse] = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for message in call:
            answered.extend(message.results)

    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "items" in (info.value.details() or "")
    assert [r.request_id for r in answered] == [i.request_id for i in before]
    assert all(r.WhichOneof("result") == "recharge" for r in answered)
    # Only the items before the bad message moved money.
    assert await balance(resources, user.user_id) == Decimal("98.00")
    recharged = await scalar(
        resources,
        "SELECT count(*) FROM transactions WHERE txn_type = 'debit' AND user_id = :u",
        u=user.user_id,
    )
    assert recharged == 2
    await assert_ledger_balances(resources)


async def test_users_are_denied(channel, resources) -> None:
    user = await register_user(channel)
    plan_id = await make_plan(resources)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await chunks(channel, user, [chunk(item(user.user_id, plan_id))])
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_empty_stream(channel, resources) -> None:
    service = await create_service(channel, resources, [RECHARGES_WRITE])
    assert await chunks(channel, service, []) == []
