"""Creating administrators from the command line and at start (bootstrap admin), and
resetting an administrator's second factor (an operator's recovery action).

Creating one goes through the same code as AdminService CreateAdmin
(server/admin/staff/flows.py): the same checks, the same insert, the same audit event.
"""

from __future__ import annotations

from server.admin.staff import domain as staff_domain
from server.admin.staff import flows as staff_flows
from server.audit.scope import CLI_ACTOR, audit_change, job_scope
from server.auth import domain as auth_domain
from server.core.db import Database
from server.core.errors import InvalidArgument, NotFound


async def ensure_admin(
    db: Database,
    *,
    email: str,
    name: str,
    password: str,
    phone_number: str | None = None,
    role_name: str = "Admin",
) -> bool:
    """Create the admin unless the email (or phone) is taken; True when created.

    An existing admin is left untouched (its password is never overwritten from
    configuration), so restarting with the bootstrap settings is harmless. A weak
    password, a bad e-mail or phone number, or an unknown role is a ValueError.
    """
    new = staff_domain.NewAdmin(
        name=name,
        email=email,
        phone_number=phone_number or "",
        password=password,
        role_name=role_name,
        prefix="",
        initial_field="password",
    )
    try:
        created = await staff_flows.create_admin(db, new, if_absent=True)
    except InvalidArgument as exc:
        raise ValueError("; ".join(f"{v.field}: {v.description}" for v in exc.violations)) from None
    except NotFound as exc:
        raise ValueError(str(exc)) from None
    return created is not None


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
