"""AdminService ListAuditLogs through the real server: each filter, events about a
customer, newest first, keyset pages stable under inserts, masking of personal data per
role, RBAC, bad input, the index behind every filter, and MongoDB down."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from bson import ObjectId
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from gencharge.v1 import admin_service_pb2 as pb
from gencharge.v1 import admin_service_pb2_grpc, recharge_service_pb2_grpc
from gencharge.v1 import recharge_service_pb2 as rpb
from server.admin.insight import queries
from server.admin.insight.masking import mask_details, mask_text
from server.audit.scope import unit_of_work
from server.core import db, mongo
from server.core.config import Settings
from server.core.resources import Resources
from server.ops.embedded import free_port
from server.rpc.app import start_server
from tests.conftest import _TEST_KEYS
from tests.helpers.auth import Actor, create_admin, create_service, register_user
from tests.helpers.clock import HANG_SECONDS, eventually
from tests.helpers.money import fund, make_plan
from tests.helpers.rpc import details_of

Stub = admin_service_pb2_grpc.AdminServiceStub
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def ts(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


async def put(resources: Any, **fields: Any) -> ObjectId:
    """One AuditLog document as the relay writes it (defaults filled in)."""
    document = {
        "audit_id": str(uuid.uuid4()),
        "user_id": "admin:1",
        "table_name": "Users",
        "action_type": "UPDATE",
        "details": {},
        "created_at": T0,
        "rpc": "/gencharge.v1.AdminService/BlockUser",
        "request_id": uuid.uuid4().hex,
        "outcome": "ok",
        "peer": "ipv4:203.0.113.5:41234",
        "customer_id": None,
        **fields,
    }
    result = await resources.mongo_db["AuditLog"].insert_one(document)
    return result.inserted_id


async def listed(channel: Any, who: Actor, **fields: Any) -> pb.ListAuditLogsResponse:
    return await Stub(channel).ListAuditLogs(
        pb.ListAuditLogsRequest(**fields), metadata=who.metadata
    )


async def all_pages(channel: Any, who: Actor, **fields: Any) -> list[pb.AuditLogEntry]:
    entries: list[pb.AuditLogEntry] = []
    token = ""
    while True:
        reply = await listed(channel, who, page_token=token, **fields)
        entries.extend(reply.audit_logs)
        token = reply.next_page_token
        if not token:
            return entries


async def failure(call: Any) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return details_of(info.value)


# ------------------------------------------------------------------- filters


async def test_each_filter(channel: Any, resources: Any) -> None:
    admin = await create_admin(channel, resources)
    ids = {
        "block": await put(resources, customer_id=7, details={"user_id": 7}),
        "by_customer": await put(
            resources,
            user_id="user:7",
            customer_id=7,
            table_name="Transactions",
            action_type="INSERT",
            rpc="/gencharge.v1.RechargeService/Recharge",
            created_at=T0 + timedelta(minutes=1),
        ),
        "denied": await put(
            resources,
            user_id="user:8",
            customer_id=8,
            table_name="AuditLog",
            action_type="SECURITY",
            outcome="denied",
            rpc="/gencharge.v1.AdminService/ListAuditLogs",
            created_at=T0 + timedelta(minutes=2),
        ),
        "catalogue": await put(
            resources,
            user_id="admin:2",
            table_name="plans",
            action_type="INSERT",
            rpc="/gencharge.v1.PlanService/CreatePlan",
            created_at=T0 + timedelta(minutes=3),
        ),
    }
    names = {str(v): k for k, v in ids.items()}
    window = {
        "created_after": ts(T0 - timedelta(hours=1)),
        "created_before": ts(T0 + timedelta(hours=1)),
    }

    async def found(**fields: Any) -> list[str]:
        entries = await all_pages(channel, admin, **window, **fields)
        out = []
        for entry in entries:
            doc = await resources.mongo_db["AuditLog"].find_one({"audit_id": entry.audit_id})
            out.append(names[str(doc["_id"])])
        return out

    assert await found() == ["catalogue", "denied", "by_customer", "block"]  # newest first
    assert await found(user_id="admin:1") == ["block"]
    assert await found(customer_id=7) == ["by_customer", "block"]  # by and about
    assert await found(table_name="plans") == ["catalogue"]
    assert await found(action_type=pb.AUDIT_ACTION_TYPE_INSERT) == ["catalogue", "by_customer"]
    assert await found(action_type=pb.AUDIT_ACTION_TYPE_SECURITY) == ["denied"]
    assert await found(rpc="/gencharge.v1.RechargeService/Recharge") == ["by_customer"]
    assert await found(customer_id=7, action_type=pb.AUDIT_ACTION_TYPE_UPDATE) == ["block"]
    # The time range: created_after inclusive, created_before exclusive.
    exact = await all_pages(
        channel,
        admin,
        created_after=ts(T0 + timedelta(minutes=1)),
        created_before=ts(T0 + timedelta(minutes=3)),
    )
    assert [e.rpc for e in exact] == [
        "/gencharge.v1.AdminService/ListAuditLogs",
        "/gencharge.v1.RechargeService/Recharge",
    ]
    denied = (await listed(channel, admin, action_type=pb.AUDIT_ACTION_TYPE_SECURITY)).audit_logs[0]
    assert (denied.outcome, denied.customer_id, denied.user_id) == ("denied", 8, "user:8")
    assert denied.created_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(minutes=2)


async def test_bad_input_is_invalid_argument(channel: Any, resources: Any) -> None:
    admin = await create_admin(channel, resources)
    for fields, field in [
        ({"customer_id": -1}, "customer_id"),
        ({"created_after": ts(T0), "created_before": ts(T0)}, "created_before"),
        ({"action_type": 99}, "action_type"),
        ({"page_size": -1}, "page_size"),
        ({"page_token": "forged.token"}, "page_token"),
    ]:
        details = await failure(listed(channel, admin, **fields))
        assert details.code is grpc.StatusCode.INVALID_ARGUMENT, fields
        assert field in details.field_violations, (fields, details.field_violations)


# ------------------------------------------------------------------- pages


async def test_pages_are_stable_under_inserts(channel: Any, resources: Any) -> None:
    admin = await create_admin(channel, resources)
    # 25 events, several sharing one time (the _id breaks ties).
    for i in range(25):
        await put(resources, table_name="pages", created_at=T0 + timedelta(seconds=i // 3))
    first = await listed(channel, admin, table_name="pages", page_size=10)
    assert len(first.audit_logs) == 10 and first.next_page_token
    # Newer events arrive while the operator reads: the next pages do not shift.
    for i in range(5):
        await put(resources, table_name="pages", created_at=T0 + timedelta(hours=1, seconds=i))
    rest: list[pb.AuditLogEntry] = []
    token = first.next_page_token
    while token:
        reply = await listed(channel, admin, table_name="pages", page_size=10, page_token=token)
        rest.extend(reply.audit_logs)
        token = reply.next_page_token
    seen = [e.audit_id for e in [*first.audit_logs, *rest]]
    assert len(seen) == 25 == len(set(seen)), "no event twice, none lost"
    times = [e.created_at.ToDatetime() for e in [*first.audit_logs, *rest]]
    assert times == sorted(times, reverse=True)
    # A token is bound to its filters.
    details = await failure(
        listed(channel, admin, table_name="other", page_token=first.next_page_token)
    )
    assert details.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in details.field_violations
    # The default page size is 50.
    assert len((await listed(channel, admin, table_name="pages")).audit_logs) == 30


# ------------------------------------------------------------------- masking


def test_masking_rules() -> None:
    assert mask_text("alice@example.com") == "a***@example.com"
    assert mask_text("9876543210") == "******3210"
    assert mask_text("+919876543210") == "+********3210"
    assert mask_text("sent to bob.smith@mail.example.in and 9000000001.") == (
        "sent to b***@mail.example.in and ******0001."
    )
    assert mask_text("order_1234567890123 txn 42") == "order_1234567890123 txn 42"
    assert mask_details(
        {"phone_number": "12345", "email": "not-an-address", "nested": [{"to": "9876501234"}]}
    ) == {"phone_number": "*****", "email": "***", "nested": [{"to": "******1234"}]}


async def test_support_sees_personal_data_masked(channel: Any, resources: Any) -> None:
    admin = await create_admin(channel, resources)
    support = await create_admin(channel, resources, "Support")
    details = {
        "user_id": 5,
        "email": "alice@example.com",
        "changes": {"phone_number": "9876543210", "note": "call +919876543210"},
        "phones": ["9123456789"],
    }
    await put(resources, table_name="masking", details=details, customer_id=5)
    (plain,) = (await listed(channel, admin, table_name="masking")).audit_logs
    (masked,) = (await listed(channel, support, table_name="masking")).audit_logs
    assert json_format.MessageToDict(plain.details) == {**details, "user_id": 5.0}
    assert plain.peer == "ipv4:203.0.113.5:41234"
    assert json_format.MessageToDict(masked.details) == {
        "user_id": 5.0,
        "email": "a***@example.com",
        "changes": {"phone_number": "******3210", "note": "call +********3210"},
        "phones": ["******6789"],
    }
    assert masked.peer == ""
    assert masked.customer_id == plain.customer_id == 5


# ------------------------------------------------------------------- end to end


async def test_a_customers_events_by_them_and_about_them(channel: Any, resources: Any) -> None:
    """Real events through the relay: the customer's registration, a recharge a service
    made for them, a call of theirs that was refused; another customer's events are not
    listed; Support sees the recharge's phone number masked."""
    admin = await create_admin(channel, resources)
    support = await create_admin(channel, resources, "Support")
    customer = await register_user(channel)
    other = await register_user(channel)
    await fund(resources, customer.user_id, "100")
    plan = await make_plan(resources, price="10.00")
    service = await create_service(channel, resources, ["recharges.write"])
    await recharge_service_pb2_grpc.RechargeServiceStub(channel).Recharge(
        rpb.RechargeRequest(plan_id=plan, user_id=customer.user_id, request_id=uuid.uuid4().hex),
        metadata=service.metadata,
    )
    denied = await failure(listed(channel, customer))
    assert denied.code is grpc.StatusCode.PERMISSION_DENIED

    async def three() -> list[pb.AuditLogEntry]:
        entries = await all_pages(channel, admin, customer_id=customer.user_id)
        return entries if len(entries) >= 3 else []

    entries = await eventually(three, within=HANG_SECONDS, every=0.2)
    assert [(e.rpc.rsplit("/", 1)[-1], e.user_id, e.action_type) for e in entries] == [
        ("ListAuditLogs", f"user:{customer.user_id}", pb.AUDIT_ACTION_TYPE_SECURITY),
        ("Recharge", f"service:{service.email}", pb.AUDIT_ACTION_TYPE_INSERT),
        ("Register", f"user:{customer.user_id}", pb.AUDIT_ACTION_TYPE_INSERT),
    ]
    assert all(e.customer_id == customer.user_id for e in entries)
    assert other.user_id not in {e.customer_id for e in entries}
    recharge_entry = entries[1]
    assert recharge_entry.details["phone_number"] == customer.phone_number
    (as_support,) = [
        e
        for e in await all_pages(channel, support, customer_id=customer.user_id)
        if e.audit_id == recharge_entry.audit_id
    ]
    assert as_support.details["phone_number"] == "******" + customer.phone_number[-4:]
    by_actor = await all_pages(channel, admin, user_id=f"service:{service.email}")
    assert recharge_entry.audit_id in {e.audit_id for e in by_actor}
    assert {e.user_id for e in by_actor} == {f"service:{service.email}"}


