"""BatchRecharge through the real server: per-item results in order, one bad item never
fails the others, replays return the original result, every item is audited."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from sqlalchemy import text

from gencharge.v1 import recharge_service_pb2 as pb
from gencharge.v1 import recharge_service_pb2_grpc
from gencharge.v1 import transaction_pb2 as tpb
from server.auth.scopes import RECHARGES_WRITE
from tests.helpers.auth import Actor, create_service, register_user
from tests.helpers.clock import eventually
from tests.helpers.money import assert_ledger_balances, balance, fund, make_plan

RPC = "/gencharge.v1.RechargeService/BatchRecharge"


def rid() -> str:
    return uuid.uuid4().hex


def item(user_id: int, plan_id: int, **fields: Any) -> pb.BatchRechargeRequest:
    fields.setdefault("request_id", rid())
    return pb.BatchRechargeRequest(user_id=user_id, plan_id=plan_id, **fields)


async def batch(
    channel: grpc.aio.Channel, actor: Actor, items: Sequence[pb.BatchRechargeRequest]
) -> list[pb.BatchRechargeResponse]:
    stub = recharge_service_pb2_grpc.RechargeServiceStub(channel)
    call = stub.BatchRecharge(iter(items), metadata=actor.metadata)
    return [response async for response in call]


def error_info(status: status_pb2.Status) -> tuple[str, dict[str, str]]:
    reason, violations = "", {}
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = {v.field: v.description for v in bad.field_violations}
    return reason, violations


async def scalar(resources: Any, sql: str, **params: Any) -> Any:
    async with resources.db.read_only() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


async def audit_documents(resources: Any, want: int, rpc: str = RPC) -> list[Any]:
    """The AuditLog documents of ``rpc`` (BatchRecharge), once the relay has shipped
    ``want`` (the deadline only catches a hang: the caller's assert then fails with what
    arrived)."""
    collection = resources.mongo_db["AuditLog"]

    async def enough() -> bool:
        return await collection.count_documents({"rpc": rpc}) >= want

    if await eventually(enough, every=0.1):
        await asyncio.sleep(0.5)  # would an extra one follow?
    return list(await collection.find({"rpc": rpc}).to_list(None))


async def test_mixed_items_answer_in_order_and_apply_once(channel, resources) -> None:
    service = await create_service(channel, resources, [RECHARGES_WRITE])
    rich = await register_user(channel)
    poor = await register_user(channel)
    await fund(resources, rich.user_id, "100")
    await fund(resources, poor.user_id, "5")
    plan_id = await make_plan(resources, price="10.00")
    items = [
        item(rich.user_id, plan_id),  # 0 ok
        item(rich.user_id, 987654),  # 1 unknown plan
        item(poor.user_id, plan_id),  # 2 insufficient funds
        item(rich.user_id, plan_id, request_id="bad"),  # 3 bad request_id
        item(99999999, plan_id),  # 4 unknown user
        item(rich.user_id, plan_id, phone_number="9999900077"),  # 5 ok, a friend's number
        item(0, plan_id),  # 6 no paying customer named
    ]
    results = await batch(channel, service, items)

    assert [r.index for r in results] == list(range(len(items)))
    assert [r.request_id for r in results] == [i.request_id for i in items]
    assert [r.WhichOneof("result") for r in results] == [
        "recharge",
        "error",
        "error",
        "error",
        "error",
        "recharge",
        "error",
    ]
    assert results[1].error.code == code_pb2.NOT_FOUND
    assert error_info(results[1].error)[0] == "NOT_FOUND"
    assert results[2].error.code == code_pb2.FAILED_PRECONDITION
    assert error_info(results[2].error)[0] == "INSUFFICIENT_FUNDS"
    assert results[3].error.code == code_pb2.INVALID_ARGUMENT
    reason, violations = error_info(results[3].error)
    assert reason == "INVALID_ARGUMENT" and "request_id" in violations
    assert results[4].error.code == code_pb2.NOT_FOUND
    assert "user" in results[4].error.message
    assert results[6].error.code == code_pb2.INVALID_ARGUMENT
    assert "user_id" in error_info(results[6].error)[1]

    first, friend = results[0].recharge, results[5].recharge
    assert first.transaction.status == tpb.TRANSACTION_STATUS_SUCCESS
    assert first.transaction.user_id == rich.user_id
    assert first.transaction.to_phone_number == rich.phone_number
    assert first.transaction.source == tpb.TRANSACTION_SOURCE_RECHARGE
    assert friend.transaction.to_phone_number == "9999900077"
    assert first.active_plan.plan_id == plan_id
    # Exactly the two good items moved money, once each.
    assert await balance(resources, rich.user_id) == Decimal("80.00")
    assert await balance(resources, poor.user_id) == Decimal("5.00")
    debits = await scalar(
        resources,
        "SELECT count(*) FROM transactions WHERE txn_type = 'debit' AND user_id IN (:a, :b)",
        a=rich.user_id,
        b=poor.user_id,
    )
    assert debits == 2
    await assert_ledger_balances(resources)

    # Audit: one INSERT event per applied item, one SECURITY "failed" event per failed
    # item, each with its own request id (<call request id>/<index>), no stream event.
    events = await audit_documents(resources, want=len(items))
    inserts = [e for e in events if e["action_type"] == "INSERT"]
    failures = [e for e in events if e["action_type"] == "SECURITY"]
    assert len(events) == len(items)
    assert sorted(e["details"]["txn_id"] for e in inserts) == sorted(
        [first.transaction.txn_id, friend.transaction.txn_id]
    )
    assert {e["request_id"].rsplit("/", 1)[1] for e in inserts} == {"0", "5"}
    assert {e["request_id"].rsplit("/", 1)[1] for e in failures} == {"1", "2", "3", "4", "6"}
    assert all(e["outcome"] == "failed" for e in failures)
    assert {e["details"]["reason"] for e in failures} == {
        "NOT_FOUND",
        "INSUFFICIENT_FUNDS",
        "INVALID_ARGUMENT",
    }
    assert all(e["user_id"] == f"service:{service.email}" for e in events)
    assert len({e["request_id"].rsplit("/", 1)[0] for e in events}) == 1


async def test_replayed_item_returns_its_original_result(channel, resources) -> None:
    service = await create_service(channel, resources, [RECHARGES_WRITE])
    user = await register_user(channel)
    await fund(resources, user.user_id, "30")
    plan_id = await make_plan(resources, price="10.00")
    original = item(user.user_id, plan_id)
    [first] = await batch(channel, service, [original])
    assert first.WhichOneof("result") == "recharge"

    again = await batch(channel, service, [item(user.user_id, plan_id), original, original])
    assert [r.WhichOneof("result") for r in again] == ["recharge"] * 3
    assert again[1].recharge.transaction.txn_id == first.recharge.transaction.txn_id
    assert again[2].recharge.transaction.txn_id == first.recharge.transaction.txn_id
    assert again[1].recharge.active_plan.id == first.recharge.active_plan.id
    assert again[0].recharge.transaction.txn_id != first.recharge.transaction.txn_id
    assert await balance(resources, user.user_id) == Decimal("10.00")

    # Same key, different request: a clear error for that item only.
    changed = item(user.user_id, plan_id, request_id=original.request_id, phone_number="9999900088")
    [mismatch] = await batch(channel, service, [changed])
    assert mismatch.error.code == code_pb2.ALREADY_EXISTS
    assert error_info(mismatch.error)[0] == "IDEMPOTENCY_KEY_REUSED"
    assert await balance(resources, user.user_id) == Decimal("10.00")
    await assert_ledger_balances(resources)


async def test_users_are_denied(channel, resources) -> None:
    user = await register_user(channel)
    plan_id = await make_plan(resources)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await batch(channel, user, [item(user.user_id, plan_id)])
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_empty_stream(channel, resources) -> None:
    service = await create_service(channel, resources, [RECHARGES_WRITE])
    assert await batch(channel, service, []) == []


async def test_two_hundred_items_complete(channel, resources) -> None:
    service = await create_service(channel, resources, [RECHARGES_WRITE])
    plan_id = await make_plan(resources, price="10.00")
    users = [await register_user(channel) for _ in range(10)]
    for user in users:
        await fund(resources, user.user_id, "150")  # 15 recharges each; 20 are asked
    items = [item(users[i % 10].user_id, plan_id) for i in range(200)]
    results = await batch(channel, service, items)

    assert [r.index for r in results] == list(range(200))
    assert [r.request_id for r in results] == [i.request_id for i in items]
    ok = [r for r in results if r.WhichOneof("result") == "recharge"]
    failed = [r for r in results if r.WhichOneof("result") == "error"]
    assert len(ok) == 150 and len(failed) == 50
    assert all(r.error.code == code_pb2.FAILED_PRECONDITION for r in failed)
    assert {error_info(r.error)[0] for r in failed} == {"INSUFFICIENT_FUNDS"}
    assert len({r.recharge.transaction.txn_id for r in ok}) == 150
    for user in users:
        assert await balance(resources, user.user_id) == Decimal("0.00")
    await assert_ledger_balances(resources)
