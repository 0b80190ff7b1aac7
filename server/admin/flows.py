"""Creating administrators from the command line and at start (bootstrap admin), and
resetting an administrator's second factor (an operator's recovery action)."""

from __future__ import annotations

from server.audit.scope import CLI_ACTOR, audit_change, job_scope
from server.auth import domain as auth_domain
from server.auth.identifiers import normalize_phone
from server.auth.password_policy import password_problem
from server.core.db import Database


async def ensure_admin(
    db: Database,
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
    phone = normalize_phone(phone_number) if phone_number else None
    if phone_number and phone is None:
        raise ValueError("the phone number must be a 10-digit Indian mobile number")
    password_hash = await auth_domain.new_password_hash(password)
    async with db.transaction() as conn:
        role_id = await auth_domain.role_id_named(role_name, conn=conn)
        if role_id is None:
            raise ValueError(f"unknown role {role_name!r}; load reference data first")
        return await auth_domain.create_admin_if_absent(
            conn=conn,
            email=email.strip().lower(),
            name=name,
            phone_number=phone,
            password_hash=password_hash,
            role_id=role_id,
        )


async def reset_admin_mfa(db: Database, email: str) -> bool:
    """Forget the admin's TOTP secret and end their sessions: the next login enrols a
    new authenticator (password first). For a lost device, or a secret sealed under a
    data key that is gone. Audited as ``system:cli``. False when no such admin."""
    with job_scope("reset-admin-mfa", actor=CLI_ACTOR):
        async with db.transaction() as conn:
            admin_id = await auth_domain.forget_admin_mfa(email.strip().lower(), conn=conn)
            if admin_id is None:
                return False
            ended = await auth_domain.end_sessions(reason="mfa_reset", admin_id=admin_id, conn=conn)
            audit_change(
                "Admins",
                "UPDATE",
                {"admin_id": admin_id, "mfa_reset": True, "sessions_ended": len(ended)},
            )
    return True
