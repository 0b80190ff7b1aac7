"""Staff and access rules: admin accounts, roles, permissions and their grants, service
accounts (no grpc here; each function works on the connection it is given).

Guards:

- **Managers stay.** A change that could take the power to manage admins or roles away
  (an admin blocked, deleted or moved to another role; a permission revoked from a
  role) takes one advisory lock (:data:`queries.LOCK_MANAGERS`), makes the change and
  then counts: at least one active admin must keep a role with ``edit`` on ``Admins``
  and one with ``edit`` on ``Roles``, or the change is refused (FAILED_PRECONDITION
  ``LAST_MANAGER``) and rolls back. The lock serialises such changes, so two
  concurrent revocations cannot both pass the count.
- **Nobody raises themselves.** An admin cannot change their own role, block or delete
  themselves, or grant a permission to the role they hold.

Nothing secret is returned, logged or audited: audit details name ids, fields and
statuses, never a password, hash or client secret.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from server.admin.staff import queries
from server.audit.scope import audit_change
from server.auth.domain import (
    SERVICE_ROLE,
    Admin,
    ServiceAccount,
    admin_of_row,
    end_sessions,
    service_account_of_row,
)
from server.auth.identifiers import normalize_email, normalize_phone
from server.auth.password_policy import password_problem
from server.auth.principal import Principal
from server.auth.resources import PERMISSION_RESOURCES
from server.auth.scopes import check_scopes
from server.core import pagination
from server.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)

ADMIN_STATUSES: Final = ("active", "blocked", "deleted")
SERVICE_STATUSES: Final = ("active", "disabled")
#: UpdateAdmin's field mask.
ADMIN_PATHS: Final = ("name", "phone_number", "status", "role_id")
#: What must stay manageable: an active admin with ``edit`` on each.
MANAGED: Final = ("Admins", "Roles")
MAX_NAME: Final = 100
MAX_ROLE_NAME: Final = 50
MAX_DESCRIPTION: Final = 500
MAX_CLIENT_ID: Final = 64
ACTIONS: Final = ("read", "write", "delete", "edit")


@dataclass(frozen=True)
class Role:
    role_id: int
    role_name: str
    description: str | None


@dataclass(frozen=True)
class Permission:
    permission_id: int
    resource: str
    read: bool
    write: bool
    delete: bool
    edit: bool


@dataclass(frozen=True)
class Grant:
    id: int
    role_id: int
    permission_id: int


def _role(row: Row[Any]) -> Role:
    return Role(int(row.role_id), row.role_name, row.description)


def _permission(row: Row[Any]) -> Permission:
    return Permission(
        int(row.permission_id), row.resource, row.read, row.write, row.delete, row.edit
    )


def actor_id(who: Principal) -> int | None:
    """The calling admin's id (None for the command line or a service account)."""
    return who.numeric_id if who.kind == "admin" else None


def _text(value: str, name: str, limit: int, violations: list[FieldViolation]) -> str:
    clean = value.strip()
    if not 1 <= len(clean) <= limit:
        violations.append(FieldViolation(name, f"must have 1 to {limit} characters"))
    return clean


# --- admins -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewAdmin:
    """An admin to create. ``role_id`` (the API) or ``role_name`` (the command line and
    the bootstrap admin) names the role. ``prefix`` is how field violations name the
    admin's fields (``admin.`` for CreateAdmin)."""

    name: str
    email: str
    phone_number: str
    password: str = field(repr=False)
    role_id: int = 0
    role_name: str = ""
    prefix: str = "admin."
    initial_field: str = "initial_password"


@dataclass(frozen=True)
class CheckedAdmin:
    name: str
    email: str
    phone_number: str | None
    role_id: int
    role_name: str


