"""SQL for the RBAC matrix (Roles x RolePermissions x Permissions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core.schema import permissions, rolepermissions


async def load_permission_rows(conn: AsyncConnection) -> Sequence[Any]:
    result = await conn.execute(
        select(
            rolepermissions.c.role_id,
            permissions.c.resource,
            permissions.c.read,
            permissions.c.write,
            permissions.c.edit,
            permissions.c.delete,
        ).select_from(
            rolepermissions.join(
                permissions, rolepermissions.c.permission_id == permissions.c.permission_id
            )
        )
    )
    return result.all()
