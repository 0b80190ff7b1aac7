"""SQL for staff and access management (SQLAlchemy Core): admins, roles, permissions,
role grants and service accounts as operators change them.

The identity SQL a login needs (reading an admin or a service account, MFA, sessions)
stays in server/auth/queries.py; this module is the writer of what AdminService and
the ``gencharge`` staff commands change: new admins and their name, phone, status and
role; new roles and permissions; grants; new service accounts, their scopes and status.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, and_, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core.schema import admins, permissions, rolepermissions, roles, service_accounts

RowT = Row[Any]

#: Transaction-level advisory lock that serialises every change able to take the
#: power to manage admins or roles away ("GCS" + 1): the last-manager check of one
#: such change always sees the others' committed result.
LOCK_MANAGERS = 0x474353_0000000001
#: The same for service-account names (uniqueness is checked, not constrained).
LOCK_SERVICE_NAMES = 0x474353_0000000002


async def advisory_lock(conn: AsyncConnection, key: int) -> None:
    """Wait for the transaction-level advisory lock ``key`` (released at commit)."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


# --- admins -------------------------------------------------------------------------------

_ADMIN_COLUMNS = (
    admins.c.admin_id,
    admins.c.name,
    admins.c.email,
    admins.c.phone_number,
    admins.c.status,
    admins.c.role_id,
    roles.c.role_name,
    admins.c.mfa_enabled,
    admins.c.created_at,
    admins.c.updated_at,
    admins.c.email_verified_at,
    admins.c.phone_verified_at,
)


def _admins() -> Any:
    return select(*_ADMIN_COLUMNS).select_from(
        admins.outerjoin(roles, admins.c.role_id == roles.c.role_id)
    )


async def admin_by_id(conn: AsyncConnection, admin_id: int, *, lock: bool = False) -> RowT | None:
    """One admin (never its password hash or TOTP secret), optionally row-locked."""
    statement = _admins().where(admins.c.admin_id == admin_id)
    if lock:
        statement = statement.with_for_update(of=admins)
    result = await conn.execute(statement)
    return result.one_or_none()


async def admin_contact_taken(
    conn: AsyncConnection, *, column: str, value: str, except_id: int | None = None
) -> bool:
    """Whether an admin (other than ``except_id``) has ``value`` as ``column``."""
    condition = admins.c[column] == value
    if except_id is not None:
        condition = and_(condition, admins.c.admin_id != except_id)
    result = await conn.execute(select(admins.c.admin_id).where(condition).limit(1))
    return result.first() is not None


async def insert_admin(
    conn: AsyncConnection, values: dict[str, Any], *, if_absent: bool = False
) -> int | None:
    """Insert an active admin; its id. With ``if_absent``, None when the e-mail or
    phone number is taken (nothing inserted); otherwise the unique constraints raise."""
    statement = insert(admins).values(**values, status="active")
    if if_absent:
        statement = statement.on_conflict_do_nothing()
    result = await conn.execute(statement.returning(admins.c.admin_id))
    admin_id = result.scalar_one_or_none()
    return None if admin_id is None else int(admin_id)


async def update_admin(conn: AsyncConnection, admin_id: int, values: dict[str, Any]) -> None:
    await conn.execute(
        update(admins).where(admins.c.admin_id == admin_id).values(**values, updated_at=func.now())
    )


async def list_admins(
    conn: AsyncConnection,
    *,
    status: str | None,
    role_id: int | None,
    after: tuple[str, int] | None,
    limit: int,
) -> Sequence[RowT]:
    # By name (no name sorts first), then id.
    by_name = func.coalesce(admins.c.name, "")
    statement = _admins()
    if status is not None:
        statement = statement.where(admins.c.status == status)
    if role_id is not None:
        statement = statement.where(admins.c.role_id == role_id)
    if after is not None:
        name, admin_id = after
        statement = statement.where(
            or_(by_name > name, and_(by_name == name, admins.c.admin_id > admin_id))
        )
    result = await conn.execute(statement.order_by(by_name, admins.c.admin_id).limit(limit))
    return result.all()


async def managers(conn: AsyncConnection, resource: str) -> int:
    """How many active admins have a role granting ``edit`` on ``resource``."""
    granted = (
        select(rolepermissions.c.role_id)
        .join(permissions, permissions.c.permission_id == rolepermissions.c.permission_id)
        .where(permissions.c.resource == resource, permissions.c.edit)
    )
    result = await conn.execute(
        select(func.count())
        .select_from(admins)
        .where(admins.c.status == "active", admins.c.role_id.in_(granted))
    )
    return int(result.scalar_one())


# --- roles and permissions ----------------------------------------------------------------


async def role_by_id(conn: AsyncConnection, role_id: int) -> RowT | None:
    result = await conn.execute(select(*roles.c).where(roles.c.role_id == role_id))
    return result.one_or_none()


async def role_name_taken(conn: AsyncConnection, role_name: str) -> bool:
    result = await conn.execute(
        select(roles.c.role_id).where(func.lower(roles.c.role_name) == role_name.lower())
    )
    return result.first() is not None


async def insert_role(conn: AsyncConnection, *, role_name: str, description: str | None) -> RowT:
    result = await conn.execute(
        insert(roles).values(role_name=role_name, description=description).returning(*roles.c)
    )
    return result.one()


