"""Creating administrators from the command line and at start (bootstrap admin), and
resetting an administrator's second factor (an operator's recovery action)."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from server.admin import queries
from server.audit.scope import CLI_ACTOR, audit_change, job_scope
from server.auth import queries as auth_queries
from server.auth.password_policy import normalize_password, password_problem
from server.auth.passwords import hash_password
from server.core import db


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


async def reset_admin_mfa(engine: AsyncEngine, email: str) -> bool:
    """Forget the admin's TOTP secret and end their sessions: the next login enrols a
    new authenticator (password first). For a lost device, or a secret sealed under a
    data key that is gone. Audited as ``system:cli``. False when no such admin."""
    with job_scope("reset-admin-mfa", actor=CLI_ACTOR):
        async with db.transaction(engine) as conn:
            admin_id = await queries.reset_admin_mfa(conn, email.strip().lower())
            if admin_id is None:
                return False
            ended = await auth_queries.revoke_sessions(conn, reason="mfa_reset", admin_id=admin_id)
            audit_change(
                "Admins",
                "UPDATE",
                {"admin_id": admin_id, "mfa_reset": True, "sessions_ended": len(ended)},
            )
    return True
