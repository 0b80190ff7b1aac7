"""SQL for identity and access (SQLAlchemy Core)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core import pagination
from server.core.schema import (
    admins,
    contact_codes,
    mfa_challenges,
    otp_codes,
    password_reset_tokens,
    roles,
    service_accounts,
    session_rotated_tokens,
    sessions,
    users,
    usersarchive,
)

RowT = Row[Any]


async def _one(conn: AsyncConnection, statement: Any) -> RowT | None:
    result = await conn.execute(statement)
    row: RowT | None = result.one_or_none()
    return row


async def _all(conn: AsyncConnection, statement: Any) -> Sequence[RowT]:
    result = await conn.execute(statement)
    rows: Sequence[RowT] = result.all()
    return rows


# --- roles --------------------------------------------------------------------------------


async def role_id_by_name(conn: AsyncConnection, role_name: str) -> int | None:
    row = await _one(
        conn, select(roles.c.role_id).where(func.lower(roles.c.role_name) == role_name.lower())
    )
    return None if row is None else int(row.role_id)


# --- users --------------------------------------------------------------------------------

_USER_COLUMNS = (*users.c, roles.c.role_name)


def _users_with_role() -> Any:
    return select(*_USER_COLUMNS).select_from(
        users.outerjoin(roles, users.c.role_id == roles.c.role_id)
    )


async def user_by_login(
    conn: AsyncConnection, *, email: str | None, phone_number: str | None
) -> RowT | None:
    condition = (
        users.c.email == email if email is not None else users.c.phone_number == phone_number
    )
    return await _one(conn, _users_with_role().where(condition))


async def user_by_id(conn: AsyncConnection, user_id: int, *, lock: bool = False) -> RowT | None:
    statement = _users_with_role().where(users.c.user_id == user_id)
    if lock:
        statement = statement.with_for_update(of=users)
    return await _one(conn, statement)


async def referral_code_exists(conn: AsyncConnection, code: str) -> bool:
    row = await _one(conn, select(literal(1)).where(users.c.referral_code == code))
    return row is not None


async def insert_user(conn: AsyncConnection, values: dict[str, Any]) -> int:
    result = await conn.execute(insert(users).values(**values).returning(users.c.user_id))
    return int(result.scalar_one())


async def update_user(conn: AsyncConnection, user_id: int, values: dict[str, Any]) -> None:
    await conn.execute(
        update(users).where(users.c.user_id == user_id).values(**values, updated_at=func.now())
    )


# --- admins -------------------------------------------------------------------------------

_ADMIN_COLUMNS = (*admins.c, roles.c.role_name)


def _admins_with_role() -> Any:
    return select(*_ADMIN_COLUMNS).select_from(
        admins.outerjoin(roles, admins.c.role_id == roles.c.role_id)
    )


async def admin_by_login(
    conn: AsyncConnection, *, email: str | None, phone_number: str | None
) -> RowT | None:
    condition = (
        admins.c.email == email if email is not None else admins.c.phone_number == phone_number
    )
    return await _one(conn, _admins_with_role().where(condition))


async def admin_by_id(conn: AsyncConnection, admin_id: int, *, lock: bool = False) -> RowT | None:
    statement = _admins_with_role().where(admins.c.admin_id == admin_id)
    if lock:
        statement = statement.with_for_update(of=admins)
    return await _one(conn, statement)


async def update_admin(conn: AsyncConnection, admin_id: int, values: dict[str, Any]) -> None:
    await conn.execute(
        update(admins).where(admins.c.admin_id == admin_id).values(**values, updated_at=func.now())
    )


# --- sessions -----------------------------------------------------------------------------


async def insert_session(
    conn: AsyncConnection,
    *,
    user_id: int | None,
    admin_id: int | None,
    refresh_hash: str,
    expires_at: datetime,
    user_agent: str | None,
    ip_address: str | None,
) -> uuid.UUID:
    result = await conn.execute(
        insert(sessions)
        .values(
            user_id=user_id,
            admin_id=admin_id,
            refresh_token=refresh_hash,
            refresh_token_expires_at=expires_at,
            user_agent=user_agent,
            ip_address=ip_address,
        )
        .returning(sessions.c.session_id)
    )
    session_id: uuid.UUID = result.scalar_one()
    return session_id


async def rotate_refresh_token(
    conn: AsyncConnection, *, old_hash: str, new_hash: str, expires_at: datetime
) -> RowT | None:
    """Swap the current refresh token of an active session; None if ``old_hash`` is
    not the current token of an active, unexpired session. The row lock makes two
    concurrent rotations of one token succeed at most once."""
    row = await _one(
        conn,
        update(sessions)
        .where(
            sessions.c.refresh_token == old_hash,
            sessions.c.is_active,
            sessions.c.refresh_token_expires_at > func.now(),
        )
        .values(refresh_token=new_hash, refresh_token_expires_at=expires_at, last_active=func.now())
        .returning(sessions.c.session_id, sessions.c.user_id, sessions.c.admin_id),
    )
    if row is not None:
        await conn.execute(
            insert(session_rotated_tokens).values(token_hash=old_hash, session_id=row.session_id)
        )
    return row


async def blocked_session(conn: AsyncConnection, token_hash: str) -> bool:
    """Whether ``token_hash`` is the current refresh token of a session whose account
    (user or admin) is no longer active: blocking ended the session."""
    row = await _one(
        conn,
        select(sessions.c.session_id)
        .select_from(
            sessions.outerjoin(users, users.c.user_id == sessions.c.user_id).outerjoin(
                admins, admins.c.admin_id == sessions.c.admin_id
            )
        )
        .where(
            sessions.c.refresh_token == token_hash,
            or_(
                and_(sessions.c.user_id.is_not(None), users.c.status != "active"),
                and_(sessions.c.admin_id.is_not(None), admins.c.status != "active"),
            ),
        ),
    )
    return row is not None


async def session_of_rotated_token(conn: AsyncConnection, token_hash: str) -> uuid.UUID | None:
    row = await _one(
        conn,
        select(session_rotated_tokens.c.session_id).where(
            session_rotated_tokens.c.token_hash == token_hash
        ),
    )
    return None if row is None else row.session_id


async def revoke_sessions(
    conn: AsyncConnection,
    *,
    reason: str,
    session_id: uuid.UUID | None = None,
    user_id: int | None = None,
    admin_id: int | None = None,
    except_session: uuid.UUID | None = None,
) -> list[uuid.UUID]:
    """Deactivate sessions matching all given filters; returns the ids revoked."""
    conditions: list[Any] = [sessions.c.is_active]
    if session_id is not None:
        conditions.append(sessions.c.session_id == session_id)
    if user_id is not None:
        conditions.append(sessions.c.user_id == user_id)
    if admin_id is not None:
        conditions.append(sessions.c.admin_id == admin_id)
    if except_session is not None:
        conditions.append(sessions.c.session_id != except_session)
    rows = await _all(
        conn,
        update(sessions)
        .where(and_(*conditions))
        .values(is_active=False, revoked_at=func.now(), revoked_reason=reason)
        .returning(sessions.c.session_id),
    )
    return [r.session_id for r in rows]


async def session_state(conn: AsyncConnection, session_id: uuid.UUID) -> RowT | None:
    """What the authenticator needs of a session: active?, and its principal's role."""
    principal_role = func.coalesce(users.c.role_id, admins.c.role_id)
    return await _one(
        conn,
        select(
            sessions.c.is_active,
            sessions.c.refresh_token_expires_at,
            sessions.c.user_id,
            sessions.c.admin_id,
            principal_role.label("role_id"),
            roles.c.role_name,
        )
        .select_from(
            sessions.outerjoin(users, sessions.c.user_id == users.c.user_id)
            .outerjoin(admins, sessions.c.admin_id == admins.c.admin_id)
            .outerjoin(roles, roles.c.role_id == principal_role)
        )
        .where(sessions.c.session_id == session_id),
    )