def check_new_admin(new: NewAdmin) -> CheckedAdmin:
    """Every problem of ``new`` at once (INVALID_ARGUMENT), before any hashing or SQL;
    the weak-password rule is server/auth/password_policy.py's."""
    violations: list[FieldViolation] = []
    p = new.prefix
    name = _text(new.name, f"{p}name", MAX_NAME, violations)
    email = normalize_email(new.email)
    if email is None:
        violations.append(FieldViolation(f"{p}email", "must be an e-mail address"))
    phone = normalize_phone(new.phone_number) if new.phone_number.strip() else None
    if new.phone_number.strip() and phone is None:
        violations.append(
            FieldViolation(f"{p}phone_number", "must be a 10-digit Indian mobile number")
        )
    if not new.role_id and not new.role_name:
        violations.append(FieldViolation(f"{p}role_id", "is required"))
    problem = password_problem(new.password, context=[new.email, new.name])
    if problem:
        violations.append(FieldViolation(new.initial_field, problem))
    if violations:
        raise InvalidArgument.of(violations)
    assert email is not None
    return CheckedAdmin(name, email, phone, new.role_id, new.role_name)


async def _role_id_of(admin: CheckedAdmin, field_name: str, *, conn: AsyncConnection) -> int:
    if admin.role_id:
        if await queries.role_by_id(conn, admin.role_id) is None:
            raise NotFound(f"role {admin.role_id} not found", metadata={field_name: "role_id"})
        return admin.role_id
    for role in await list_roles_all(conn=conn):
        if role.role_name.lower() == admin.role_name.lower():
            return role.role_id
    raise NotFound(f"role {admin.role_name!r} not found; load reference data first")


async def create_admin(
    admin: CheckedAdmin,
    password_hash: str,
    *,
    if_absent: bool = False,
    conn: AsyncConnection,
) -> Admin | None:
    """Insert an active admin without a second factor: their first login (password
    first) enrols a TOTP authenticator (server/auth/domain.py ``open_mfa_challenge``),
    and no session is opened before that. NOT_FOUND for an unknown role;
    ALREADY_EXISTS when the e-mail or phone number is taken, or, with ``if_absent``,
    None (nothing changes: the bootstrap admin and ``gencharge create-admin``)."""
    role_id = await _role_id_of(admin, "admin.role_id", conn=conn)
    if not if_absent:
        await _check_contacts_free(admin.email, admin.phone_number, None, conn=conn)
    admin_id = await queries.insert_admin(
        conn,
        {
            "name": admin.name,
            "email": admin.email,
            "phone_number": admin.phone_number,
            "password_hash": password_hash,
            "role_id": role_id,
        },
        if_absent=if_absent,
    )
    if admin_id is None:
        return None
    audit_change(
        "Admins",
        "INSERT",
        {"admin_id": admin_id, "role_id": role_id, "mfa_enrolment": "at first login"},
    )
    row = await queries.admin_by_id(conn, admin_id)
    assert row is not None
    return admin_of_row(row)


async def _check_contacts_free(
    email: str | None, phone: str | None, except_id: int | None, *, conn: AsyncConnection
) -> None:
    for column, value, what in (
        ("email", email, "e-mail address"),
        ("phone_number", phone, "phone number"),
    ):
        if value and await queries.admin_contact_taken(
            conn, column=column, value=value, except_id=except_id
        ):
            raise AlreadyExists(
                f"another admin uses this {what}",
                reason="CONTACT_TAKEN",
                metadata={"field": column},
            )


async def get_admin(admin_id: int, *, conn: AsyncConnection, lock: bool = False) -> Admin:
    row = await queries.admin_by_id(conn, admin_id, lock=lock)
    if row is None:
        raise NotFound(f"admin {admin_id} not found")
    return admin_of_row(row)


async def list_admins(
    *,
    status: str | None,
    role_id: int | None,
    page_size: int,
    page_token: str,
    conn: AsyncConnection,
) -> tuple[list[Admin], str]:
    """Admins by name, then id."""
    page = pagination.parse(
        page_size, page_token, {"list": "admins", "status": status, "role_id": role_id}
    )
    after = pagination.position(page.after, str, int)
    rows = await queries.list_admins(
        conn,
        status=status,
        role_id=role_id,
        after=(after[0], after[1]) if after else None,
        limit=page.fetch,
    )
    items, more = pagination.split(list(rows), page)
    last = items[-1] if items else None
    token = page.next_token([last.name or "", int(last.admin_id)] if last else None, more)
    return [admin_of_row(row) for row in items], token


