"""AdminService service accounts through the real server: the secret shown once, scopes
checked, lists, and DisableServiceAccount stopping an issued token (at once on this
server, within ``auth_cache_seconds`` on another replica), idempotent; RBAC per role
and audit without secrets. The ``gencharge`` commands share these flows
(tests/ops/test_cli.py)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from sqlalchemy import select

from gencharge.v1 import admin_service_pb2 as pb
from gencharge.v1 import auth_service_pb2 as auth_pb
from gencharge.v1 import identity_pb2
from server.auth.scopes import RECHARGES_READ, RECHARGES_WRITE
from server.core.schema import service_accounts
from tests.admin.staff_helpers import SUPPORT_ROLE, Stub, audit_docs, refused, replica
from tests.helpers.auth import Actor, auth_stub, create_admin, create_service, register_user
from tests.helpers.clock import FakeClock

ACTIVE = identity_pb2.SERVICE_ACCOUNT_STATUS_ACTIVE
DISABLED = identity_pb2.SERVICE_ACCOUNT_STATUS_DISABLED
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> Stub:
    return Stub(channel)


@pytest.fixture
async def admin(channel: grpc.aio.Channel, resources: Any) -> Actor:
    return await create_admin(channel, resources)


def new_account(
    name: str, *scopes: str, role_id: int = 0, description: str = ""
) -> pb.CreateServiceAccountRequest:
    return pb.CreateServiceAccountRequest(
        service_account=identity_pb2.ServiceAccount(
            name=name,
            scopes=list(scopes),
            role_id=role_id,
            client_id="ignored",
            description=description,
        )
    )


async def _token(channel: grpc.aio.Channel, client_id: str, secret: str) -> Actor:
    reply = await auth_stub(channel).IssueServiceToken(
        auth_pb.IssueServiceTokenRequest(client_id=client_id, client_secret=secret)
    )
    return Actor(kind="service", access_token=reply.access_token, email=client_id)


async def test_create_shows_the_secret_once(
    stub: Stub, admin: Actor, channel: grpc.aio.Channel, resources: Any
) -> None:
    md = admin.metadata
    me = await auth_stub(channel).GetMe(auth_pb.GetMeRequest(), metadata=md)
    created = await stub.CreateServiceAccount(
        new_account(
            " billing sync ", RECHARGES_WRITE, RECHARGES_READ, description=" Billing batch job "
        ),
        metadata=md,
    )
    account, secret = created.service_account, created.client_secret
    assert secret.startswith("gcs_") and account.client_id.startswith("svc_")
    assert (account.name, account.status, account.role_name) == ("billing sync", ACTIVE, "Service")
    assert list(account.scopes) == [RECHARGES_READ, RECHARGES_WRITE]
    assert account.description == "Billing batch job"
    assert account.created_by == me.admin.admin_id
    async with resources.engine.connect() as conn:
        stored = (
            await conn.execute(
                select(service_accounts.c.secret_hash).where(
                    service_accounts.c.client_id == account.client_id
                )
            )
        ).scalar_one()
    assert stored.startswith("$argon2id$") and secret not in stored
    listed = await stub.ListServiceAccounts(pb.ListServiceAccountsRequest(), metadata=md)
    assert [a for a in listed.service_accounts if a.client_id == account.client_id] == [account]
    assert secret not in str(listed)
    service = await _token(channel, account.client_id, secret)
    who = await auth_stub(channel).GetMe(auth_pb.GetMeRequest(), metadata=service.metadata)
    assert who.service_account.client_id == account.client_id

    (doc,) = await audit_docs(resources, "CreateServiceAccount", 1)
    assert (doc["table_name"], doc["action_type"]) == ("ServiceAccounts", "INSERT")
    assert doc["details"]["client_id"] == account.client_id
    assert doc["details"]["scopes"] == [RECHARGES_READ, RECHARGES_WRITE]
    assert secret not in str(doc) and "argon2" not in str(doc)


async def test_create_errors(stub: Stub, admin: Actor) -> None:
    md = admin.metadata
    typo = await refused(stub.CreateServiceAccount(new_account("x", "recharge.write"), metadata=md))
    assert typo.code == INVALID
    assert RECHARGES_WRITE in typo.field_violations["service_account.scopes"]
    empty = await refused(stub.CreateServiceAccount(new_account("  "), metadata=md))
    assert empty.code == INVALID and "service_account.name" in empty.field_violations
    long = await refused(
        stub.CreateServiceAccount(new_account("z", description="d" * 501), metadata=md)
    )
    assert long.code == INVALID and "service_account.description" in long.field_violations
    role = await refused(stub.CreateServiceAccount(new_account("y", role_id=999), metadata=md))
    assert role.code == grpc.StatusCode.NOT_FOUND
    await stub.CreateServiceAccount(new_account("Partner"), metadata=md)
    taken = await refused(stub.CreateServiceAccount(new_account("partner"), metadata=md))
    assert (taken.code, taken.reason) == (grpc.StatusCode.ALREADY_EXISTS, "NAME_TAKEN")
    # A role other than Service may be chosen.
    support = await stub.CreateServiceAccount(
        new_account("reader", role_id=SUPPORT_ROLE), metadata=md
    )
    assert support.service_account.role_name == "Support"


async def test_list_by_name_with_status_and_pages(stub: Stub, admin: Actor) -> None:
    md = admin.metadata
    made = {}
    for name in ("charlie", "alpha", "bravo"):
        made[name] = (
            await stub.CreateServiceAccount(new_account(name), metadata=md)
        ).service_account
    await stub.DisableServiceAccount(
        pb.DisableServiceAccountRequest(service_account_id=made["bravo"].service_account_id),
        metadata=md,
    )
    names: list[str] = []
    token = ""
    while True:
        page = await stub.ListServiceAccounts(
            pb.ListServiceAccountsRequest(page_size=2, page_token=token), metadata=md
        )
        names += [a.name for a in page.service_accounts]
        token = page.next_page_token
        if not token:
            break
    assert names == ["alpha", "bravo", "charlie"]
    active = await stub.ListServiceAccounts(
        pb.ListServiceAccountsRequest(status=ACTIVE), metadata=md
    )
    assert [a.name for a in active.service_accounts] == ["alpha", "charlie"]
    disabled = await stub.ListServiceAccounts(
        pb.ListServiceAccountsRequest(status=DISABLED), metadata=md
    )
    assert [a.name for a in disabled.service_accounts] == ["bravo"]
    first = await stub.ListServiceAccounts(pb.ListServiceAccountsRequest(page_size=1), metadata=md)
    other = await refused(
        stub.ListServiceAccounts(
            pb.ListServiceAccountsRequest(
                page_size=1, page_token=first.next_page_token, status=ACTIVE
            ),
            metadata=md,
        )
    )
    assert other.code == INVALID and "page_token" in other.field_violations


async def test_disable_stops_issued_tokens_within_the_cache_window(
    stub: Stub,
    admin: Actor,
    channel: grpc.aio.Channel,
    resources: Any,
    server_clock: FakeClock,
) -> None:
    window = resources.settings.auth_cache_seconds + 1.0
    md = admin.metadata
    created = await stub.CreateServiceAccount(new_account("to disable"), metadata=md)
    account, secret = created.service_account, created.client_secret
    service = await _token(channel, account.client_id, secret)
    other_clock = FakeClock()
    async with replica(resources, other_clock) as other:

        async def works(on: grpc.aio.Channel) -> bool:
            try:
                await auth_stub(on).GetMe(auth_pb.GetMeRequest(), metadata=service.metadata)
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error
                return False
            return True

        assert await works(channel) and await works(other)
        request = pb.DisableServiceAccountRequest(service_account_id=account.service_account_id)
        disabled = await stub.DisableServiceAccount(request, metadata=md)
        assert disabled.status == DISABLED and disabled.client_id == account.client_id
        assert not await works(channel)  # this server dropped its cached state
        assert await works(other)  # the replica's cache: the clock decides
        other_clock.advance(window)
        assert not await works(other)
    # No new token either, and the replay answers the same (idempotent).
    no_token = await refused(
        auth_stub(channel).IssueServiceToken(
            auth_pb.IssueServiceTokenRequest(client_id=account.client_id, client_secret=secret)
        )
    )
    assert no_token.code == grpc.StatusCode.UNAUTHENTICATED
    again = await stub.DisableServiceAccount(request, metadata=md)
    assert again == disabled
    docs = await audit_docs(resources, "DisableServiceAccount", 2)
    assert sorted(d["details"]["changed"] for d in docs) == [False, True]
    assert all(d["details"]["status"] == "disabled" for d in docs)
    missing = await refused(
        stub.DisableServiceAccount(
            pb.DisableServiceAccountRequest(service_account_id=99999), metadata=md
        )
    )
    assert missing.code == grpc.StatusCode.NOT_FOUND


async def test_rbac_per_role(stub: Stub, channel: grpc.aio.Channel, resources: Any) -> None:
    support = await create_admin(channel, resources, role_name="Support")
    customer = await register_user(channel)
    service = await create_service(channel, resources, [RECHARGES_WRITE])
    calls = (
        ("CreateServiceAccount", new_account("nope")),
        ("ListServiceAccounts", pb.ListServiceAccountsRequest()),
        ("DisableServiceAccount", pb.DisableServiceAccountRequest(service_account_id=1)),
    )
    for name, request in calls:
        method = getattr(stub, name)
        for who in (support, customer, service):
            got = await refused(method(request, metadata=who.metadata))
            assert got.code == grpc.StatusCode.PERMISSION_DENIED, (name, who.kind, got)
        assert (await refused(method(request))).code == grpc.StatusCode.UNAUTHENTICATED