async def list_sessions(
    conn: AsyncConnection,
    *,
    user_id: int | None,
    admin_id: int | None,
    include_inactive: bool,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> Sequence[RowT]:
    live = and_(sessions.c.is_active, sessions.c.refresh_token_expires_at > func.now())
    statement = select(sessions, live.label("live"))
    if user_id is not None:
        statement = statement.where(sessions.c.user_id == user_id)
    else:
        statement = statement.where(sessions.c.admin_id == admin_id)
    if not include_inactive:
        statement = statement.where(live)
    return await _all(
        conn,
        pagination.keyset_query(
            statement, sessions.c.login_time, sessions.c.session_id, after, limit, newest_first=True
        ),
    )


async def session_owner(conn: AsyncConnection, session_id: uuid.UUID) -> RowT | None:
    return await _one(
        conn,
        select(sessions.c.user_id, sessions.c.admin_id, sessions.c.is_active).where(
            sessions.c.session_id == session_id
        ),
    )


async def delete_expired_sessions(conn: AsyncConnection, before: datetime) -> int:
    result = await conn.execute(
        sessions.delete().where(
            or_(
                sessions.c.refresh_token_expires_at < before,
                and_(~sessions.c.is_active, sessions.c.revoked_at < before),
            )
        )
    )
    return int(result.rowcount)


# --- service accounts ---------------------------------------------------------------------

_SERVICE_COLUMNS = (*service_accounts.c, roles.c.role_name)


async def service_account_by_client_id(conn: AsyncConnection, client_id: str) -> RowT | None:
    return await _one(
        conn,
        select(*_SERVICE_COLUMNS)
        .select_from(
            service_accounts.outerjoin(roles, service_accounts.c.role_id == roles.c.role_id)
        )
        .where(service_accounts.c.client_id == client_id),
    )


async def retire_service_tokens(conn: AsyncConnection, moment: datetime) -> int:
    """Set every service account's token cut-off to ``moment`` (never earlier than a
    cut-off it already has); the number of accounts."""
    column = service_accounts.c.tokens_valid_after
    result = await conn.execute(
        update(service_accounts).values(
            tokens_valid_after=func.greatest(func.coalesce(column, moment), moment)
        )
    )
    return int(result.rowcount)


async def touch_service_account(conn: AsyncConnection, client_id: str) -> None:
    await conn.execute(
        update(service_accounts)
        .where(service_accounts.c.client_id == client_id)
        .values(last_used_at=func.now())
    )


# --- one-time codes -----------------------------------------------------------------------


async def insert_otp(
    conn: AsyncConnection, *, phone_number: str, purpose: str, expires_at: datetime
) -> int:
    """Insert a code row (hash filled in by :func:`set_otp_hash`, keyed by the id)."""
    result = await conn.execute(
        insert(otp_codes)
        .values(phone_number=phone_number, purpose=purpose, code_hash="", expires_at=expires_at)
        .returning(otp_codes.c.otp_id)
    )
    return int(result.scalar_one())


async def set_otp_hash(conn: AsyncConnection, otp_id: int, code_hash: str) -> None:
    await conn.execute(
        update(otp_codes).where(otp_codes.c.otp_id == otp_id).values(code_hash=code_hash)
    )


async def retire_open_otps(conn: AsyncConnection, *, phone_number: str, purpose: str) -> None:
    """A new code replaces older unused ones."""
    await conn.execute(
        update(otp_codes)
        .where(
            otp_codes.c.phone_number == phone_number,
            otp_codes.c.purpose == purpose,
            otp_codes.c.consumed_at.is_(None),
        )
        .values(consumed_at=func.now())
    )


async def latest_otp(conn: AsyncConnection, *, phone_number: str, purpose: str) -> RowT | None:
    return await _one(
        conn,
        select(otp_codes)
        .where(otp_codes.c.phone_number == phone_number, otp_codes.c.purpose == purpose)
        .order_by(otp_codes.c.created_at.desc(), otp_codes.c.otp_id.desc())
        .limit(1)
        .with_for_update(),
    )


async def otp_attempt(conn: AsyncConnection, otp_id: int, *, consume: bool) -> None:
    values: dict[str, Any] = {"attempts": otp_codes.c.attempts + 1}
    if consume:
        values["consumed_at"] = func.now()
    await conn.execute(update(otp_codes).where(otp_codes.c.otp_id == otp_id).values(**values))


# --- contact codes (verification and changes of e-mail / phone) --------------------------


def _owner_condition(table: Any, user_id: int | None, admin_id: int | None) -> Any:
    if user_id is not None:
        return table.c.user_id == user_id
    return table.c.admin_id == admin_id


async def contact_in_use(
    conn: AsyncConnection, *, admin: bool, column: str, value: str, except_id: int
) -> bool:
    """Whether another user (or admin, with ``admin``) has ``value`` as its ``column``."""
    table, key = (admins, admins.c.admin_id) if admin else (users, users.c.user_id)
    row = await _one(
        conn, select(literal(1)).where(table.c[column] == value, key != except_id).limit(1)
    )
    return row is not None


async def insert_contact_code(
    conn: AsyncConnection,
    *,
    user_id: int | None,
    admin_id: int | None,
    purpose: str,
    channel: str,
    destination: str,
    expires_at: datetime,
) -> int:
    """Insert a code row (hash filled in by :func:`set_contact_code_hash`, keyed by the id)."""
    result = await conn.execute(
        insert(contact_codes)
        .values(
            user_id=user_id,
            admin_id=admin_id,
            purpose=purpose,
            channel=channel,
            destination=destination,
            code_hash="",
            expires_at=expires_at,
        )
        .returning(contact_codes.c.code_id)
    )
    return int(result.scalar_one())


async def set_contact_code_hash(conn: AsyncConnection, code_id: int, code_hash: str) -> None:
    await conn.execute(
        update(contact_codes).where(contact_codes.c.code_id == code_id).values(code_hash=code_hash)
    )


async def latest_contact_code(
    conn: AsyncConnection, *, purpose: str, user_id: int | None, admin_id: int | None
) -> RowT | None:
    """The owner's newest code of ``purpose``, locked."""
    return await _one(
        conn,
        select(contact_codes)
        .where(
            _owner_condition(contact_codes, user_id, admin_id), contact_codes.c.purpose == purpose
        )
        .order_by(contact_codes.c.created_at.desc(), contact_codes.c.code_id.desc())
        .limit(1)
        .with_for_update(),
    )


async def contact_code_attempt(conn: AsyncConnection, code_id: int, *, consume: bool) -> None:
    values: dict[str, Any] = {"attempts": contact_codes.c.attempts + 1}
    if consume:
        values["consumed_at"] = func.now()
    await conn.execute(
        update(contact_codes).where(contact_codes.c.code_id == code_id).values(**values)
    )


async def retire_contact_codes(
    conn: AsyncConnection,
    *,
    user_id: int | None,
    admin_id: int | None,
    purpose: str | None = None,
) -> None:
    """Use up the owner's open codes (of ``purpose``, or all of them)."""
    conditions: list[Any] = [
        _owner_condition(contact_codes, user_id, admin_id),
        contact_codes.c.consumed_at.is_(None),
    ]
    if purpose is not None:
        conditions.append(contact_codes.c.purpose == purpose)
    await conn.execute(update(contact_codes).where(*conditions).values(consumed_at=func.now()))


# --- password resets ----------------------------------------------------------------------


async def insert_reset_token(
    conn: AsyncConnection, *, token_hash: str, user_id: int, expires_at: datetime
) -> None:
    await conn.execute(
        insert(password_reset_tokens).values(
            token_hash=token_hash, user_id=user_id, expires_at=expires_at
        )
    )


async def consume_reset_token(conn: AsyncConnection, token_hash: str) -> int | None:
    row = await _one(
        conn,
        update(password_reset_tokens)
        .where(
            password_reset_tokens.c.token_hash == token_hash,
            password_reset_tokens.c.used_at.is_(None),
            password_reset_tokens.c.expires_at > func.now(),
        )
        .values(used_at=func.now())
        .returning(password_reset_tokens.c.user_id),
    )
    return None if row is None else int(row.user_id)


async def retire_reset_tokens(conn: AsyncConnection, user_id: int) -> None:
    await conn.execute(
        update(password_reset_tokens)
        .where(
            password_reset_tokens.c.user_id == user_id, password_reset_tokens.c.used_at.is_(None)
        )
        .values(used_at=func.now())
    )


# --- MFA challenges -----------------------------------------------------------------------


async def insert_mfa_challenge(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(mfa_challenges).values(**values))


async def mfa_challenge_for_update(conn: AsyncConnection, challenge_hash: str) -> RowT | None:
    return await _one(
        conn,
        select(mfa_challenges)
        .where(mfa_challenges.c.challenge_hash == challenge_hash)
        .with_for_update(),
    )


async def mfa_attempt(conn: AsyncConnection, challenge_hash: str, *, consume: bool) -> None:
    values: dict[str, Any] = {"attempts": mfa_challenges.c.attempts + 1}
    if consume:
        values["consumed_at"] = func.now()
    await conn.execute(
        update(mfa_challenges)
        .where(mfa_challenges.c.challenge_hash == challenge_hash)
        .values(**values)
    )


async def delete_stale_auth_rows(conn: AsyncConnection, before: datetime) -> int:
    """One-time codes, contact codes, reset tokens and MFA challenges expired before
    ``before``."""
    total = 0
    for table in (otp_codes, contact_codes, password_reset_tokens, mfa_challenges):
        result = await conn.execute(table.delete().where(table.c.expires_at < before))
        total += int(result.rowcount)
    return total


# --- administrators created or reset by operators (server/admin/flows.py) ------------


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


# --- operators' user actions: archive and erasure (server/admin/users) --------------------

#: The personal fields of a user row: what archiving takes out of ``users`` and what
#: erasure removes from ``usersarchive``. Credentials go with them.
_PERSONAL = {
    "name": None,
    "email": None,
    "phone_number": None,
    "password_hash": None,
    "email_verified_at": None,
    "phone_verified_at": None,
}


async def archived_user(conn: AsyncConnection, user_id: int, *, lock: bool = False) -> RowT | None:
    """The user's ``usersarchive`` row (with its role's name), or None."""
    statement = (
        select(*usersarchive.c, roles.c.role_name)
        .select_from(usersarchive.outerjoin(roles, usersarchive.c.role_id == roles.c.role_id))
        .where(usersarchive.c.user_id == user_id)
    )
    if lock:
        statement = statement.with_for_update(of=usersarchive)
    return await _one(conn, statement)


async def archive_user(conn: AsyncConnection, user_id: int) -> None:
    """Copy the user to ``usersarchive`` (the DDS: same structure; the password hash is
    not kept), then leave in ``users`` a blocked row without personal data, so the
    ledger, plans and referrals that point at the id keep their foreign keys and the
    e-mail and phone number are free again."""
    copied = [c.name for c in usersarchive.c if c.name != "archived_at"]
    source = [
        literal(None).label(name) if name == "password_hash" else users.c[name] for name in copied
    ]
    await conn.execute(
        usersarchive.insert().from_select(copied, select(*source).where(users.c.user_id == user_id))
    )
    await conn.execute(
        update(users)
        .where(users.c.user_id == user_id)
        .values(**_PERSONAL, status="blocked", updated_at=func.now())
    )


async def erase_archived_user(conn: AsyncConnection, user_id: int) -> None:
    """Remove the personal fields of an archived user's row (kept: ids, referral codes,
    type, status, balance, dates)."""
    await conn.execute(
        update(usersarchive)
        .where(usersarchive.c.user_id == user_id)
        .values(**_PERSONAL, updated_at=func.now())
    )


async def delete_user_traces(conn: AsyncConnection, user_id: int) -> dict[str, int]:
    """Delete the identity rows that hold a user's personal data beyond the profile:
    sessions (client address, user agent; their rotated-token hashes cascade), contact
    codes (destinations) and password-reset tokens. Counts per table."""
    counts: dict[str, int] = {}
    for table in (sessions, contact_codes, password_reset_tokens):
        result = await conn.execute(table.delete().where(table.c.user_id == user_id))
        counts[table.name] = int(result.rowcount or 0)
    return counts