async def list_roles(conn: AsyncConnection, *, after: int | None, limit: int) -> Sequence[RowT]:
    statement = select(*roles.c)
    if after is not None:
        statement = statement.where(roles.c.role_id > after)
    result = await conn.execute(statement.order_by(roles.c.role_id).limit(limit))
    return result.all()


async def permission_by_id(conn: AsyncConnection, permission_id: int) -> RowT | None:
    result = await conn.execute(
        select(*permissions.c).where(permissions.c.permission_id == permission_id)
    )
    return result.one_or_none()


async def insert_permission(conn: AsyncConnection, values: dict[str, Any]) -> RowT:
    result = await conn.execute(insert(permissions).values(**values).returning(*permissions.c))
    return result.one()


async def list_permissions(
    conn: AsyncConnection, *, role_id: int | None, after: int | None, limit: int
) -> Sequence[RowT]:
    statement = select(*permissions.c)
    if role_id is not None:
        statement = statement.where(
            permissions.c.permission_id.in_(
                select(rolepermissions.c.permission_id).where(rolepermissions.c.role_id == role_id)
            )
        )
    if after is not None:
        statement = statement.where(permissions.c.permission_id > after)
    result = await conn.execute(statement.order_by(permissions.c.permission_id).limit(limit))
    return result.all()


async def grant(conn: AsyncConnection, role_id: int, permission_id: int) -> RowT | None:
    """Link the permission to the role; the new row, or None when already linked."""
    result = await conn.execute(
        insert(rolepermissions)
        .values(role_id=role_id, permission_id=permission_id)
        .on_conflict_do_nothing(constraint="uq_rolepermissions_role_permission")
        .returning(*rolepermissions.c)
    )
    return result.one_or_none()


async def revoke(conn: AsyncConnection, role_id: int, permission_id: int) -> int | None:
    """Unlink the permission from the role; the link's id, or None when not linked."""
    result = await conn.execute(
        rolepermissions.delete()
        .where(
            rolepermissions.c.role_id == role_id,
            rolepermissions.c.permission_id == permission_id,
        )
        .returning(rolepermissions.c.id)
    )
    link_id = result.scalar_one_or_none()
    return None if link_id is None else int(link_id)


# --- service accounts ---------------------------------------------------------------------

_SERVICE_COLUMNS = (
    service_accounts.c.service_account_id,
    service_accounts.c.client_id,
    service_accounts.c.name,
    service_accounts.c.description,
    service_accounts.c.role_id,
    roles.c.role_name,
    service_accounts.c.status,
    service_accounts.c.created_at,
    service_accounts.c.created_by,
    service_accounts.c.last_used_at,
    service_accounts.c.scopes,
)


def _services() -> Any:
    return select(*_SERVICE_COLUMNS).select_from(
        service_accounts.outerjoin(roles, service_accounts.c.role_id == roles.c.role_id)
    )


async def service_account(
    conn: AsyncConnection,
    *,
    service_account_id: int | None = None,
    client_id: str | None = None,
    lock: bool = False,
) -> RowT | None:
    """One account (never its secret hash), by id or client id."""
    statement = _services()
    if service_account_id is not None:
        statement = statement.where(service_accounts.c.service_account_id == service_account_id)
    else:
        statement = statement.where(service_accounts.c.client_id == client_id)
    if lock:
        statement = statement.with_for_update(of=service_accounts)
    result = await conn.execute(statement)
    return result.one_or_none()


async def service_name_taken(conn: AsyncConnection, name: str) -> bool:
    result = await conn.execute(
        select(service_accounts.c.service_account_id)
        .where(func.lower(service_accounts.c.name) == name.lower())
        .limit(1)
    )
    return result.first() is not None


async def client_id_taken(conn: AsyncConnection, client_id: str) -> bool:
    result = await conn.execute(
        select(service_accounts.c.service_account_id)
        .where(service_accounts.c.client_id == client_id)
        .limit(1)
    )
    return result.first() is not None


async def insert_service_account(conn: AsyncConnection, values: dict[str, Any]) -> int:
    result = await conn.execute(
        insert(service_accounts).values(**values).returning(service_accounts.c.service_account_id)
    )
    return int(result.scalar_one())


async def update_service_account(
    conn: AsyncConnection, service_account_id: int, values: dict[str, Any]
) -> None:
    await conn.execute(
        update(service_accounts)
        .where(service_accounts.c.service_account_id == service_account_id)
        .values(**values)
    )


async def list_service_accounts(
    conn: AsyncConnection,
    *,
    status: str | None,
    after: tuple[str, int] | None,
    limit: int | None,
) -> Sequence[RowT]:
    statement = _services()
    if status is not None:
        statement = statement.where(service_accounts.c.status == status)
    if after is not None:
        name, account_id = after
        statement = statement.where(
            or_(
                service_accounts.c.name > name,
                and_(
                    service_accounts.c.name == name,
                    service_accounts.c.service_account_id > account_id,
                ),
            )
        )
    statement = statement.order_by(service_accounts.c.name, service_accounts.c.service_account_id)
    if limit is not None:
        statement = statement.limit(limit)
    result = await conn.execute(statement)
    return result.all()
