"""AdminService CreateAdmin, ListAdmins, UpdateAdmin through the real server: TOTP
enrolment at the new admin's first login, the documented errors, the self and
last-manager guards, blocking that ends sessions, RBAC per role, audit without secrets,
and the create-admin command sharing CreateAdmin's code."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from sqlalchemy import func, select

from gencharge.v1 import admin_service_pb2 as pb
from gencharge.v1 import auth_service_pb2 as auth_pb
from gencharge.v1 import common_pb2, identity_pb2
from server.admin import flows as admin_flows
from server.core.schema import admins
from tests.admin.staff_helpers import (
    ADMIN_ROLE,
    SUPPORT_ROLE,
    Stub,
    audit_docs,
    mask,
    refused,
)
from tests.helpers.auth import (
    PASSWORD,
    Actor,
    admin_login,
    auth_stub,
    create_admin,
    create_service,
    next_phone,
    register_user,
)

ACTIVE = identity_pb2.ADMIN_STATUS_ACTIVE
BLOCKED = identity_pb2.ADMIN_STATUS_BLOCKED
DELETED = identity_pb2.ADMIN_STATUS_DELETED
INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> Stub:
    return Stub(channel)


@pytest.fixture
async def admin(channel: grpc.aio.Channel, resources: Any) -> Actor:
    return await create_admin(channel, resources)


def new_admin(
    role_id: int = SUPPORT_ROLE, pw: str = PASSWORD, **fields: Any
) -> pb.CreateAdminRequest:
    values: dict[str, Any] = {
        "name": "New Staff",
        "email": f"staff-{uuid.uuid4().hex[:8]}@example.com",
        "phone_number": next_phone(),
        "role_id": role_id,
        **fields,
    }
    return pb.CreateAdminRequest(admin=identity_pb2.Admin(**values), initial_password=pw)


async def _admin_count(resources: Any) -> int:
    async with resources.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(admins))).scalar_one())


async def _me(channel: grpc.aio.Channel, actor: Actor) -> identity_pb2.Admin:
    me = await auth_stub(channel).GetMe(auth_pb.GetMeRequest(), metadata=actor.metadata)
    return me.admin


async def test_created_admin_enrols_totp_at_first_login(
    stub: Stub, admin: Actor, channel: grpc.aio.Channel
) -> None:
    request = new_admin()
    created = await stub.CreateAdmin(request, metadata=admin.metadata)
    assert created.admin_id and created.status == ACTIVE
    assert (created.role_id, created.role_name) == (SUPPORT_ROLE, "Support")
    assert created.email == request.admin.email and not created.mfa_enabled
    # First login: password, then an MFA challenge that carries a new authenticator to
    # enrol (no session before the code); the helper enrols it and verifies a code.
    login = await auth_stub(channel).Login(
        auth_pb.LoginRequest(
            email=created.email,
            password=PASSWORD,
            principal_type=common_pb2.PRINCIPAL_TYPE_ADMIN,
        )
    )
    assert login.HasField("mfa_challenge") and not login.HasField("tokens")
    assert login.mfa_challenge.HasField("enrolment")
    staff = await admin_login(channel, Actor(kind="admin", access_token="", email=created.email))
    assert staff.totp_secret and staff.access_token
    me = await _me(channel, staff)
    assert me.admin_id == created.admin_id and me.mfa_enabled
    # A Support admin reads users but may not manage staff.
    details = await refused(stub.CreateAdmin(new_admin(), metadata=staff.metadata))
    assert (details.code, details.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "MISSING_PERMISSION",
    )


async def test_create_admin_errors_write_nothing(stub: Stub, admin: Actor, resources: Any) -> None:
    md = admin.metadata
    taken = await stub.CreateAdmin(new_admin(), metadata=md)
    before = await _admin_count(resources)

    weak = await refused(stub.CreateAdmin(new_admin(pw="password123"), metadata=md))
    assert weak.code == INVALID and "initial_password" in weak.field_violations
    short = await refused(stub.CreateAdmin(new_admin(pw="short"), metadata=md))
    assert short.code == INVALID and "at least" in short.field_violations["initial_password"]
    bad = await refused(
        stub.CreateAdmin(new_admin(email="not-an-address", phone_number="12345"), metadata=md)
    )
    assert bad.code == INVALID
    assert {"admin.email", "admin.phone_number"} <= set(bad.field_violations)
    no_role = await refused(stub.CreateAdmin(new_admin(role_id=0), metadata=md))
    assert no_role.code == INVALID and "admin.role_id" in no_role.field_violations
    missing = await refused(stub.CreateAdmin(new_admin(role_id=9999), metadata=md))
    assert missing.code == grpc.StatusCode.NOT_FOUND
    email = await refused(stub.CreateAdmin(new_admin(email=taken.email.upper()), metadata=md))
    assert (email.code, email.reason) == (grpc.StatusCode.ALREADY_EXISTS, "CONTACT_TAKEN")
    assert email.metadata == {"field": "email"}
    phone = await refused(
        stub.CreateAdmin(new_admin(phone_number=f"+91 {taken.phone_number}"), metadata=md)
    )
    assert (phone.code, phone.metadata) == (
        grpc.StatusCode.ALREADY_EXISTS,
        {"field": "phone_number"},
    )
    assert await _admin_count(resources) == before


async def test_list_admins_by_name_with_filters_and_pages(stub: Stub, admin: Actor) -> None:
    md = admin.metadata
    made = {}
    for name, role in (("Carol", SUPPORT_ROLE), ("Alice", SUPPORT_ROLE), ("Bob", ADMIN_ROLE)):
        made[name] = await stub.CreateAdmin(new_admin(role_id=role, name=name), metadata=md)
    await stub.UpdateAdmin(
        pb.UpdateAdminRequest(
            admin=identity_pb2.Admin(admin_id=made["Carol"].admin_id, status=BLOCKED),
            update_mask=mask("status"),
        ),
        metadata=md,
    )
    names: list[str] = []
    token = ""
    while True:
        page = await stub.ListAdmins(
            pb.ListAdminsRequest(page_size=2, page_token=token), metadata=md
        )
        assert len(page.admins) <= 2
        names += [a.name for a in page.admins]
        token = page.next_page_token
        if not token:
            break
    assert names == sorted(names) and {"Alice", "Bob", "Carol", "Test Admin"} <= set(names)

    support = await stub.ListAdmins(pb.ListAdminsRequest(role_id=SUPPORT_ROLE), metadata=md)
    assert [a.name for a in support.admins] == ["Alice", "Carol"]
    active_support = await stub.ListAdmins(
        pb.ListAdminsRequest(role_id=SUPPORT_ROLE, status=ACTIVE), metadata=md
    )
    assert [a.name for a in active_support.admins] == ["Alice"]
    blocked = await stub.ListAdmins(pb.ListAdminsRequest(status=BLOCKED), metadata=md)
    assert [a.admin_id for a in blocked.admins] == [made["Carol"].admin_id]

    first = await stub.ListAdmins(pb.ListAdminsRequest(page_size=1), metadata=md)
    other = await refused(
        stub.ListAdmins(
            pb.ListAdminsRequest(page_size=1, page_token=first.next_page_token, status=ACTIVE),
            metadata=md,
        )
    )
    assert other.code == INVALID and "page_token" in other.field_violations
    unknown = await refused(stub.ListAdmins(pb.ListAdminsRequest(status=77), metadata=md))
    assert unknown.code == INVALID and "status" in unknown.field_violations


async def test_update_admin_fields_and_blocking_ends_sessions(
    stub: Stub, admin: Actor, channel: grpc.aio.Channel
) -> None:
    md = admin.metadata
    created = await stub.CreateAdmin(new_admin(), metadata=md)
    staff = await admin_login(channel, Actor(kind="admin", access_token="", email=created.email))
    phone = next_phone()
    updated = await stub.UpdateAdmin(
        pb.UpdateAdminRequest(
            admin=identity_pb2.Admin(
                admin_id=created.admin_id, name="  Renamed  ", phone_number=phone, email="x@y.z"
            ),
            update_mask=mask("name", "phone_number"),
        ),
        metadata=md,
    )
    assert (updated.name, updated.phone_number, updated.email) == ("Renamed", phone, created.email)
    promoted = await stub.UpdateAdmin(
        pb.UpdateAdminRequest(
            admin=identity_pb2.Admin(admin_id=created.admin_id, role_id=ADMIN_ROLE),
            update_mask=mask("role_id"),
        ),
        metadata=md,
    )
    assert (promoted.role_id, promoted.role_name) == (ADMIN_ROLE, "Admin")

    blocked = await stub.UpdateAdmin(
        pb.UpdateAdminRequest(
            admin=identity_pb2.Admin(admin_id=created.admin_id, status=BLOCKED),
            update_mask=mask("status"),
        ),
        metadata=md,
    )
    assert blocked.status == BLOCKED
    # The blocked admin's session ended: their token stops at once on this server.
    ended = await refused(auth_stub(channel).GetMe(auth_pb.GetMeRequest(), metadata=staff.metadata))
    assert (ended.code, ended.reason) == (grpc.StatusCode.UNAUTHENTICATED, "SESSION_ENDED")
    login = await refused(
        auth_stub(channel).Login(
            auth_pb.LoginRequest(
                email=created.email,
                password=PASSWORD,
                principal_type=common_pb2.PRINCIPAL_TYPE_ADMIN,
            )
        )
    )
    assert login.reason == "ACCOUNT_BLOCKED"
    await stub.UpdateAdmin(
        pb.UpdateAdminRequest(
            admin=identity_pb2.Admin(admin_id=created.admin_id, status=ACTIVE),
            update_mask=mask("status"),
        ),
        metadata=md,
    )
    again = await admin_login(channel, staff)
    assert (await _me(channel, again)).status == ACTIVE


async def test_update_admin_errors(stub: Stub, admin: Actor) -> None:
    md = admin.metadata
    one = await stub.CreateAdmin(new_admin(), metadata=md)
    two = await stub.CreateAdmin(new_admin(), metadata=md)

    def update(mask_paths: tuple[str, ...], **fields: Any) -> Any:
        fields.setdefault("admin_id", one.admin_id)
        return stub.UpdateAdmin(
            pb.UpdateAdminRequest(
                admin=identity_pb2.Admin(**fields), update_mask=mask(*mask_paths)
            ),
            metadata=md,
        )

    for paths in ((), ("email",), ("name", "password_hash")):
        got = await refused(update(paths, name="X"))
        assert got.code == INVALID and "update_mask" in got.field_violations, paths
    assert (await refused(update(("name",), name="  "))).field_violations.keys() == {"admin.name"}
    assert "admin.status" in (await refused(update(("status",)))).field_violations
    assert (
        "admin.phone_number"
        in (await refused(update(("phone_number",), phone_number="123"))).field_violations
    )
    assert (await refused(update(("role_id",), role_id=9999))).code == grpc.StatusCode.NOT_FOUND
    assert (await refused(update(("name",), admin_id=99999, name="X"))).code == (
        grpc.StatusCode.NOT_FOUND
    )
    taken = await refused(update(("phone_number",), phone_number=two.phone_number))
    assert (taken.code, taken.reason) == (grpc.StatusCode.ALREADY_EXISTS, "CONTACT_TAKEN")
    # Clearing the phone number is allowed.
    cleared = await update(("phone_number",), phone_number="")
    assert cleared.phone_number == ""


async def test_nobody_changes_their_own_role_or_blocks_themselves(
    stub: Stub, admin: Actor, channel: grpc.aio.Channel
) -> None:
    me = await _me(channel, admin)

    def update_me(paths: tuple[str, ...], **fields: Any) -> Any:
        return stub.UpdateAdmin(
            pb.UpdateAdminRequest(
                admin=identity_pb2.Admin(admin_id=me.admin_id, **fields),
                update_mask=mask(*paths),
            ),
            metadata=admin.metadata,
        )

    for role in (SUPPORT_ROLE, 2):
        got = await refused(update_me(("role_id",), role_id=role))
        assert (got.code, got.reason) == (PRECONDITION, "SELF_ROLE_CHANGE")
    for status in (BLOCKED, DELETED):
        got = await refused(update_me(("status",), status=status))
        assert (got.code, got.reason) == (PRECONDITION, "SELF_STATUS_CHANGE")
    # What is not a change of power is fine: the own name, the same role, staying active.
    same = await update_me(
        ("name", "role_id", "status"), name="Me", role_id=ADMIN_ROLE, status=ACTIVE
    )
    assert (same.name, same.role_id, same.status) == ("Me", ADMIN_ROLE, ACTIVE)


async def test_the_last_manager_of_roles_cannot_be_removed(
    stub: Stub, admin: Actor, channel: grpc.aio.Channel
) -> None:
    """A role that may manage admins but not roles; its holder tries to remove the only
    admin who can manage roles (block, delete or demote): refused, nothing changes."""
    md = admin.metadata
    me = await _me(channel, admin)
    role = await stub.CreateRole(
        pb.CreateRoleRequest(role=pb.Role(role_name="Staff manager")), metadata=md
    )
    edit_admins = await stub.CreatePermission(
        pb.CreatePermissionRequest(
            permission=pb.Permission(resource="Admins", read=True, edit=True)
        ),
        metadata=md,
    )
    await stub.GrantPermission(
        pb.GrantPermissionRequest(role_id=role.role_id, permission_id=edit_admins.permission_id),
        metadata=md,
    )
    created = await stub.CreateAdmin(new_admin(role_id=role.role_id), metadata=md)
    manager = await admin_login(channel, Actor(kind="admin", access_token="", email=created.email))
    for paths, fields in (
        (("status",), {"status": BLOCKED}),
        (("status",), {"status": DELETED}),
        (("role_id",), {"role_id": SUPPORT_ROLE}),
    ):
        got = await refused(
            Stub(channel).UpdateAdmin(
                pb.UpdateAdminRequest(
                    admin=identity_pb2.Admin(admin_id=me.admin_id, **fields),
                    update_mask=mask(*paths),
                ),
                metadata=manager.metadata,
            )
        )
        assert (got.code, got.reason, got.metadata) == (
            PRECONDITION,
            "LAST_MANAGER",
            {"resource": "Roles"},
        ), fields
    still = await _me(channel, admin)
    assert (still.status, still.role_id) == (ACTIVE, ADMIN_ROLE)
    # With a second admin able to manage roles, the first may be blocked.
    await stub.CreateAdmin(new_admin(role_id=ADMIN_ROLE), metadata=md)
    blocked = await Stub(channel).UpdateAdmin(
        pb.UpdateAdminRequest(
            admin=identity_pb2.Admin(admin_id=me.admin_id, status=BLOCKED),
            update_mask=mask("status"),
        ),
        metadata=manager.metadata,
    )
    assert blocked.status == BLOCKED


async def test_rbac_per_role(stub: Stub, channel: grpc.aio.Channel, resources: Any) -> None:
    support = await create_admin(channel, resources, role_name="Support")
    customer = await register_user(channel)
    service = await create_service(channel, resources)
    update = pb.UpdateAdminRequest(
        admin=identity_pb2.Admin(admin_id=1, name="X"), update_mask=mask("name")
    )
    for who in (support, customer, service):
        for call in (
            stub.CreateAdmin(new_admin(), metadata=who.metadata),
            stub.ListAdmins(pb.ListAdminsRequest(), metadata=who.metadata),
            stub.UpdateAdmin(update, metadata=who.metadata),
        ):
            got = await refused(call)
            assert got.code == grpc.StatusCode.PERMISSION_DENIED, (who.kind, got)
    for call in (
        stub.CreateAdmin(new_admin()),
        stub.ListAdmins(pb.ListAdminsRequest()),
        stub.UpdateAdmin(update),
    ):
        assert (await refused(call)).code == grpc.StatusCode.UNAUTHENTICATED


async def test_changes_are_audited_without_secrets(
    stub: Stub, admin: Actor, channel: grpc.aio.Channel, resources: Any
) -> None:
    md = admin.metadata
    me = await _me(channel, admin)
    created = await stub.CreateAdmin(new_admin(), metadata=md)
    await stub.UpdateAdmin(
        pb.UpdateAdminRequest(
            admin=identity_pb2.Admin(admin_id=created.admin_id, status=BLOCKED, name="N"),
            update_mask=mask("status", "name"),
        ),
        metadata=md,
    )
    (insert,) = await audit_docs(resources, "CreateAdmin", 1)
    assert (insert["table_name"], insert["action_type"], insert["user_id"]) == (
        "Admins",
        "INSERT",
        f"admin:{me.admin_id}",
    )
    assert insert["details"]["admin_id"] == created.admin_id
    assert insert["details"]["role_id"] == SUPPORT_ROLE
    (change,) = await audit_docs(resources, "UpdateAdmin", 1)
    assert change["details"]["fields"] == ["name", "status"]
    assert change["details"]["status"] == "blocked"
    for doc in (insert, change):
        text = str(doc)
        assert PASSWORD not in text and "argon2" not in text and "password" not in text


async def test_create_admin_command_shares_the_rpc_rules(
    stub: Stub, admin: Actor, resources: Any
) -> None:
    """The bootstrap admin and ``gencharge create-admin`` (server/admin/flows.py
    ensure_admin) run CreateAdmin's checks and insert."""
    with pytest.raises(ValueError, match="password"):
        await admin_flows.ensure_admin(
            resources.db, email="cli@example.com", name="Cli", password="password123"
        )
    with pytest.raises(ValueError, match="phone_number"):
        await admin_flows.ensure_admin(
            resources.db, email="cli@example.com", name="Cli", password=PASSWORD, phone_number="1"
        )
    with pytest.raises(ValueError, match="not found"):
        await admin_flows.ensure_admin(
            resources.db, email="cli@example.com", name="Cli", password=PASSWORD, role_name="Nope"
        )
    assert await admin_flows.ensure_admin(
        resources.db, email="CLI@example.com", name="Cli", password=PASSWORD, role_name="support"
    )
    # Existing: left untouched (the bootstrap admin on every start).
    assert not await admin_flows.ensure_admin(
        resources.db, email="cli@example.com", name="Other", password=PASSWORD
    )
    listed = await stub.ListAdmins(
        pb.ListAdminsRequest(role_id=SUPPORT_ROLE), metadata=admin.metadata
    )
    (cli,) = [a for a in listed.admins if a.email == "cli@example.com"]
    assert (cli.name, cli.role_name, cli.mfa_enabled) == ("Cli", "Support", False)
