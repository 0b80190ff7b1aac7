"""AdminService AdjustWallet and its four-eyes approval through the real server over real
PostgreSQL: small adjustments move the wallet at once, large ones wait for a second
admin, the balance never goes negative (also under concurrency), every call is
idempotent on its request_id and audited, and only admins may do any of it."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from gencharge.v1 import admin_service_pb2 as pb
from gencharge.v1 import admin_service_pb2_grpc, common_pb2
from gencharge.v1 import transaction_pb2 as tpb
from tests.helpers.auth import Actor, create_admin, create_service, register_user
from tests.helpers.clock import eventually
from tests.helpers.money import assert_ledger_balances, balance, fund
from tests.helpers.rpc import details_of

Stub = admin_service_pb2_grpc.AdminServiceStub
#: The default approval threshold (GENCHARGE_ADJUSTMENT_APPROVAL_THRESHOLD_MINOR): Rs 10,000.
THRESHOLD = 1_000_000
LARGE = THRESHOLD + 1


def rid() -> str:
    return uuid.uuid4().hex


def inr(units_minor: int, currency: str = "INR") -> common_pb2.Money:
    return common_pb2.Money(units_minor=units_minor, currency_code=currency)


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> Stub:
    return Stub(channel)


@pytest.fixture
async def admin(channel: grpc.aio.Channel, resources: Any) -> Actor:
    return await create_admin(channel, resources)


@pytest.fixture
async def second_admin(channel: grpc.aio.Channel, resources: Any) -> Actor:
    return await create_admin(channel, resources)


async def adjust(
    stub: Stub, actor: Actor, user_id: int, amount_minor: int, **fields: Any
) -> tpb.Transaction:
    fields.setdefault("request_id", rid())
    fields.setdefault("reason", "goodwill credit")
    return await stub.AdjustWallet(
        pb.AdjustWalletRequest(user_id=user_id, amount=inr(amount_minor), **fields),
        metadata=actor.metadata,
    )


async def approve(stub: Stub, actor: Actor, txn_id: int, **fields: Any) -> pb.WalletAdjustment:
    fields.setdefault("request_id", rid())
    return await stub.ApproveWalletAdjustment(
        pb.ApproveWalletAdjustmentRequest(txn_id=txn_id, **fields), metadata=actor.metadata
    )


async def reject(stub: Stub, actor: Actor, txn_id: int, **fields: Any) -> pb.WalletAdjustment:
    fields.setdefault("request_id", rid())
    fields.setdefault("reason", "not justified")
    return await stub.RejectWalletAdjustment(
        pb.RejectWalletAdjustmentRequest(txn_id=txn_id, **fields), metadata=actor.metadata
    )


async def failure(call: Any) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return details_of(info.value)


async def admin_id(resources: Any, actor: Actor) -> int:
    async with resources.db.read_only() as conn:
        value = (
            await conn.execute(
                text("SELECT admin_id FROM admins WHERE email = :e"), {"e": actor.email}
            )
        ).scalar_one()
    return int(value)


async def count(resources: Any, sql: str, **params: Any) -> int:
    async with resources.db.read_only() as conn:
        return int((await conn.execute(text(sql), params)).scalar_one())


async def test_adjustments_up_to_the_threshold_move_the_wallet_at_once(
    channel: Any, stub: Stub, admin: Actor, resources: Any
) -> None:
    user = await register_user(channel)
    credit = await adjust(stub, admin, user.user_id, 5000)
    assert credit.source == tpb.TRANSACTION_SOURCE_ADJUSTMENT
    assert credit.txn_type == tpb.TRANSACTION_TYPE_CREDIT
    assert credit.status == tpb.TRANSACTION_STATUS_SUCCESS
    assert credit.balance_after.units_minor == 5000
    debit = await adjust(stub, admin, user.user_id, -2000, reason="reverse a duplicate credit")
    assert debit.txn_type == tpb.TRANSACTION_TYPE_DEBIT
    assert debit.balance_after.units_minor == 3000
    overdraft = await failure(adjust(stub, admin, user.user_id, -3001))
    assert overdraft.code == grpc.StatusCode.FAILED_PRECONDITION
    assert overdraft.reason == "INSUFFICIENT_FUNDS"
    at_threshold = await adjust(stub, admin, user.user_id, THRESHOLD)
    assert at_threshold.status == tpb.TRANSACTION_STATUS_SUCCESS
    assert await balance(resources, user.user_id) == Decimal("10030.00")

    listed = await stub.ListWalletAdjustments(
        pb.ListWalletAdjustmentsRequest(user_id=user.user_id), metadata=admin.metadata
    )
    assert [a.transaction.txn_id for a in listed.adjustments] == [
        at_threshold.txn_id,
        debit.txn_id,
        credit.txn_id,
    ]
    newest = listed.adjustments[1]
    assert newest.status == pb.WALLET_ADJUSTMENT_STATUS_APPLIED
    assert newest.reason == "reverse a duplicate credit"
    assert newest.amount.units_minor == -2000
    assert newest.requested_by == await admin_id(resources, admin)
    assert newest.decided_by == 0
    await assert_ledger_balances(resources)


async def test_a_large_adjustment_waits_for_a_second_admin(
    channel: Any, stub: Stub, admin: Actor, second_admin: Actor, resources: Any
) -> None:
    user = await register_user(channel)
    pending = await adjust(stub, admin, user.user_id, LARGE, reason="migration from old system")
    assert pending.status == tpb.TRANSACTION_STATUS_PENDING
    assert not pending.HasField("balance_after")
    assert await balance(resources, user.user_id) == Decimal("0.00")

    own = await failure(approve(stub, admin, pending.txn_id))
    assert own.code == grpc.StatusCode.FAILED_PRECONDITION and own.reason == "SAME_ADMIN"
    assert await balance(resources, user.user_id) == Decimal("0.00")

    key = rid()
    approved = await approve(stub, second_admin, pending.txn_id, request_id=key, note="checked")
    assert approved.status == pb.WALLET_ADJUSTMENT_STATUS_APPROVED
    assert approved.transaction.status == tpb.TRANSACTION_STATUS_SUCCESS
    assert approved.transaction.balance_after.units_minor == LARGE
    assert approved.requested_by == await admin_id(resources, admin)
    assert approved.decided_by == await admin_id(resources, second_admin)
    assert approved.decision_note == "checked" and approved.HasField("decided_at")
    assert await balance(resources, user.user_id) == Decimal(LARGE) / 100

    replay = await approve(stub, second_admin, pending.txn_id, request_id=key, note="checked")
    assert replay == approved
    reused = await failure(approve(stub, second_admin, pending.txn_id, request_id=key))
    assert reused.code == grpc.StatusCode.ALREADY_EXISTS
    again = await failure(approve(stub, second_admin, pending.txn_id))
    assert again.reason == "ADJUSTMENT_NOT_PENDING" and again.metadata["status"] == "approved"
    await assert_ledger_balances(resources)


async def test_approval_checks_the_balance_again(
    channel: Any, stub: Stub, admin: Actor, second_admin: Actor, resources: Any
) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "20000.00")
    pending = await adjust(stub, admin, user.user_id, -LARGE, reason="chargeback")
    assert pending.status == tpb.TRANSACTION_STATUS_PENDING
    await adjust(stub, admin, user.user_id, -THRESHOLD, reason="another chargeback")
    # Rs 10,000 left, the pending debit is Rs 10,000.01: it no longer fits.
    short = await failure(approve(stub, second_admin, pending.txn_id))
    assert short.code == grpc.StatusCode.FAILED_PRECONDITION
    assert short.reason == "INSUFFICIENT_FUNDS"
    listed = await stub.ListWalletAdjustments(
        pb.ListWalletAdjustmentsRequest(status=pb.WALLET_ADJUSTMENT_STATUS_PENDING),
        metadata=admin.metadata,
    )
    assert [a.transaction.txn_id for a in listed.adjustments] == [pending.txn_id]
    await fund(resources, user.user_id, "0.01")
    approved = await approve(stub, second_admin, pending.txn_id)
    assert approved.transaction.balance_after.units_minor == 0
    await assert_ledger_balances(resources)


async def test_a_rejected_adjustment_moves_nothing(
    channel: Any, stub: Stub, admin: Actor, second_admin: Actor, resources: Any
) -> None:
    user = await register_user(channel)
    pending = await adjust(stub, admin, user.user_id, LARGE)
    no_reason = await failure(reject(stub, second_admin, pending.txn_id, reason=""))
    assert no_reason.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(no_reason.field_violations) == {"reason"}
    # the requester may withdraw their own request
    rejected = await reject(stub, admin, pending.txn_id, reason="typo in the amount")
    assert rejected.status == pb.WALLET_ADJUSTMENT_STATUS_REJECTED
    assert rejected.transaction.status == tpb.TRANSACTION_STATUS_FAILED
    assert rejected.decision_note == "typo in the amount"
    late = await failure(approve(stub, second_admin, pending.txn_id))
    assert late.reason == "ADJUSTMENT_NOT_PENDING"
    assert await balance(resources, user.user_id) == Decimal("0.00")
    await assert_ledger_balances(resources)


async def test_adjust_wallet_is_idempotent(
    channel: Any, stub: Stub, admin: Actor, resources: Any
) -> None:
    user = await register_user(channel)
    key = rid()
    results = await asyncio.gather(
        *(adjust(stub, admin, user.user_id, 1500, request_id=key) for _ in range(5))
    )
    assert len({r.txn_id for r in results}) == 1 and all(r == results[0] for r in results)
    assert await balance(resources, user.user_id) == Decimal("15.00")
    reused = await failure(adjust(stub, admin, user.user_id, 1600, request_id=key))
    assert reused.code == grpc.StatusCode.ALREADY_EXISTS
    assert reused.reason == "IDEMPOTENCY_KEY_REUSED"
    assert (
        await count(
            resources,
            "SELECT count(*) FROM wallet_adjustments WHERE user_id = :u",
            u=user.user_id,
        )
        == 1
    )


async def test_concurrent_debits_never_overdraw(
    channel: Any, stub: Stub, admin: Actor, resources: Any
) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "100.00")

    async def attempt() -> Any:
        try:
            return await adjust(stub, admin, user.user_id, -3000)
        except grpc.aio.AioRpcError as exc:
            return details_of(exc)

    outcomes = await asyncio.gather(*(attempt() for _ in range(10)))
    made = [o for o in outcomes if isinstance(o, tpb.Transaction)]
    refused = [o for o in outcomes if not isinstance(o, tpb.Transaction)]
    assert len(made) == 3
    assert {r.reason for r in refused} == {"INSUFFICIENT_FUNDS"}
    assert await balance(resources, user.user_id) == Decimal("10.00")
    await assert_ledger_balances(resources)


async def test_bad_requests_write_nothing(
    channel: Any, stub: Stub, admin: Actor, resources: Any
) -> None:
    user = await register_user(channel)
    bad = await failure(
        stub.AdjustWallet(
            pb.AdjustWalletRequest(request_id="x", user_id=0, amount=inr(0), reason=" "),
            metadata=admin.metadata,
        )
    )
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad.field_violations) == {"request_id", "user_id", "amount", "reason"}
    unset = await failure(
        stub.AdjustWallet(
            pb.AdjustWalletRequest(request_id=rid(), user_id=user.user_id, reason="r"),
            metadata=admin.metadata,
        )
    )
    assert set(unset.field_violations) == {"amount"}
    euro = await failure(
        stub.AdjustWallet(
            pb.AdjustWalletRequest(
                request_id=rid(), user_id=user.user_id, amount=inr(5, "EUR"), reason="r"
            ),
            metadata=admin.metadata,
        )
    )
    assert set(euro.field_violations) == {"amount.currency_code"}
    huge = await failure(adjust(stub, admin, user.user_id, 2**62))
    assert set(huge.field_violations) == {"amount"}
    missing = await failure(adjust(stub, admin, 2_000_000_000, 100))
    assert missing.code == grpc.StatusCode.NOT_FOUND
    unknown = await failure(approve(stub, admin, 2_000_000_000))
    assert unknown.code == grpc.StatusCode.NOT_FOUND
    bad_list = await failure(
        stub.ListWalletAdjustments(
            pb.ListWalletAdjustmentsRequest(status=99), metadata=admin.metadata
        )
    )
    assert bad_list.code == grpc.StatusCode.INVALID_ARGUMENT
    assert await count(resources, "SELECT count(*) FROM wallet_adjustments") == 0
    assert await balance(resources, user.user_id) == Decimal("0.00")


async def test_listing_pages_through_every_adjustment(
    channel: Any, stub: Stub, admin: Actor, resources: Any
) -> None:
    user = await register_user(channel)
    other = await register_user(channel)
    made = [(await adjust(stub, admin, user.user_id, 100 + i)).txn_id for i in range(3)]
    await adjust(stub, admin, other.user_id, 100)
    seen: list[int] = []
    token = ""
    while True:
        page = await stub.ListWalletAdjustments(
            pb.ListWalletAdjustmentsRequest(user_id=user.user_id, page_size=2, page_token=token),
            metadata=admin.metadata,
        )
        seen.extend(a.transaction.txn_id for a in page.adjustments)
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(made))
    forged = await failure(
        stub.ListWalletAdjustments(
            pb.ListWalletAdjustmentsRequest(user_id=other.user_id, page_token="abc.def"),
            metadata=admin.metadata,
        )
    )
    assert forged.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_only_admins_may_adjust_approve_or_list(
    channel: Any, stub: Stub, admin: Actor, resources: Any
) -> None:
    user = await register_user(channel)
    pending = await adjust(stub, admin, user.user_id, LARGE)
    support = await create_admin(channel, resources, role_name="Support")
    service = await create_service(channel, resources)
    for actor in (support, user, service):
        calls = [
            adjust(stub, actor, user.user_id, 100),
            approve(stub, actor, pending.txn_id),
            reject(stub, actor, pending.txn_id),
            stub.ListWalletAdjustments(pb.ListWalletAdjustmentsRequest(), metadata=actor.metadata),
        ]
        for call in calls:
            denied = await failure(call)
            assert denied.code == grpc.StatusCode.PERMISSION_DENIED, actor.kind
    anonymous = await failure(stub.ListWalletAdjustments(pb.ListWalletAdjustmentsRequest()))
    assert anonymous.code == grpc.StatusCode.UNAUTHENTICATED
    assert await count(resources, "SELECT count(*) FROM wallet_adjustments") == 1
    assert await balance(resources, user.user_id) == Decimal("0.00")


async def test_adjustments_and_decisions_are_audited(
    channel: Any, stub: Stub, admin: Actor, second_admin: Actor, resources: Any
) -> None:
    user = await register_user(channel)
    pending = await adjust(stub, admin, user.user_id, LARGE, reason="audited reason")
    await approve(stub, second_admin, pending.txn_id, note="looks right")
    collection = resources.mongo_db["AuditLog"]

    async def docs(rpc: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await collection.find(
            {"rpc": f"/gencharge.v1.AdminService/{rpc}", "outcome": "ok"}
        ).to_list(None)
        return found

    (asked,) = await eventually(lambda: docs("AdjustWallet"))
    assert asked["table_name"] == "WalletAdjustments" and asked["action_type"] == "INSERT"
    assert asked["details"]["reason"] == "audited reason"
    assert asked["details"]["adjustment_status"] == "pending"
    assert asked["user_id"] == f"admin:{await admin_id(resources, admin)}"
    (decided,) = await eventually(lambda: docs("ApproveWalletAdjustment"))
    assert decided["action_type"] == "UPDATE"
    assert decided["details"]["adjustment_status"] == "approved"
    assert decided["details"]["decision_note"] == "looks right"
    assert decided["user_id"] == f"admin:{await admin_id(resources, second_admin)}"
