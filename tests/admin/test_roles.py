"""AdminService roles and permissions through the real server: lists, creation, grants
and revocations reaching the RBAC layer (at once on the server that made them, within
``auth_cache_seconds`` on another replica), the guard that keeps someone able to manage
roles and admins (also under concurrent revocations), RBAC per role and audit."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from gencharge.v1 import admin_service_pb2 as pb
from server.ops.seed.reference import PERMISSIONS, ROLE_PERMISSIONS
from tests.admin.staff_helpers import ADMIN_ROLE, SUPPORT_ROLE, Stub, audit_docs, refused, replica
from tests.helpers.auth import Actor, create_admin, create_service, register_user
from tests.helpers.clock import FakeClock

INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED
#: Seeded full permissions of the Admin role on Admins and Roles.
ADMINS_FULL, ROLES_FULL = 5, 6


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> Stub:
    return Stub(channel)


@pytest.fixture
async def admin(channel: grpc.aio.Channel, resources: Any) -> Actor:
    return await create_admin(channel, resources)


async def test_list_and_create_roles(stub: Stub, admin: Actor) -> None:
    md = admin.metadata
    first = await stub.ListRoles(pb.ListRolesRequest(page_size=3), metadata=md)
    assert [r.role_name for r in first.roles] == ["Admin", "User", "Support"]
    rest = await stub.ListRoles(
        pb.ListRolesRequest(page_size=3, page_token=first.next_page_token), metadata=md
    )
    assert [r.role_name for r in rest.roles] == ["Service"] and not rest.next_page_token

    role = await stub.CreateRole(
        pb.CreateRoleRequest(role=pb.Role(role_name=" Auditor ", description="reads the log")),
        metadata=md,
    )
    assert (role.role_name, role.description) == ("Auditor", "reads the log") and role.role_id
    again = await refused(
        stub.CreateRole(pb.CreateRoleRequest(role=pb.Role(role_name="auditor")), metadata=md)
    )
    assert (again.code, again.reason) == (grpc.StatusCode.ALREADY_EXISTS, "ROLE_EXISTS")
    empty = await refused(stub.CreateRole(pb.CreateRoleRequest(role=pb.Role()), metadata=md))
    assert empty.code == INVALID and "role.role_name" in empty.field_violations
    listed = await stub.ListRoles(pb.ListRolesRequest(), metadata=md)
    assert listed.roles[-1] == role


async def test_list_and_create_permissions(stub: Stub, admin: Actor) -> None:
    md = admin.metadata
    every = await stub.ListPermissions(pb.ListPermissionsRequest(page_size=200), metadata=md)
    ids = [p.permission_id for p in every.permissions]
    assert ids == sorted(ids) == [p.permission_id for p in PERMISSIONS]
    support = await stub.ListPermissions(
        pb.ListPermissionsRequest(role_id=SUPPORT_ROLE), metadata=md
    )
    seeded = sorted(g.permission_id for g in ROLE_PERMISSIONS if g.role_id == SUPPORT_ROLE)
    assert [p.permission_id for p in support.permissions] == seeded == [2, *range(19, 28)]
    paged = await stub.ListPermissions(
        pb.ListPermissionsRequest(role_id=SUPPORT_ROLE, page_size=4), metadata=md
    )
    other = await refused(
        stub.ListPermissions(
            pb.ListPermissionsRequest(page_size=4, page_token=paged.next_page_token),
            metadata=md,
        )
    )
    assert other.code == INVALID and "page_token" in other.field_violations
    missing = await refused(
        stub.ListPermissions(pb.ListPermissionsRequest(role_id=999), metadata=md)
    )
    assert missing.code == grpc.StatusCode.NOT_FOUND

    created = await stub.CreatePermission(
        pb.CreatePermissionRequest(
            permission=pb.Permission(resource="AuditLog", read=True, permission_id=77)
        ),
        metadata=md,
    )
    # After the seeded ids; the output-only id is ignored.
    assert created.permission_id == max(ids) + 1
    assert (created.resource, created.read, created.write, created.edit) == (
        "AuditLog",
        True,
        False,
        False,
    )
    unknown = await refused(
        stub.CreatePermission(
            pb.CreatePermissionRequest(permission=pb.Permission(resource="auditlog", read=True)),
            metadata=md,
        )
    )
    assert unknown.code == INVALID
    assert "AuditLog" in unknown.field_violations["permission.resource"]
    nothing = await refused(
        stub.CreatePermission(
            pb.CreatePermissionRequest(permission=pb.Permission(resource="Users")), metadata=md
        )
    )
    assert nothing.code == INVALID and "permission" in nothing.field_violations


async def test_grant_and_revoke_reach_rbac_within_the_cache_window(
    stub: Stub,
    admin: Actor,
    channel: grpc.aio.Channel,
    resources: Any,
    server_clock: FakeClock,
) -> None:
    """A Support admin gains ListAdmins with a grant and loses it with the revocation: at
    once on this server (it drops its cached matrix), and on another replica once its
    cache is ``auth_cache_seconds`` old (stepped on its clock, not raced)."""
    window = resources.settings.auth_cache_seconds + 1.0
    md = admin.metadata
    support = await create_admin(channel, resources, role_name="Support")
    read_admins = await stub.CreatePermission(
        pb.CreatePermissionRequest(permission=pb.Permission(resource="Admins", read=True)),
        metadata=md,
    )
    grant = pb.GrantPermissionRequest(role_id=SUPPORT_ROLE, permission_id=read_admins.permission_id)
    other_clock = FakeClock()
    async with replica(resources, other_clock) as other:

        async def lists(on: grpc.aio.Channel) -> bool:
            try:
                await Stub(on).ListAdmins(pb.ListAdminsRequest(), metadata=support.metadata)
            except grpc.aio.AioRpcError as error:
                assert error.code() == DENIED, error
                return False
            return True

        assert not await lists(channel) and not await lists(other)
        link = await stub.GrantPermission(grant, metadata=md)
        assert (link.role_id, link.permission_id) == (SUPPORT_ROLE, read_admins.permission_id)
        assert await lists(channel)  # the granting server: at once
        assert not await lists(other)  # the replica: its cached matrix
        other_clock.advance(window)
        assert await lists(other)

        await stub.RevokePermission(
            pb.RevokePermissionRequest(
                role_id=SUPPORT_ROLE, permission_id=read_admins.permission_id
            ),
            metadata=md,
        )
        assert not await lists(channel)
        assert await lists(other)  # still cached
        other_clock.advance(window)
        assert not await lists(other)


async def test_grant_and_revoke_errors(
    stub: Stub, admin: Actor, channel: grpc.aio.Channel, resources: Any
) -> None:
    md = admin.metadata

    def grant(role_id: int, permission_id: int) -> Any:
        return stub.GrantPermission(
            pb.GrantPermissionRequest(role_id=role_id, permission_id=permission_id), metadata=md
        )

    def revoke(role_id: int, permission_id: int) -> Any:
        return stub.RevokePermission(
            pb.RevokePermissionRequest(role_id=role_id, permission_id=permission_id), metadata=md
        )

    assert (await refused(grant(999, 1))).code == grpc.StatusCode.NOT_FOUND
    assert (await refused(grant(SUPPORT_ROLE, 999))).code == grpc.StatusCode.NOT_FOUND
    twice = await refused(grant(SUPPORT_ROLE, 19))
    assert (twice.code, twice.reason) == (grpc.StatusCode.ALREADY_EXISTS, "ALREADY_GRANTED")
    own = await refused(grant(ADMIN_ROLE, 19))
    assert (own.code, own.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "OWN_ROLE")
    absent = await refused(revoke(SUPPORT_ROLE, ADMINS_FULL))
    assert (absent.code, absent.reason) == (grpc.StatusCode.NOT_FOUND, "NOT_GRANTED")
    # The Admin role is the only one that may edit roles and admins: revoking either
    # would lock every admin out of role management.
    for permission_id, resource in ((ROLES_FULL, "Roles"), (ADMINS_FULL, "Admins")):
        last = await refused(revoke(ADMIN_ROLE, permission_id))
        assert (last.code, last.reason, last.metadata) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "LAST_MANAGER",
            {"resource": resource},
        )
    listed = await stub.ListPermissions(pb.ListPermissionsRequest(role_id=ADMIN_ROLE), metadata=md)
    assert {ADMINS_FULL, ROLES_FULL} <= {p.permission_id for p in listed.permissions}


async def test_concurrent_revocations_cannot_both_pass_the_last_manager_check(
    stub: Stub, admin: Actor, channel: grpc.aio.Channel, resources: Any
) -> None:
    """Two roles may edit roles (each held by an active admin); both revocations run at
    once. Each alone would pass the check; together they would leave nobody, so exactly
    one succeeds (the advisory lock serialises them)."""
    md = admin.metadata
    keeper = await stub.CreateRole(
        pb.CreateRoleRequest(role=pb.Role(role_name="Keeper")), metadata=md
    )
    for permission_id in (ROLES_FULL, ADMINS_FULL):
        await stub.GrantPermission(
            pb.GrantPermissionRequest(role_id=keeper.role_id, permission_id=permission_id),
            metadata=md,
        )
    await create_admin(channel, resources, role_name="Keeper")
    results = await asyncio.gather(
        *(
            stub.RevokePermission(
                pb.RevokePermissionRequest(role_id=role_id, permission_id=ROLES_FULL),
                metadata=md,
            )
            for role_id in (ADMIN_ROLE, keeper.role_id)
        ),
        return_exceptions=True,
    )
    failures = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(failures) == 1, results
    assert failures[0].code() == grpc.StatusCode.FAILED_PRECONDITION
    holders = []
    for role_id in (ADMIN_ROLE, keeper.role_id):
        listed = await stub.ListPermissions(pb.ListPermissionsRequest(role_id=role_id), metadata=md)
        if ROLES_FULL in {p.permission_id for p in listed.permissions}:
            holders.append(role_id)
    assert len(holders) == 1, holders


async def test_rbac_per_role(stub: Stub, channel: grpc.aio.Channel, resources: Any) -> None:
    support = await create_admin(channel, resources, role_name="Support")
    customer = await register_user(channel)
    service = await create_service(channel, resources)
    calls = (
        ("ListRoles", pb.ListRolesRequest()),
        ("CreateRole", pb.CreateRoleRequest(role=pb.Role(role_name="X"))),
        ("ListPermissions", pb.ListPermissionsRequest()),
        (
            "CreatePermission",
            pb.CreatePermissionRequest(permission=pb.Permission(resource="Users", read=True)),
        ),
        ("GrantPermission", pb.GrantPermissionRequest(role_id=SUPPORT_ROLE, permission_id=5)),
        ("RevokePermission", pb.RevokePermissionRequest(role_id=SUPPORT_ROLE, permission_id=19)),
    )
    for name, request in calls:
        method = getattr(stub, name)
        for who in (support, customer, service):
            got = await refused(method(request, metadata=who.metadata))
            assert got.code == DENIED, (name, who.kind, got)
        assert (await refused(method(request))).code == grpc.StatusCode.UNAUTHENTICATED


async def test_changes_are_audited(stub: Stub, admin: Actor, resources: Any) -> None:
    md = admin.metadata
    role = await stub.CreateRole(
        pb.CreateRoleRequest(role=pb.Role(role_name="Audited")), metadata=md
    )
    permission = await stub.CreatePermission(
        pb.CreatePermissionRequest(permission=pb.Permission(resource="Reports", read=True)),
        metadata=md,
    )
    link = await stub.GrantPermission(
        pb.GrantPermissionRequest(role_id=role.role_id, permission_id=permission.permission_id),
        metadata=md,
    )
    await stub.RevokePermission(
        pb.RevokePermissionRequest(role_id=role.role_id, permission_id=permission.permission_id),
        metadata=md,
    )
    expected = (
        ("CreateRole", "Roles", "INSERT", {"role_id": role.role_id, "role_name": "Audited"}),
        (
            "CreatePermission",
            "Permissions",
            "INSERT",
            {"permission_id": permission.permission_id, "resource": "Reports", "read": True},
        ),
        ("GrantPermission", "RolePermissions", "INSERT", {"id": link.id}),
        ("RevokePermission", "RolePermissions", "DELETE", {"id": link.id}),
    )
    for rpc, table, action, details in expected:
        (doc,) = await audit_docs(resources, rpc, 1)
        assert (doc["table_name"], doc["action_type"]) == (table, action), rpc
        for key, value in details.items():
            assert doc["details"][key] == value, (rpc, key, doc["details"])