async def test_rbac_per_role(channel: Any, resources: Any) -> None:
    for role in ("Admin", "Support"):
        who = await create_admin(channel, resources, role)
        await listed(channel, who)
    customer = await register_user(channel)
    service = await create_service(channel, resources, ["recharges.write", "recharges.read"])
    for who, code in [
        (customer, grpc.StatusCode.PERMISSION_DENIED),
        (service, grpc.StatusCode.PERMISSION_DENIED),
    ]:
        assert (await failure(listed(channel, who))).code is code
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await Stub(channel).ListAuditLogs(pb.ListAuditLogsRequest())
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED


# ------------------------------------------------------------------- indexes


async def test_every_filter_reads_its_index_in_page_order(resources: Any) -> None:
    for i in range(50):
        await put(resources, created_at=T0 + timedelta(seconds=i), customer_id=i % 5)
    position = (T0 + timedelta(seconds=30), ObjectId())
    for equals, index in [
        ({}, "auditlog_page"),
        ({"user_id": "admin:1"}, "auditlog_user_id_page"),
        ({"customer_id": 3}, "auditlog_customer_id_page"),
        ({"table_name": "Users"}, "auditlog_table_name_page"),
        ({"action_type": "SECURITY"}, "auditlog_action_type_page"),
        ({"rpc": "/x/y"}, "auditlog_rpc_page"),
        ({"customer_id": 3, "action_type": "UPDATE"}, "auditlog_customer_id_page"),
    ]:
        query = queries.AuditQuery(
            equals=equals,
            created_after=T0,
            created_before=T0 + timedelta(days=1),
            position=position,
            limit=11,
        )
        plan = await queries.explain_audit_logs(resources.mongo_db, query)
        text = str(plan["queryPlanner"]["winningPlan"])
        assert "IXSCAN" in text and index in text, (equals, text)
        # No check on a SORT stage: SecantusDB reports one above every IXSCAN, even when
        # the index order is the sort order (mongod then has none; docs/audit.md).


