"""AdminService customer accounts through the real server: ListUsers, GetUser,
BlockUser, UnblockUser, ArchiveUser, RevokeUserSessions (server/admin/users)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import text

from gencharge.v1 import (
    admin_service_pb2 as pb,
)
from gencharge.v1 import (
    admin_service_pb2_grpc,
    auth_service_pb2,
    common_pb2,
    identity_pb2,
    recharge_service_pb2,
    recharge_service_pb2_grpc,
)
from tests.conftest import serve
from tests.helpers.auth import (
    Actor,
    auth_stub,
    create_admin,
    create_service,
    register_user,
)
from tests.helpers.clock import HANG_SECONDS, FakeClock, eventually
from tests.helpers.money import fund, make_plan
from tests.helpers.rpc import details_of

ADMIN = "/gencharge.v1.AdminService/"


def admin_stub(channel: grpc.aio.Channel) -> admin_service_pb2_grpc.AdminServiceStub:
    return admin_service_pb2_grpc.AdminServiceStub(channel)


async def failure(call: Any) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return details_of(info.value)


def ts(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


async def rows(resources: Any, sql: str, **params: Any) -> list[Any]:
    async with resources.db.read_only() as conn:
        return list((await conn.execute(text(sql), params)).all())


async def audit_documents(resources: Any, rpc: str, want: int = 1) -> list[dict[str, Any]]:
    query = {"rpc": ADMIN + rpc, "outcome": "ok"}

    async def enough() -> bool:
        return await resources.mongo_db["AuditLog"].count_documents(query) >= want

    await eventually(enough, within=HANG_SECONDS)
    return await resources.mongo_db["AuditLog"].find(query).to_list(None)


async def get_me(channel: grpc.aio.Channel, actor: Actor) -> Any:
    return await auth_stub(channel).GetMe(auth_service_pb2.GetMeRequest(), metadata=actor.metadata)


# --- ListUsers ------------------------------------------------------------------------------


async def test_list_users_filters_search_and_pages(channel: Any, resources: Any) -> None:
    admin = await create_admin(channel, resources)
    stub = admin_stub(channel)
    tag = uuid.uuid4().hex[:8]
    asha = await register_user(channel, name=f"Asha {tag}", email=f"asha-{tag}@example.com")
    ravi = await register_user(
        channel,
        name=f"Ravi {tag}",
        email=f"ravi-{tag}@example.com",
        user_type=common_pb2.USER_TYPE_POSTPAID,
    )
    meera = await register_user(channel, name=f"Meera {tag}", email=f"meera-{tag}@example.com")
    await stub.BlockUser(
        pb.BlockUserRequest(user_id=ravi.user_id, reason="abuse"), metadata=admin.metadata
    )

    async def ids(**fields: Any) -> list[int]:
        reply = await stub.ListUsers(pb.ListUsersRequest(**fields), metadata=admin.metadata)
        return [u.user_id for u in reply.users]

    # Newest first; every customer of this test found by the name tag.
    assert await ids(query=tag) == [meera.user_id, ravi.user_id, asha.user_id]
    assert await ids(query=f"ASHA-{tag}@EXAMPLE") == [asha.user_id]  # e-mail, any case
    assert await ids(query=meera.phone_number[-6:]) == [meera.user_id]  # phone substring
    assert await ids(query=f"+91{meera.phone_number}") == [meera.user_id]  # E.164 form
    assert await ids(query=f"{tag}%") == []  # a LIKE wildcard is a literal character
    assert await ids(query=tag, status=identity_pb2.USER_STATUS_BLOCKED) == [ravi.user_id]
    assert await ids(query=tag, status=identity_pb2.USER_STATUS_ACTIVE) == [
        meera.user_id,
        asha.user_id,
    ]
    assert await ids(query=tag, user_type=common_pb2.USER_TYPE_POSTPAID) == [ravi.user_id]
    created = (
        await rows(resources, "SELECT created_at FROM users WHERE user_id = :u", u=ravi.user_id)
    )[0][0]
    assert ravi.user_id in await ids(query=tag, created_after=ts(created))
    assert await ids(query=tag, created_before=ts(created)) == [asha.user_id]
    # Pages of one, chained by signed tokens, give the same order.
    seen: list[int] = []
    token = ""
    while True:
        reply = await stub.ListUsers(
            pb.ListUsersRequest(query=tag, page_size=1, page_token=token), metadata=admin.metadata
        )
        seen += [u.user_id for u in reply.users]
        token = reply.next_page_token
        if not token:
            break
    assert seen == [meera.user_id, ravi.user_id, asha.user_id]
    # A list carries no GetUser details.
    reply = await stub.ListUsers(pb.ListUsersRequest(query=tag), metadata=admin.metadata)
    assert not any(u.HasField("details") for u in reply.users)


async def test_list_users_bad_input(channel: Any, resources: Any) -> None:
    admin = await create_admin(channel, resources)
    stub = admin_stub(channel)
    await register_user(channel)
    await register_user(channel)
    now = datetime.now(UTC)
    error = await failure(
        stub.ListUsers(
            pb.ListUsersRequest(created_after=ts(now), created_before=ts(now - timedelta(1))),
            metadata=admin.metadata,
        )
    )
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "created_before" in error.field_violations
    first = await stub.ListUsers(pb.ListUsersRequest(page_size=1), metadata=admin.metadata)
    assert first.next_page_token
    other_filters = await failure(
        stub.ListUsers(
            pb.ListUsersRequest(page_size=1, page_token=first.next_page_token, query="x"),
            metadata=admin.metadata,
        )
    )
    assert other_filters.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in other_filters.field_violations
    forged = await failure(
        stub.ListUsers(pb.ListUsersRequest(page_token="abc.def"), metadata=admin.metadata)
    )
    assert forged.code == grpc.StatusCode.INVALID_ARGUMENT
    bad_status = await failure(
        stub.ListUsers(pb.ListUsersRequest(status=99), metadata=admin.metadata)  # type: ignore[arg-type]
    )
    assert bad_status.code == grpc.StatusCode.INVALID_ARGUMENT


# --- GetUser --------------------------------------------------------------------------------


async def test_get_user_shows_balance_plans_and_last_login(channel: Any, resources: Any) -> None:
    admin = await create_admin(channel, resources)
    stub = admin_stub(channel)
    user = await register_user(channel)
    await fund(resources, user.user_id, "100.00")
    plan_id = await make_plan(resources, price="30.00", name=f"Plan {uuid.uuid4().hex[:6]}")
    recharge_stub = recharge_service_pb2_grpc.RechargeServiceStub(channel)
    for _ in range(2):  # the first active, the second queued after it
        await recharge_stub.Recharge(
            recharge_service_pb2.RechargeRequest(plan_id=plan_id, request_id=uuid.uuid4().hex),
            metadata=user.metadata,
        )
    got = await stub.GetUser(pb.GetUserRequest(user_id=user.user_id), metadata=admin.metadata)
    assert got.user_id == user.user_id and got.email == user.email
    assert got.wallet_balance.units_minor == 4000 and got.wallet_balance.currency_code == "INR"
    assert got.details.HasField("last_login_at")
    assert got.details.active_sessions == 1
    plans = got.details.active_plans
    assert [p.plan_id for p in plans] == [plan_id, plan_id]
    assert [p.queued for p in plans] == [False, True]
    assert plans[0].phone_number == user.phone_number
    assert plans[1].valid_from == plans[0].valid_to
    assert not got.details.HasField("archived_at") and not got.details.erased

    missing = await failure(
        stub.GetUser(pb.GetUserRequest(user_id=2_000_000), metadata=admin.metadata)
    )
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")


# --- BlockUser, UnblockUser, RevokeUserSessions ----------------------------------------------


async def test_block_ends_sessions_and_tokens_then_unblock(channel: Any, resources: Any) -> None:
    admin = await create_admin(channel, resources)
    stub = admin_stub(channel)
    user = await register_user(channel)
    bystander = await register_user(channel)
    await get_me(channel, user)  # the session state is cached as active

    no_reason = await failure(
        stub.BlockUser(
            pb.BlockUserRequest(user_id=user.user_id, reason="  "), metadata=admin.metadata
        )
    )
    assert no_reason.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "reason" in no_reason.field_violations
    assert await get_me(channel, user)  # nothing happened

    blocked = await stub.BlockUser(
        pb.BlockUserRequest(user_id=user.user_id, reason="chargeback fraud"),
        metadata=admin.metadata,
    )
    assert blocked.status == identity_pb2.USER_STATUS_BLOCKED
    # The already-issued access token stops at once in this process.
    ended = await failure(get_me(channel, user))
    assert (ended.code, ended.reason) == (grpc.StatusCode.UNAUTHENTICATED, "SESSION_ENDED")
    login = await failure(
        auth_stub(channel).Login(
            auth_service_pb2.LoginRequest(email=user.email, password=user.password)
        )
    )
    assert (login.code, login.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ACCOUNT_BLOCKED")
    assert await get_me(channel, bystander)
    active = await rows(
        resources, "SELECT count(*) FROM sessions WHERE user_id = :u AND is_active", u=user.user_id
    )
    assert active[0][0] == 0

    again = await stub.BlockUser(
        pb.BlockUserRequest(user_id=user.user_id, reason="again"), metadata=admin.metadata
    )
    assert again.status == identity_pb2.USER_STATUS_BLOCKED  # idempotent

    docs = await audit_documents(resources, "BlockUser", want=2)
    first = next(d for d in docs if d["details"]["reason"] == "chargeback fraud")
    assert first["table_name"] == "Users" and first["action_type"] == "UPDATE"
    assert first["details"]["user_id"] == user.user_id
    assert first["details"]["sessions_ended"] == 1
    assert first["details"]["previous_status"] == "active"

    unblocked = await stub.UnblockUser(
        pb.UnblockUserRequest(user_id=user.user_id, reason="appeal upheld"), metadata=admin.metadata
    )
    assert unblocked.status == identity_pb2.USER_STATUS_ACTIVE
    again_active = await stub.UnblockUser(
        pb.UnblockUserRequest(user_id=user.user_id), metadata=admin.metadata
    )
    assert again_active.status == identity_pb2.USER_STATUS_ACTIVE  # idempotent
    # The old token stays dead; a new login works.
    assert (await failure(get_me(channel, user))).reason == "SESSION_ENDED"
    relogin = await auth_stub(channel).Login(
        auth_service_pb2.LoginRequest(email=user.email, password=user.password)
    )
    assert relogin.tokens.access_token
    unblock_docs = await audit_documents(resources, "UnblockUser", want=2)
    assert {d["details"]["previous_status"] for d in unblock_docs} == {"blocked", "active"}

    for call in (
        stub.BlockUser(pb.BlockUserRequest(user_id=2_000_000, reason="x"), metadata=admin.metadata),
        stub.UnblockUser(pb.UnblockUserRequest(user_id=2_000_000), metadata=admin.metadata),
    ):
        assert (await failure(call)).reason == "USER_NOT_FOUND"


async def test_block_stops_tokens_on_another_replica_within_the_cache_window(
    channel: Any, resources: Any, server_clock: FakeClock
) -> None:
    """A second server (another replica over the same databases, the same clock) keeps
    its cached session state until ``auth_cache_seconds`` pass, then refuses."""
    admin = await create_admin(channel, resources)
    user = await register_user(channel)
    async with (
        serve(resources, server_clock) as replica,
        grpc.aio.insecure_channel(f"127.0.0.1:{replica.port}") as other,
    ):
        assert await get_me(other, user)  # cached as active on the replica
        await admin_stub(channel).BlockUser(
            pb.BlockUserRequest(user_id=user.user_id, reason="abuse"), metadata=admin.metadata
        )
        assert (await failure(get_me(channel, user))).reason == "SESSION_ENDED"
        assert await get_me(other, user)  # still within the documented window
        server_clock.advance(resources.settings.auth_cache_seconds + 1.0)
        refused = await failure(get_me(other, user))
        assert (refused.code, refused.reason) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "SESSION_ENDED",
        )


async def test_revoke_user_sessions_returns_the_count(channel: Any, resources: Any) -> None:
    admin = await create_admin(channel, resources)
    stub = admin_stub(channel)
    user = await register_user(channel)
    for _ in range(2):
        await auth_stub(channel).Login(
            auth_service_pb2.LoginRequest(email=user.email, password=user.password)
        )
    reply = await stub.RevokeUserSessions(
        pb.RevokeUserSessionsRequest(user_id=user.user_id), metadata=admin.metadata
    )
    assert reply.revoked_count == 3
    assert (await failure(get_me(channel, user))).reason == "SESSION_ENDED"
    again = await stub.RevokeUserSessions(
        pb.RevokeUserSessionsRequest(user_id=user.user_id), metadata=admin.metadata
    )
    assert again.revoked_count == 0
    # Not a block: the user logs in again.
    await auth_stub(channel).Login(
        auth_service_pb2.LoginRequest(email=user.email, password=user.password)
    )
    docs = await audit_documents(resources, "RevokeUserSessions", want=2)
    assert sorted(d["details"]["sessions_ended"] for d in docs) == [0, 3]
    assert all(d["table_name"] == "Sessions" for d in docs)
    missing = await failure(
        stub.RevokeUserSessions(
            pb.RevokeUserSessionsRequest(user_id=2_000_000), metadata=admin.metadata
        )
    )
    assert missing.reason == "USER_NOT_FOUND"


# --- ArchiveUser ----------------------------------------------------------------------------


async def test_archive_refuses_while_money_is_left_or_moving(channel: Any, resources: Any) -> None:
    admin = await create_admin(channel, resources)
    stub = admin_stub(channel)
    user = await register_user(channel)

    async def refusal() -> Any:
        return await failure(
            stub.ArchiveUser(
                pb.ArchiveUserRequest(user_id=user.user_id, reason="closure"),
                metadata=admin.metadata,
            )
        )

    await fund(resources, user.user_id, "5.00")
    money = await refusal()
    assert (money.code, money.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "WALLET_NOT_EMPTY")
    assert money.metadata["balance_minor"] == "500"
    async with resources.db.transaction() as conn:  # spend it: a wallet debit
        await conn.execute(
            text(
                "INSERT INTO transactions (user_id, category, txn_type, amount, source, status,"
                " payment_method) VALUES (:u, 'wallet', 'debit', 5, 'recharge', 'success',"
                " 'Wallet')"
            ),
            {"u": user.user_id},
        )
        pending = await conn.execute(
            text(
                "INSERT INTO transactions (user_id, category, txn_type, amount, source, status,"
                " payment_method) VALUES (:u, 'wallet', 'credit', 50, 'wallet_topup', 'pending',"
                " 'UPI') RETURNING txn_id"
            ),
            {"u": user.user_id},
        )
        pending_id = pending.scalar_one()
    paying = await refusal()
    assert (paying.code, paying.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PAYMENT_PENDING")
    plan_id = await make_plan(resources)
    async with resources.db.transaction() as conn:
        await conn.execute(
            text("UPDATE transactions SET status = 'failed' WHERE txn_id = :t"), {"t": pending_id}
        )
        await conn.execute(
            text(
                "INSERT INTO autopay (user_id, plan_id, status, phone_number)"
                " VALUES (:u, :p, 'enabled', :n)"
            ),
            {"u": user.user_id, "p": plan_id, "n": user.phone_number},
        )
    mandate = await refusal()
    assert (mandate.code, mandate.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "AUTOPAY_ACTIVE")
    # Nothing was half-written: still live, not archived, sessions untouched.
    assert await get_me(channel, user)
    assert not await rows(
        resources, "SELECT 1 FROM usersarchive WHERE user_id = :u", u=user.user_id
    )
    no_reason = await failure(
        stub.ArchiveUser(pb.ArchiveUserRequest(user_id=user.user_id), metadata=admin.metadata)
    )
    assert no_reason.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_archive_moves_the_user_and_keeps_the_ledger(channel: Any, resources: Any) -> None:
    admin = await create_admin(channel, resources)
    stub = admin_stub(channel)
    referrer = await register_user(channel)
    referral_code = (
        await rows(
            resources, "SELECT referral_code FROM users WHERE user_id = :u", u=referrer.user_id
        )
    )[0][0]
    user = await register_user(channel, name="Archie Ved", referral_code=referral_code)
    await fund(resources, user.user_id, "20.00")
    async with resources.db.transaction() as conn:
        await conn.execute(
            text(
                "INSERT INTO transactions (user_id, category, txn_type, amount, source, status,"
                " payment_method) VALUES (:u, 'wallet', 'debit', 20, 'recharge', 'success',"
                " 'Wallet')"
            ),
            {"u": user.user_id},
        )
    before = await rows(
        resources,
        "SELECT txn_id, amount, txn_type, balance_after FROM transactions WHERE user_id = :u"
        " ORDER BY txn_id",
        u=user.user_id,
    )
    reply = await stub.ArchiveUser(
        pb.ArchiveUserRequest(user_id=user.user_id, reason="customer closed the account"),
        metadata=admin.metadata,
    )
    archived = reply.user
    assert archived.user_id == user.user_id and archived.email == user.email
    assert archived.name == "Archie Ved" and archived.referred_by == referral_code
    assert archived.details.HasField("archived_at") and not archived.details.erased
    # The archive row is the profile as it was, without credentials.
    copy = await rows(
        resources,
        "SELECT email, phone_number, password_hash, status FROM usersarchive WHERE user_id = :u",
        u=user.user_id,
    )
    assert copy == [(user.email, user.phone_number, None, "active")]
    # The users row stays (the ledger's foreign keys) without personal data, blocked.
    left = await rows(
        resources,
        "SELECT name, email, phone_number, password_hash, status FROM users WHERE user_id = :u",
        u=user.user_id,
    )
    assert left == [(None, None, None, None, "blocked")]
    after = await rows(
        resources,
        "SELECT txn_id, amount, txn_type, balance_after FROM transactions WHERE user_id = :u"
        " ORDER BY txn_id",
        u=user.user_id,
    )
    assert after == before and len(after) == 2
    # Sessions ended; the token and the password stop working.
    assert (await failure(get_me(channel, user))).reason == "SESSION_ENDED"
    login = await failure(
        auth_stub(channel).Login(
            auth_service_pb2.LoginRequest(email=user.email, password=user.password)
        )
    )
    assert login.code == grpc.StatusCode.UNAUTHENTICATED
    # Gone from the operator's reads; every later change says why.
    for call in (
        stub.GetUser(pb.GetUserRequest(user_id=user.user_id), metadata=admin.metadata),
        stub.BlockUser(
            pb.BlockUserRequest(user_id=user.user_id, reason="x"), metadata=admin.metadata
        ),
        stub.ArchiveUser(
            pb.ArchiveUserRequest(user_id=user.user_id, reason="x"), metadata=admin.metadata
        ),
        stub.RevokeUserSessions(
            pb.RevokeUserSessionsRequest(user_id=user.user_id), metadata=admin.metadata
        ),
    ):
        error = await failure(call)
        assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "USER_ARCHIVED")
    listed = await stub.ListUsers(pb.ListUsersRequest(query=user.email), metadata=admin.metadata)
    assert not listed.users
    # The contacts are free again: the customer may sign up anew.
    again = await register_user(channel, email=user.email, phone_number=user.phone_number)
    assert again.user_id != user.user_id
    docs = await audit_documents(resources, "ArchiveUser")
    assert docs[0]["table_name"] == "UsersArchive" and docs[0]["action_type"] == "INSERT"
    assert docs[0]["details"]["user_id"] == user.user_id
    assert user.email not in str(docs[0]["details"])
    missing = await failure(
        stub.ArchiveUser(
            pb.ArchiveUserRequest(user_id=2_000_000, reason="x"), metadata=admin.metadata
        )
    )
    assert missing.reason == "USER_NOT_FOUND"


# --- RBAC -----------------------------------------------------------------------------------


def _calls(user_id: int) -> dict[str, Any]:
    return {
        "ListUsers": pb.ListUsersRequest(),
        "GetUser": pb.GetUserRequest(user_id=user_id),
        "BlockUser": pb.BlockUserRequest(user_id=user_id, reason="rbac"),
        "UnblockUser": pb.UnblockUserRequest(user_id=user_id),
        "RevokeUserSessions": pb.RevokeUserSessionsRequest(user_id=user_id),
        "ArchiveUser": pb.ArchiveUserRequest(user_id=user_id, reason="rbac"),
        "ExportUserData": pb.ExportUserDataRequest(user_id=user_id, reason="rbac"),
        "EraseUserData": pb.EraseUserDataRequest(user_id=user_id, reason="rbac"),
    }


async def _outcome(channel: Any, name: str, request: Any, actor: Actor | None) -> grpc.StatusCode:
    metadata = actor.metadata if actor else ()
    try:
        await getattr(admin_stub(channel), name)(request, metadata=metadata)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_rbac_per_role(channel: Any, resources: Any) -> None:
    """Support reads (ListUsers, GetUser) and nothing else; customers and service
    accounts nothing; anonymous callers are UNAUTHENTICATED. The Admin role does all
    (the other tests)."""
    support = await create_admin(channel, resources, role_name="Support")
    customer = await register_user(channel)
    service = await create_service(channel, resources, scopes=["recharges.write", "recharges.read"])
    target = await register_user(channel)
    reads = {"ListUsers", "GetUser"}
    for name, request in _calls(target.user_id).items():
        expected = grpc.StatusCode.OK if name in reads else grpc.StatusCode.PERMISSION_DENIED
        assert await _outcome(channel, name, request, support) == expected, name
        assert await _outcome(channel, name, request, customer) == grpc.StatusCode.PERMISSION_DENIED
        assert await _outcome(channel, name, request, service) == grpc.StatusCode.PERMISSION_DENIED
        assert await _outcome(channel, name, request, None) == grpc.StatusCode.UNAUTHENTICATED
    # Nothing changed for the target.
    assert await get_me(channel, target)