@dataclass(frozen=True)
class AdminUpdate:
    """UpdateAdmin: the mask's paths and the values the request carries for them
    (``status`` as its name, None for UNSPECIFIED or unknown)."""

    admin_id: int
    paths: tuple[str, ...]
    name: str = ""
    phone_number: str = ""
    status: str | None = None
    role_id: int = 0


@dataclass(frozen=True)
class AdminChange:
    admin: Admin
    #: Sessions ended (blocked or deleted): the caller drops them from its caches.
    ended_sessions: tuple[str, ...] = ()


def _update_values(update: AdminUpdate) -> dict[str, Any]:
    violations: list[FieldViolation] = []
    unknown = [p for p in update.paths if p not in ADMIN_PATHS]
    if not update.paths or unknown:
        raise InvalidArgument.field("update_mask", f"must list some of {', '.join(ADMIN_PATHS)}")
    values: dict[str, Any] = {}
    if "name" in update.paths:
        values["name"] = _text(update.name, "admin.name", MAX_NAME, violations)
    if "phone_number" in update.paths:
        raw = update.phone_number.strip()
        phone = normalize_phone(raw) if raw else None
        if raw and phone is None:
            violations.append(
                FieldViolation("admin.phone_number", "must be a 10-digit Indian mobile number")
            )
        values["phone_number"] = phone
    if "status" in update.paths:
        if update.status not in ADMIN_STATUSES:
            violations.append(FieldViolation("admin.status", "must be ACTIVE, BLOCKED or DELETED"))
        values["status"] = update.status
    if "role_id" in update.paths:
        if update.role_id <= 0:
            violations.append(FieldViolation("admin.role_id", "is required"))
        values["role_id"] = update.role_id
    if violations:
        raise InvalidArgument.of(violations)
    return values


async def update_admin(
    who: Principal, update: AdminUpdate, *, conn: AsyncConnection
) -> AdminChange:
    """Apply an UpdateAdmin. Refused (FAILED_PRECONDITION): changing your own role
    (``SELF_ROLE_CHANGE``), blocking or deleting yourself (``SELF_STATUS_CHANGE``),
    leaving no active admin able to manage admins or roles (``LAST_MANAGER``).
    Blocking or deleting ends the admin's sessions."""
    values = _update_values(update)
    if "role_id" in values and await queries.role_by_id(conn, values["role_id"]) is None:
        raise NotFound(f"role {values['role_id']} not found")
    removes_power = "status" in values or "role_id" in values
    if removes_power:
        await queries.advisory_lock(conn, queries.LOCK_MANAGERS)
    current = await get_admin(update.admin_id, conn=conn, lock=True)
    changed = {k: v for k, v in values.items() if getattr(current, k) != v}
    myself = who.kind == "admin" and who.numeric_id == current.admin_id
    if myself and "role_id" in changed:
        raise FailedPrecondition("you cannot change your own role", reason="SELF_ROLE_CHANGE")
    if myself and changed.get("status", "active") != "active":
        raise FailedPrecondition("you cannot block or delete yourself", reason="SELF_STATUS_CHANGE")
    if changed.get("phone_number"):
        await _check_contacts_free(None, changed["phone_number"], current.admin_id, conn=conn)
    ended: list[str] = []
    if changed:
        await queries.update_admin(conn, current.admin_id, changed)
        if changed.get("status", "active") != "active":
            ended = [
                str(s)
                for s in await end_sessions(
                    reason=f"admin {changed['status']}", admin_id=current.admin_id, conn=conn
                )
            ]
        if "status" in changed or "role_id" in changed:
            await _managers_remain(conn=conn)
    audit_change(
        "Admins",
        "UPDATE",
        {
            "admin_id": current.admin_id,
            "fields": sorted(changed),
            **{k: changed[k] for k in ("status", "role_id") if k in changed},
            **({"sessions_ended": len(ended)} if ended else {}),
        },
    )
    return AdminChange(await get_admin(current.admin_id, conn=conn), tuple(ended))


