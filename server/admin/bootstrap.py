"""Creating administrators from the command line and at start (bootstrap admin)."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from server import db
from server.admin import queries
from server.auth import queries as auth_queries
from server.auth.password_policy import normalize_password, password_problem
from server.auth.passwords import hash_password


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
    problem = password_problem(password, context=[email, name])
    if problem:
        raise ValueError(problem)
    password_hash = await asyncio.to_thread(hash_password, normalize_password(password))
    async with db.transaction(engine) as conn:
        role_id = await auth_queries.role_id_by_name(conn, role_name)
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
