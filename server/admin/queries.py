"""SQL for the admin domain (SQLAlchemy Core)."""

from __future__ import annotations

from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core.schema import admins


async def insert_admin_if_absent(
    conn: AsyncConnection,
    *,
    email: str,
    name: str,
    phone_number: str | None,
    password_hash: str,
    role_id: int,
) -> bool:
    """Insert an active admin unless one with this email (or phone) exists; True if inserted."""
    result = await conn.execute(
        insert(admins)
        .values(
            email=email,
            name=name,
            phone_number=phone_number,
            password_hash=password_hash,
            status="active",
            role_id=role_id,
        )
        .on_conflict_do_nothing()
        .returning(admins.c.admin_id)
    )
    return result.scalar_one_or_none() is not None


async def reset_admin_mfa(conn: AsyncConnection, email: str) -> int | None:
    """Clear the admin's TOTP enrolment; their id, or None when no admin has ``email``."""
    result = await conn.execute(
        update(admins)
        .where(admins.c.email == email)
        .values(totp_secret=None, mfa_enabled=False, totp_last_step=None, updated_at=func.now())
        .returning(admins.c.admin_id)
    )
    admin_id: int | None = result.scalar_one_or_none()
    return admin_id