async def _managers_remain(*, conn: AsyncConnection) -> None:
    """FAILED_PRECONDITION ``LAST_MANAGER`` unless an active admin can still edit
    Admins and one can still edit Roles (inside :data:`queries.LOCK_MANAGERS`)."""
    for resource in MANAGED:
        if await queries.managers(conn, resource) == 0:
            raise FailedPrecondition(
                f"this would leave no active admin able to manage {resource.lower()}",
                reason="LAST_MANAGER",
                metadata={"resource": resource},
            )


# --- roles and permissions ----------------------------------------------------------------


async def list_roles_all(*, conn: AsyncConnection) -> list[Role]:
    return [_role(row) for row in await queries.list_roles(conn, after=None, limit=10_000)]


async def list_roles(
    *, page_size: int, page_token: str, conn: AsyncConnection
) -> tuple[list[Role], str]:
    page = pagination.parse(page_size, page_token, {"list": "roles"})
    rows = await queries.list_roles(conn, after=pagination.id_keyset(page.after), limit=page.fetch)
    items, more = pagination.split(list(rows), page)
    return [_role(r) for r in items], page.next_token(
        int(items[-1].role_id) if items else None, more
    )


async def create_role(role_name: str, description: str, *, conn: AsyncConnection) -> Role:
    violations: list[FieldViolation] = []
    name = _text(role_name, "role.role_name", MAX_ROLE_NAME, violations)
    if len(description) > MAX_DESCRIPTION:
        violations.append(
            FieldViolation("role.description", f"must have at most {MAX_DESCRIPTION} characters")
        )
    if violations:
        raise InvalidArgument.of(violations)
    if await queries.role_name_taken(conn, name):
        raise AlreadyExists(f"a role named {name!r} exists", reason="ROLE_EXISTS")
    row = await queries.insert_role(conn, role_name=name, description=description.strip() or None)
    audit_change("Roles", "INSERT", {"role_id": int(row.role_id), "role_name": name})
    return _role(row)


async def _role_exists(role_id: int, *, conn: AsyncConnection) -> None:
    if await queries.role_by_id(conn, role_id) is None:
        raise NotFound(f"role {role_id} not found", metadata={"role_id": str(role_id)})


async def list_permissions(
    *, role_id: int | None, page_size: int, page_token: str, conn: AsyncConnection
) -> tuple[list[Permission], str]:
    page = pagination.parse(page_size, page_token, {"list": "permissions", "role_id": role_id})
    if role_id is not None:
        await _role_exists(role_id, conn=conn)
    rows = await queries.list_permissions(
        conn, role_id=role_id, after=pagination.id_keyset(page.after), limit=page.fetch
    )
    items, more = pagination.split(list(rows), page)
    return [_permission(r) for r in items], page.next_token(
        int(items[-1].permission_id) if items else None, more
    )


def known_resources() -> tuple[str, ...]:
    """The resources a permission may name: those of the contract's access rules and the
    data resources the domains check (server/auth/resources.py)."""
    return PERMISSION_RESOURCES


async def create_permission(
    resource: str, actions: Mapping[str, bool], *, conn: AsyncConnection
) -> Permission:
    """A new permission on one of the known resources with at least one action."""
    violations: list[FieldViolation] = []
    if resource not in PERMISSION_RESOURCES:
        violations.append(
            FieldViolation(
                "permission.resource",
                f"unknown resource {resource!r}; known: {', '.join(sorted(PERMISSION_RESOURCES))}",
            )
        )
    if not any(actions.get(a) for a in ACTIONS):
        violations.append(
            FieldViolation("permission", "must allow at least one of read, write, delete, edit")
        )
    if violations:
        raise InvalidArgument.of(violations)
    row = await queries.insert_permission(
        conn, {"resource": resource, **{a: bool(actions.get(a)) for a in ACTIONS}}
    )
    permission = _permission(row)
    audit_change(
        "Permissions",
        "INSERT",
        {
            "permission_id": permission.permission_id,
            "resource": resource,
            **{a: getattr(permission, a) for a in ACTIONS},
        },
    )
    return permission


async def _permission_exists(permission_id: int, *, conn: AsyncConnection) -> None:
    if await queries.permission_by_id(conn, permission_id) is None:
        raise NotFound(
            f"permission {permission_id} not found",
            metadata={"permission_id": str(permission_id)},
        )


