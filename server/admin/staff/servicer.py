"""The staff and access RPCs of AdminService: RPC methods only."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2

from gencharge.v1 import admin_service_pb2 as pb
from gencharge.v1 import identity_pb2
from server.admin.staff import convert, domain, flows
from server.auth.convert import admin_message, service_account_message
from server.auth.principal import principal
from server.auth.security import Security
from server.core import protoconv
from server.core.db import Database

Context = grpc.aio.ServicerContext[Any, Any]


def _id_filter(value: int) -> int | None:
    return value or None


class StaffRpcs:
    """CreateAdmin, ListAdmins, UpdateAdmin; ListRoles, CreateRole, ListPermissions,
    CreatePermission, GrantPermission, RevokePermission; CreateServiceAccount,
    ListServiceAccounts, DisableServiceAccount (a part of the AdminService servicer,
    composed in server/rpc/services.py).

    A change that affects access drops what this process caches about it at once (the
    RBAC matrix, ended sessions, a disabled account); other processes and replicas see
    it within ``auth_cache_seconds``."""

    _db: Database
    _security: Security

    # --- admins ---------------------------------------------------------------------------

    async def CreateAdmin(
        self, request: pb.CreateAdminRequest, context: Context
    ) -> identity_pb2.Admin:
        admin = await flows.create_admin(self._db, convert.new_admin_of(request))
        assert admin is not None
        return admin_message(admin)

    async def ListAdmins(
        self, request: pb.ListAdminsRequest, context: Context
    ) -> pb.ListAdminsResponse:
        status = protoconv.enum_filter("status", request.status, convert.ADMIN_STATUS_NAMES)
        async with self._db.read_only() as conn:
            admins, token = await domain.list_admins(
                status=status,
                role_id=_id_filter(request.role_id),
                page_size=request.page_size,
                page_token=request.page_token,
                conn=conn,
            )
        return pb.ListAdminsResponse(
            admins=[admin_message(a) for a in admins], next_page_token=token
        )

    async def UpdateAdmin(
        self, request: pb.UpdateAdminRequest, context: Context
    ) -> identity_pb2.Admin:
        update = convert.admin_update_of(request)
        async with self._db.transaction() as conn:
            change = await domain.update_admin(principal(), update, conn=conn)
        self._security.authenticator.forget_sessions(change.ended_sessions)
        return admin_message(change.admin)

    # --- roles and permissions ------------------------------------------------------------

    async def ListRoles(
        self, request: pb.ListRolesRequest, context: Context
    ) -> pb.ListRolesResponse:
        async with self._db.read_only() as conn:
            roles, token = await domain.list_roles(
                page_size=request.page_size, page_token=request.page_token, conn=conn
            )
        return pb.ListRolesResponse(
            roles=[convert.role_message(r) for r in roles], next_page_token=token
        )

    async def CreateRole(self, request: pb.CreateRoleRequest, context: Context) -> pb.Role:
        async with self._db.transaction() as conn:
            role = await domain.create_role(
                request.role.role_name, request.role.description, conn=conn
            )
        return convert.role_message(role)

    async def ListPermissions(
        self, request: pb.ListPermissionsRequest, context: Context
    ) -> pb.ListPermissionsResponse:
        async with self._db.read_only() as conn:
            permissions, token = await domain.list_permissions(
                role_id=_id_filter(request.role_id),
                page_size=request.page_size,
                page_token=request.page_token,
                conn=conn,
            )
        return pb.ListPermissionsResponse(
            permissions=[convert.permission_message(p) for p in permissions],
            next_page_token=token,
        )

    async def CreatePermission(
        self, request: pb.CreatePermissionRequest, context: Context
    ) -> pb.Permission:
        async with self._db.transaction() as conn:
            permission = await domain.create_permission(
                request.permission.resource, convert.actions_of(request.permission), conn=conn
            )
        return convert.permission_message(permission)

    async def GrantPermission(
        self, request: pb.GrantPermissionRequest, context: Context
    ) -> pb.RolePermission:
        async with self._db.transaction() as conn:
            grant = await domain.grant_permission(
                principal(), request.role_id, request.permission_id, conn=conn
            )
        self._security.matrix.invalidate()
        return convert.grant_message(grant)

    async def RevokePermission(
        self, request: pb.RevokePermissionRequest, context: Context
    ) -> empty_pb2.Empty:
        async with self._db.transaction() as conn:
            await domain.revoke_permission(request.role_id, request.permission_id, conn=conn)
        self._security.matrix.invalidate()
        return empty_pb2.Empty()

    # --- service accounts -----------------------------------------------------------------

    async def CreateServiceAccount(
        self, request: pb.CreateServiceAccountRequest, context: Context
    ) -> pb.CreateServiceAccountResponse:
        created = await flows.create_service_account(
            self._db,
            convert.new_service_account_of(request),
            created_by=domain.actor_id(principal()),
        )
        return pb.CreateServiceAccountResponse(
            service_account=service_account_message(created.account),
            client_secret=created.client_secret,
        )

    async def ListServiceAccounts(
        self, request: pb.ListServiceAccountsRequest, context: Context
    ) -> pb.ListServiceAccountsResponse:
        status = protoconv.enum_filter("status", request.status, convert.SERVICE_STATUS_NAMES)
        async with self._db.read_only() as conn:
            accounts, token = await domain.list_service_accounts(
                status=status,
                page_size=request.page_size,
                page_token=request.page_token,
                conn=conn,
            )
        return pb.ListServiceAccountsResponse(
            service_accounts=[service_account_message(a) for a in accounts],
            next_page_token=token,
        )

    async def DisableServiceAccount(
        self, request: pb.DisableServiceAccountRequest, context: Context
    ) -> identity_pb2.ServiceAccount:
        async with self._db.transaction() as conn:
            account = await domain.disable_service_account(request.service_account_id, conn=conn)
        self._security.authenticator.forget_service(account.client_id)
        return service_account_message(account)