# ------------------------------------------------------------------- MongoDB down


@pytest.fixture
async def mongo_down_server(pg_url: str) -> AsyncIterator[Any]:
    url = f"mongodb://127.0.0.1:{free_port()}/gencharge?directConnection=true"
    settings = Settings(
        database_url=pg_url,
        mongo_url=url,
        listen="127.0.0.1:0",
        load_demo_data=False,
        data_dir=Path("/nonexistent"),
        jwt_private_key=_TEST_KEYS[0],
        data_encryption_key=_TEST_KEYS[1],
    )
    engine = db.create_engine(pg_url, pool_size=2)
    client: Any = mongo.AsyncMongoClient(url, tz_aware=True, serverSelectionTimeoutMS=300)
    resources = Resources(settings, unit_of_work(engine), client["gencharge"])
    running = await start_server(resources, "127.0.0.1:0", health_interval=0.2)
    try:
        yield running, resources
    finally:
        await running.stop(0)
        await client.close()
        await engine.dispose()


async def test_mongodb_down_is_unavailable_and_the_dashboard_still_works(
    mongo_down_server: Any,
) -> None:
    running, resources = mongo_down_server
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        admin = await create_admin(channel, resources)
        details = await failure(listed(channel, admin))
        assert details.code is grpc.StatusCode.UNAVAILABLE
        assert details.reason == "AUDIT_LOG_UNAVAILABLE"
        assert "MongoDB" in details.message
        reply = await Stub(channel).GetDashboardStats(
            pb.GetDashboardStatsRequest(), metadata=admin.metadata
        )
        assert reply.total_users >= 0