async def grant_permission(
    who: Principal, role_id: int, permission_id: int, *, conn: AsyncConnection
) -> Grant:
    """Link a permission to a role. ALREADY_EXISTS when linked; FAILED_PRECONDITION
    ``OWN_ROLE`` for the caller's own role (nobody raises themselves)."""
    await _role_exists(role_id, conn=conn)
    await _permission_exists(permission_id, conn=conn)
    if who.kind == "admin" and who.role_id == role_id:
        raise FailedPrecondition(
            "you cannot grant permissions to your own role; ask another admin",
            reason="OWN_ROLE",
        )
    row = await queries.grant(conn, role_id, permission_id)
    if row is None:
        raise AlreadyExists(
            f"permission {permission_id} is already granted to role {role_id}",
            reason="ALREADY_GRANTED",
        )
    audit_change(
        "RolePermissions",
        "INSERT",
        {"id": int(row.id), "role_id": role_id, "permission_id": permission_id},
    )
    return Grant(int(row.id), role_id, permission_id)


async def revoke_permission(role_id: int, permission_id: int, *, conn: AsyncConnection) -> None:
    """Unlink a permission from a role. NOT_FOUND when not granted; FAILED_PRECONDITION
    ``LAST_MANAGER`` when no active admin could manage admins or roles afterwards."""
    await queries.advisory_lock(conn, queries.LOCK_MANAGERS)
    link_id = await queries.revoke(conn, role_id, permission_id)
    if link_id is None:
        raise NotFound(
            f"permission {permission_id} is not granted to role {role_id}",
            reason="NOT_GRANTED",
        )
    await _managers_remain(conn=conn)
    audit_change(
        "RolePermissions",
        "DELETE",
        {"id": link_id, "role_id": role_id, "permission_id": permission_id},
    )


# --- service accounts ---------------------------------------------------------------------


@dataclass(frozen=True)
class NewServiceAccount:
    name: str
    client_id: str = ""
    #: 0: the Service role.
    role_id: int = 0
    scopes: Collection[str] = ()
    description: str = ""
    prefix: str = "service_account."


@dataclass(frozen=True)
class CheckedServiceAccount:
    name: str
    client_id: str
    role_id: int
    scopes: tuple[str, ...]
    description: str = ""


def check_new_service_account(
    new: NewServiceAccount, default_client_id: str
) -> CheckedServiceAccount:
    """Every problem at once (INVALID_ARGUMENT), before the secret is hashed."""
    violations: list[FieldViolation] = []
    p = new.prefix
    name = _text(new.name, f"{p}name", MAX_NAME, violations)
    client_id = new.client_id.strip() or default_client_id
    if (
        not 1 <= len(client_id) <= MAX_CLIENT_ID
        or not client_id.isascii()
        or not client_id.isprintable()
        or " " in client_id
    ):
        violations.append(
            FieldViolation(
                f"{p}client_id",
                f"must be 1 to {MAX_CLIENT_ID} printable ASCII characters without spaces",
            )
        )
    description = new.description.strip()
    if len(description) > MAX_DESCRIPTION:
        violations.append(
            FieldViolation(f"{p}description", f"must have at most {MAX_DESCRIPTION} characters")
        )
    scopes: tuple[str, ...] = ()
    try:
        scopes = check_scopes(new.scopes, field=f"{p}scopes")
    except InvalidArgument as exc:
        violations.extend(exc.violations)
    if violations:
        raise InvalidArgument.of(violations)
    return CheckedServiceAccount(name, client_id, new.role_id, scopes, description)


