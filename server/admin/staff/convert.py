"""Staff and access messages <-> values."""

from __future__ import annotations

from gencharge.v1 import admin_service_pb2 as pb
from gencharge.v1 import identity_pb2
from server.admin.staff import domain
from server.auth.convert import ADMIN_STATUSES, SERVICE_STATUSES

#: Filter and update enums -> stored names (UNSPECIFIED is absent: no filter).
ADMIN_STATUS_NAMES = {number: name for name, number in ADMIN_STATUSES.items()}
SERVICE_STATUS_NAMES = {number: name for name, number in SERVICE_STATUSES.items()}


def new_admin_of(request: pb.CreateAdminRequest) -> domain.NewAdmin:
    admin = request.admin
    return domain.NewAdmin(
        name=admin.name,
        email=admin.email,
        phone_number=admin.phone_number,
        password=request.initial_password,
        role_id=admin.role_id,
    )


def admin_update_of(request: pb.UpdateAdminRequest) -> domain.AdminUpdate:
    admin = request.admin
    return domain.AdminUpdate(
        admin_id=admin.admin_id,
        paths=tuple(request.update_mask.paths),
        name=admin.name,
        phone_number=admin.phone_number,
        status=ADMIN_STATUS_NAMES.get(admin.status),
        role_id=admin.role_id,
    )


def role_message(role: domain.Role) -> pb.Role:
    return pb.Role(
        role_id=role.role_id, role_name=role.role_name, description=role.description or ""
    )


def permission_message(permission: domain.Permission) -> pb.Permission:
    return pb.Permission(
        permission_id=permission.permission_id,
        resource=permission.resource,
        read=permission.read,
        write=permission.write,
        delete=permission.delete,
        edit=permission.edit,
    )


def actions_of(permission: pb.Permission) -> dict[str, bool]:
    return {action: bool(getattr(permission, action)) for action in domain.ACTIONS}


def grant_message(grant: domain.Grant) -> pb.RolePermission:
    return pb.RolePermission(id=grant.id, role_id=grant.role_id, permission_id=grant.permission_id)


def new_service_account_of(request: pb.CreateServiceAccountRequest) -> domain.NewServiceAccount:
    account: identity_pb2.ServiceAccount = request.service_account
    return domain.NewServiceAccount(
        name=account.name,
        role_id=account.role_id,
        scopes=tuple(account.scopes),
        description=account.description,
    )
