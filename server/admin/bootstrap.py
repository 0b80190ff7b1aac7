"""Creating administrators from the command line and at start (bootstrap admin)."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from server import db
from server.admin import queries
from server.auth.passwords import hash_password

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024


def password_problem(password: str) -> str | None:
    """Why ``password`` is unacceptable, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"password must have at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"password must have at most {MAX_PASSWORD_LENGTH} characters"
    return None


async def ensure_admin(
    engine: AsyncEngine,
    *,
    email: str,
    name: str,
    password: str,
    phone_number: str | None = None,
    role_name: str = "Admin",
) -> bool:
    """Create the admin unless the email is taken; True when created.

    An existing admin is left untouched (its password is never overwritten from
    configuration), so restarting with the bootstrap settings is harmless.
    """
    problem = password_problem(password)
    if problem:
        raise ValueError(problem)
    password_hash = await asyncio.to_thread(hash_password, password)
    async with db.transaction(engine) as conn:
        role_id = await queries.role_id_by_name(conn, role_name)
        if role_id is None:
            raise ValueError(f"unknown role {role_name!r}; load reference data first")
        return await queries.insert_admin_if_absent(
            conn,
            email=email.strip().lower(),
            name=name,
            phone_number=phone_number,
            password_hash=password_hash,
            role_id=role_id,
        )