async def create_service_account(
    account: CheckedServiceAccount,
    secret_hash: str,
    *,
    created_by: int | None,
    conn: AsyncConnection,
) -> ServiceAccount:
    """A new active account. NOT_FOUND for an unknown role; ALREADY_EXISTS when the
    name (case-insensitive) or the client id is taken."""
    if account.role_id:
        await _role_exists(account.role_id, conn=conn)
        role_id = account.role_id
    else:
        found = [r for r in await list_roles_all(conn=conn) if r.role_name == SERVICE_ROLE]
        if not found:
            raise FailedPrecondition("the Service role is missing; load reference data")
        role_id = found[0].role_id
    await queries.advisory_lock(conn, queries.LOCK_SERVICE_NAMES)
    if await queries.service_name_taken(conn, account.name):
        raise AlreadyExists(f"a service account named {account.name!r} exists", reason="NAME_TAKEN")
    if await queries.client_id_taken(conn, account.client_id):
        raise AlreadyExists(f"service account {account.client_id} exists", reason="CLIENT_ID_TAKEN")
    account_id = await queries.insert_service_account(
        conn,
        {
            "client_id": account.client_id,
            "name": account.name,
            "description": account.description or None,
            "secret_hash": secret_hash,
            "role_id": role_id,
            "created_by": created_by,
            "scopes": list(account.scopes),
        },
    )
    audit_change(
        "ServiceAccounts",
        "INSERT",
        {
            "service_account_id": account_id,
            "client_id": account.client_id,
            "role_id": role_id,
            "scopes": list(account.scopes),
        },
    )
    return await get_service_account(service_account_id=account_id, conn=conn)


async def get_service_account(
    *,
    service_account_id: int | None = None,
    client_id: str | None = None,
    lock: bool = False,
    conn: AsyncConnection,
) -> ServiceAccount:
    row = await queries.service_account(
        conn, service_account_id=service_account_id, client_id=client_id, lock=lock
    )
    if row is None:
        which = client_id if client_id is not None else service_account_id
        raise NotFound(f"service account {which} not found")
    return service_account_of_row(row)


async def set_service_account_scopes(
    client_id: str, scopes: Iterable[str], *, conn: AsyncConnection
) -> ServiceAccount:
    """Replace the account's scopes. Tokens issued before keep only the scopes the
    account still holds (checked on the cached account state); a scope added needs a
    new token. NOT_FOUND for an unknown ``client_id``."""
    granted = check_scopes(scopes)
    account = await get_service_account(client_id=client_id, lock=True, conn=conn)
    await queries.update_service_account(
        conn, account.service_account_id, {"scopes": list(granted)}
    )
    audit_change(
        "ServiceAccounts",
        "UPDATE",
        {
            "service_account_id": account.service_account_id,
            "client_id": client_id,
            "scopes": list(granted),
        },
    )
    return await get_service_account(client_id=client_id, conn=conn)


async def disable_service_account(
    service_account_id: int, *, conn: AsyncConnection
) -> ServiceAccount:
    """Disable the account (idempotent: an already disabled one is returned as is,
    and the replay is audited as unchanged). Its tokens stop at the next cache expiry
    (``auth_cache_seconds``); new ones are refused at once."""
    account = await get_service_account(service_account_id=service_account_id, lock=True, conn=conn)
    changed = account.status != "disabled"
    if changed:
        await queries.update_service_account(conn, service_account_id, {"status": "disabled"})
    audit_change(
        "ServiceAccounts",
        "UPDATE",
        {
            "service_account_id": service_account_id,
            "client_id": account.client_id,
            "status": "disabled",
            "changed": changed,
        },
    )
    return await get_service_account(service_account_id=service_account_id, conn=conn)


async def list_service_accounts(
    *,
    status: str | None = None,
    page_size: int | None = None,
    page_token: str = "",
    conn: AsyncConnection,
) -> tuple[list[ServiceAccount], str]:
    """Accounts by name, then id; every account when ``page_size`` is None (the
    command line)."""
    if page_size is None:
        rows = await queries.list_service_accounts(conn, status=status, after=None, limit=None)
        return [service_account_of_row(r) for r in rows], ""
    page = pagination.parse(page_size, page_token, {"list": "service_accounts", "status": status})
    after = pagination.position(page.after, str, int)
    rows = await queries.list_service_accounts(
        conn,
        status=status,
        after=(after[0], after[1]) if after else None,
        limit=page.fetch,
    )
    items, more = pagination.split(list(rows), page)
    last = items[-1] if items else None
    token = page.next_token([last.name, int(last.service_account_id)] if last else None, more)
    return [service_account_of_row(r) for r in items], token
