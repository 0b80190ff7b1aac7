"""Staff and access work that spans more than one step: hashing a password or a new
client secret (CPU work in a thread, never inside a transaction), then the change in
one transaction. Shared by AdminService (server/admin/staff/servicer.py), the
``gencharge`` commands (create-admin, create-service-account,
set-service-account-scopes, list-service-accounts) and the bootstrap admin.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError

from server.admin.staff import domain
from server.auth import domain as auth_domain
from server.auth.domain import Admin, ServiceAccount
from server.auth.tokens import new_opaque_token
from server.core.db import Database
from server.core.errors import AlreadyExists


async def create_admin(
    db: Database, new: domain.NewAdmin, *, if_absent: bool = False
) -> Admin | None:
    """Check ``new`` (INVALID_ARGUMENT: weak password, bad e-mail or phone), hash its
    password off the event loop, insert it (NOT_FOUND role; ALREADY_EXISTS e-mail or
    phone taken, or None with ``if_absent``). The admin enrols TOTP at first login."""
    checked = domain.check_new_admin(new)
    password_hash = await auth_domain.new_password_hash(new.password)
    try:
        async with db.transaction() as conn:
            return await domain.create_admin(checked, password_hash, if_absent=if_absent, conn=conn)
    except IntegrityError:
        # A concurrent CreateAdmin took the e-mail or phone between check and insert.
        raise AlreadyExists(
            "another admin uses this e-mail address or phone number", reason="CONTACT_TAKEN"
        ) from None


@dataclass(frozen=True)
class CreatedServiceAccount:
    account: ServiceAccount
    #: Shown once to its creator; only its argon2id hash is stored.
    client_secret: str = field(repr=False)


async def create_service_account(
    db: Database,
    new: domain.NewServiceAccount,
    *,
    created_by: int | None = None,
) -> CreatedServiceAccount:
    """An active service account holding ``new.scopes`` (server/auth/scopes.py; none by
    default) and its client secret, shown once (only its hash is stored)."""
    checked = domain.check_new_service_account(new, f"svc_{secrets.token_hex(8)}")
    secret = new_opaque_token("gcs")
    secret_hash = await auth_domain.new_secret_hash(secret)
    try:
        async with db.transaction() as conn:
            account = await domain.create_service_account(
                checked, secret_hash, created_by=created_by, conn=conn
            )
    except IntegrityError:
        raise AlreadyExists(f"service account {checked.client_id} exists") from None
    return CreatedServiceAccount(account, secret)


async def set_service_account_scopes(
    db: Database, client_id: str, scopes: Iterable[str]
) -> ServiceAccount:
    """Replace a service account's scopes (see domain.set_service_account_scopes)."""
    async with db.transaction() as conn:
        return await domain.set_service_account_scopes(client_id, scopes, conn=conn)


async def list_service_accounts(db: Database) -> list[ServiceAccount]:
    """Every service account, by name (the command line)."""
    async with db.read_only() as conn:
        accounts, _ = await domain.list_service_accounts(conn=conn)
    return accounts
