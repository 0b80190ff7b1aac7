"""Identity flows: registration, logins (password, OTP, admin MFA), sessions with
rotating refresh tokens, password change and reset, profile, service tokens.

Plain async functions over the engine; no grpc here. Secrets never leave this module
except the tokens handed to their owner; nothing secret is logged or audited.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import string
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.audit.scope import audit_change, set_actor
from server.auth import queries, totp
from server.auth.identifiers import normalize_email, normalize_phone
from server.auth.password_policy import normalize_password, password_problem
from server.auth.passwords import hash_password, needs_rehash, verify_password
from server.auth.principal import Principal
from server.auth.security import Security
from server.auth.throttle import keys_for
from server.auth.tokens import hashes_equal, new_opaque_token, new_otp_code, otp_hash, token_hash
from server.core import db, pagination
from server.core.config import Settings
from server.core.crypto import SecretBox
from server.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from server.core.messaging import OutboundMessage
from server.core.peers import peer_ip

USER_ROLE = "User"
SERVICE_ROLE = "Service"
OTP_RESEND_SECONDS = 30
MAX_MFA_ATTEMPTS = 5
_DUMMY_HASH = hash_password("gencharge-timing-equaliser")
_REFERRAL_ALPHABET = string.ascii_uppercase + string.digits
_SIX_DIGITS = re.compile(r"[0-9]{6}")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Client:
    """Where a call comes from (for sessions, throttling and audit)."""

    peer: str | None = None
    user_agent: str | None = None

    @property
    def ip(self) -> str | None:
        return peer_ip(self.peer) if self.peer else None


@dataclass(frozen=True)
class Tokens:
    access_token: str
    access_expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime
    session_id: str


@dataclass(frozen=True)
class MfaChallengeResult:
    challenge_token: str
    expires_at: datetime
    enrolment_secret: str | None = None
    enrolment_uri: str | None = None


@dataclass(frozen=True)
class LoginResult:
    tokens: Tokens | None = None
    challenge: MfaChallengeResult | None = None


@dataclass
class Auth:
    """What the flows need: the engine, settings and the security machinery."""

    engine: AsyncEngine
    settings: Settings
    security: Security
    _role_ids: dict[str, int] = field(default_factory=dict)

    async def role_id(self, conn: AsyncConnection, name: str) -> int:
        cached = self._role_ids.get(name)
        if cached is None:
            found = await queries.role_id_by_name(conn, name)
            if found is None:
                raise FailedPrecondition(f"role {name!r} is missing; load reference data")
            self._role_ids[name] = cached = found
        return cached


def _now() -> datetime:
    return datetime.now(UTC)


async def _hash(password: str) -> str:
    return await asyncio.to_thread(hash_password, normalize_password(password))


async def _verify(password_hash: str | None, password: str) -> bool:
    """Constant work whether or not the account exists (no timing oracle)."""
    candidate = normalize_password(password)
    ok = await asyncio.to_thread(verify_password, password_hash or _DUMMY_HASH, candidate)
    return ok and password_hash is not None


def _check_password(field_name: str, password: str, context: Sequence[str]) -> None:
    problem = password_problem(password, context=[c for c in context if c])
    if problem:
        raise InvalidArgument.field(field_name, problem)


# --- sessions and tokens ------------------------------------------------------------------


async def _open_session(
    auth: Auth,
    conn: AsyncConnection,
    *,
    kind: str,
    principal_id: int,
    role_name: str,
    client: Client,
) -> Tokens:
    refresh = new_opaque_token("rt")
    refresh_expires = _now() + timedelta(seconds=auth.settings.refresh_token_ttl_seconds)
    session_id = await queries.insert_session(
        conn,
        user_id=principal_id if kind == "user" else None,
        admin_id=principal_id if kind == "admin" else None,
        refresh_hash=token_hash(refresh),
        expires_at=refresh_expires,
        user_agent=(client.user_agent or "")[:256] or None,
        ip_address=client.ip,
    )
    access, access_expires = auth.security.tokens.issue(
        principal_type=kind,
        principal_id=str(principal_id),
        role=role_name or kind,
        session_id=str(session_id),
    )
    set_actor(f"{kind}:{principal_id}")
    return Tokens(access, access_expires, refresh, refresh_expires, str(session_id))


def _forget(auth: Auth, session_ids: Sequence[uuid.UUID]) -> None:
    for sid in session_ids:
        auth.security.authenticator.forget_session(str(sid))


# --- registration -------------------------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    name: str
    email: str
    phone_number: str
    password: str
    user_type: str | None
    referral_code: str


def _validate_registration(reg: Registration) -> tuple[str | None, str | None]:
    violations: list[FieldViolation] = []
    name = reg.name.strip()
    if not 1 <= len(name) <= 100:
        violations.append(FieldViolation("name", "must have 1 to 100 characters"))
    email = phone = None
    if reg.email:
        email = normalize_email(reg.email)
        if email is None:
            violations.append(FieldViolation("email", "is not a valid e-mail address"))
    if reg.phone_number:
        phone = normalize_phone(reg.phone_number)
        if phone is None:
            violations.append(
                FieldViolation("phone_number", "must be a 10-digit Indian mobile number")
            )
    if not reg.email and not reg.phone_number:
        violations.append(
            FieldViolation("email", "an e-mail address or a phone number is required")
        )
    if reg.user_type is None:
        violations.append(FieldViolation("user_type", "must be prepaid or postpaid"))
    problem = password_problem(reg.password, context=[name, reg.email, reg.phone_number])
    if problem:
        violations.append(FieldViolation("password", problem))
    if violations:
        raise InvalidArgument.of(violations)
    return email, phone


async def register(auth: Auth, reg: Registration, client: Client) -> tuple[Row[Any], Tokens]:
    email, phone = _validate_registration(reg)
    await auth.security.throttle.check(keys_for("login", account=None, peer=client.ip))
    password_hash = await _hash(reg.password)
    referral = reg.referral_code.strip().upper()
    for _ in range(5):
        try:
            async with db.transaction(auth.engine) as conn:
                if referral and not await queries.referral_code_exists(conn, referral):
                    raise InvalidArgument.field("referral_code", "no user has this referral code")
                user_id = await queries.insert_user(
                    conn,
                    {
                        "name": reg.name.strip(),
                        "email": email,
                        "phone_number": phone,
                        "password_hash": password_hash,
                        "user_type": reg.user_type,
                        "referral_code": "".join(
                            secrets.choice(_REFERRAL_ALPHABET) for _ in range(8)
                        ),
                        "referred_by": referral or None,
                        "role_id": await auth.role_id(conn, USER_ROLE),
                    },
                )
                tokens = await _open_session(
                    auth,
                    conn,
                    kind="user",
                    principal_id=user_id,
                    role_name=USER_ROLE,
                    client=client,
                )
                audit_change("Users", "INSERT", {"user_id": user_id, "referred_by": referral})
                row = await queries.user_by_id(conn, user_id)
                assert row is not None
                return row, tokens
        except IntegrityError as exc:
            constraint = str(getattr(exc.orig, "constraint_name", "") or exc.orig)
            if "email" in constraint:
                raise AlreadyExists(
                    "an account with this e-mail address exists", reason="EMAIL_TAKEN"
                ) from None
            if "phone" in constraint:
                raise AlreadyExists(
                    "an account with this phone number exists", reason="PHONE_TAKEN"
                ) from None
            if "referral_code" not in constraint:
                raise
            # A generated referral code collided: try another.
    raise FailedPrecondition("could not allocate a referral code; try again")


# --- password login -----------------------------------------------------------------------


def _identifier(email: str, phone_number: str) -> tuple[str | None, str | None, str]:
    if email:
        normalized = normalize_email(email)
        if normalized is None:
            raise InvalidArgument.field("email", "is not a valid e-mail address")
        return normalized, None, normalized
    if phone_number:
        phone = normalize_phone(phone_number)
        if phone is None:
            raise InvalidArgument.field("phone_number", "must be a 10-digit Indian mobile number")
        return None, phone, phone
    raise InvalidArgument.field("email", "an e-mail address or a phone number is required")


INVALID_CREDENTIALS = "INVALID_CREDENTIALS"


async def login(
    auth: Auth, *, email: str, phone_number: str, password: str, admin: bool, client: Client
) -> LoginResult:
    by_email, by_phone, account = _identifier(email, phone_number)
    if not password:
        raise InvalidArgument.field("password", "is required")
    kind = "admin" if admin else "user"
    keys = keys_for("login", account=f"{kind}:{account}", peer=client.ip)
    await auth.security.throttle.check(keys)
    async with db.read_only(auth.engine) as conn:
        if admin:
            row = await queries.admin_by_login(conn, email=by_email, phone_number=by_phone)
        else:
            row = await queries.user_by_login(conn, email=by_email, phone_number=by_phone)
    if not await _verify(row.password_hash if row else None, password):
        await auth.security.throttle.failure(keys)
        raise Unauthenticated("wrong e-mail/phone number or password", reason=INVALID_CREDENTIALS)
    assert row is not None
    await auth.security.throttle.success(keys)
    if row.status != "active":
        raise PermissionDenied("this account is blocked", reason="ACCOUNT_BLOCKED")
    principal_id = int(row.admin_id if admin else row.user_id)
    if needs_rehash(row.password_hash):
        new_hash = await _hash(password)
        async with db.transaction(auth.engine) as conn:
            update = queries.update_admin if admin else queries.update_user
            await update(conn, principal_id, {"password_hash": new_hash})
    if admin:
        return LoginResult(challenge=await _mfa_challenge(auth, row, client))
    async with db.transaction(auth.engine) as conn:
        tokens = await _open_session(
            auth,
            conn,
            kind="user",
            principal_id=principal_id,
            role_name=row.role_name or USER_ROLE,
            client=client,
        )
        audit_change("Sessions", "INSERT", {"session_id": tokens.session_id, "method": "password"})
    return LoginResult(tokens=tokens)


# --- admin MFA ----------------------------------------------------------------------------


async def _mfa_challenge(auth: Auth, admin: Row[Any], client: Client) -> MfaChallengeResult:
    challenge = new_opaque_token("mfa")
    expires = _now() + timedelta(seconds=auth.settings.mfa_challenge_ttl_seconds)
    enrolling = not (admin.mfa_enabled and admin.totp_secret)
    secret = totp.new_secret() if enrolling else None
    async with db.transaction(auth.engine) as conn:
        await queries.insert_mfa_challenge(
            conn,
            {
                "challenge_hash": token_hash(challenge),
                "admin_id": admin.admin_id,
                "enrolment": enrolling,
                "pending_secret": (
                    auth.security.secret_box.seal(secret, associated_data=_totp_aad(admin.admin_id))
                    if secret
                    else None
                ),
                "expires_at": expires,
                "user_agent": client.user_agent,
                "ip_address": client.ip,
            },
        )
        set_actor(f"admin:{admin.admin_id}")
        audit_change(
            "MfaChallenges", "INSERT", {"admin_id": admin.admin_id, "enrolment": enrolling}
        )
    if secret is None:
        return MfaChallengeResult(challenge, expires)
    return MfaChallengeResult(
        challenge,
        expires,
        enrolment_secret=secret,
        enrolment_uri=totp.provisioning_uri(secret, admin.email or f"admin-{admin.admin_id}"),
    )


def _totp_aad(admin_id: int) -> bytes:
    return f"admins.totp_secret:{admin_id}".encode()


def _open_totp_secret(box: SecretBox, sealed: str, aad: bytes, admin_id: int) -> str:
    try:
        return box.open(sealed, associated_data=aad)
    except ValueError:
        # The data key changed without GENCHARGE_DATA_ENCRYPTION_PREVIOUS_KEYS (or the
        # row was tampered with): an operator's problem, not a wrong code.
        log.error(
            "an admin's TOTP secret does not open with the configured data keys",
            extra={"admin_id": admin_id},
        )
        raise FailedPrecondition(
            "the second factor cannot be checked: the stored TOTP secret does not open "
            "with the server's data keys; ask an operator",
            reason="MFA_SECRET_UNREADABLE",
        ) from None


async def verify_mfa(auth: Auth, *, challenge_token: str, code: str, client: Client) -> Tokens:
    if not challenge_token:
        raise InvalidArgument.field("challenge_token", "is required")
    if not code:
        raise InvalidArgument.field("totp_code", "is required")
    keys = keys_for("mfa", account=token_hash(challenge_token), peer=client.ip)
    await auth.security.throttle.check(keys)
    failure: str | None = None
    tokens: Tokens | None = None
    async with db.transaction(auth.engine) as conn:
        challenge = await queries.mfa_challenge_for_update(conn, token_hash(challenge_token))
        if (
            challenge is None
            or challenge.consumed_at is not None
            or challenge.expires_at <= _now()
            or challenge.attempts >= MAX_MFA_ATTEMPTS
        ):
            failure = "the MFA challenge is invalid or has expired; log in again"
        else:
            admin = await queries.admin_by_id(conn, challenge.admin_id, lock=True)
            sealed = (
                challenge.pending_secret if challenge.enrolment else (admin and admin.totp_secret)
            )
            step = None
            box = auth.security.secret_box
            if admin is not None and admin.status == "active" and sealed:
                aad = _totp_aad(admin.admin_id)
                secret = _open_totp_secret(box, sealed, aad, int(admin.admin_id))
                step = totp.verify(secret, code, now=_now(), last_step=admin.totp_last_step)
            if step is None or admin is None:
                last = challenge.attempts + 1 >= MAX_MFA_ATTEMPTS
                await queries.mfa_attempt(conn, challenge.challenge_hash, consume=last)
                failure = "wrong or reused authentication code"
            else:
                await queries.mfa_attempt(conn, challenge.challenge_hash, consume=True)
                values: dict[str, Any] = {"totp_last_step": step}
                if challenge.enrolment:
                    values.update(totp_secret=challenge.pending_secret, mfa_enabled=True)
                elif sealed and not box.sealed_with_current_key(sealed, associated_data=aad):
                    # Sealed under a retired data key: re-seal under the current one.
                    values.update(totp_secret=box.seal(secret, associated_data=aad))
                await queries.update_admin(conn, admin.admin_id, values)
                tokens = await _open_session(
                    auth,
                    conn,
                    kind="admin",
                    principal_id=int(admin.admin_id),
                    role_name=admin.role_name or "",
                    client=client,
                )
                audit_change(
                    "Sessions",
                    "INSERT",
                    {
                        "session_id": tokens.session_id,
                        "method": "password+totp",
                        "mfa_enrolled": bool(challenge.enrolment),
                    },
                )
    if failure is not None or tokens is None:
        await auth.security.throttle.failure(keys)
        raise Unauthenticated(failure or "MFA failed", reason="MFA_FAILED")
    return tokens


# --- phone OTP ----------------------------------------------------------------------------


def _phone(value: str) -> str:
    phone = normalize_phone(value)
    if phone is None:
        raise InvalidArgument.field("phone_number", "must be a 10-digit Indian mobile number")
    return phone


async def request_otp(auth: Auth, *, phone_number: str, client: Client) -> tuple[datetime, int]:
    """Send a login code; the same answer whether or not the number has an account."""
    phone = _phone(phone_number)
    keys = keys_for("otp", account=phone, peer=client.ip)
    await auth.security.throttle.check(keys)
    ttl = auth.settings.otp_ttl_seconds
    code = new_otp_code()
    async with db.transaction(auth.engine) as conn:
        latest = await queries.latest_otp(conn, phone_number=phone, purpose="login")
        if latest is not None:
            wait = OTP_RESEND_SECONDS - (_now() - latest.created_at).total_seconds()
            if wait > 0:
                raise ResourceExhausted(
                    f"a code was sent moments ago; try again in {int(wait) + 1} seconds",
                    reason="OTP_RESEND_TOO_SOON",
                    metadata={"retry_after_seconds": str(int(wait) + 1)},
                )
        user = await queries.user_by_login(conn, email=None, phone_number=phone)
        await queries.retire_open_otps(conn, phone_number=phone, purpose="login")
        expires = _now() + timedelta(seconds=ttl)
        otp_id = await queries.insert_otp(
            conn, phone_number=phone, purpose="login", expires_at=expires
        )
        await queries.set_otp_hash(
            conn,
            otp_id,
            otp_hash(
                code,
                phone_number=phone,
                purpose="login",
                otp_id=otp_id,
                pepper=auth.security.otp_pepper,
            ),
        )
        audit_change("OtpCodes", "INSERT", {"otp_id": otp_id})
    # Count every send against the pair and peer limits, so a flood of requests trips.
    await auth.security.throttle.failure(keys_for("otp", account=None, peer=client.ip))
    if user is not None and user.status == "active":
        await auth.security.sender.send(
            OutboundMessage(
                channel="sms",
                to=phone,
                purpose="login_otp",
                body=f"{code} is your GenCharge login code. It expires in {ttl // 60} minutes. "
                "Never share it.",
            )
        )
    return expires, OTP_RESEND_SECONDS


async def verify_otp(auth: Auth, *, phone_number: str, code: str, client: Client) -> Tokens:
    phone = _phone(phone_number)
    if not _SIX_DIGITS.fullmatch(code):
        raise InvalidArgument.field("code", "must be the 6-digit code")
    keys = keys_for("otp", account=phone, peer=client.ip)
    await auth.security.throttle.check(keys)
    tokens: Tokens | None = None
    blocked = False
    async with db.transaction(auth.engine) as conn:
        otp = await queries.latest_otp(conn, phone_number=phone, purpose="login")
        usable = (
            otp is not None
            and otp.consumed_at is None
            and otp.expires_at > _now()
            and otp.attempts < auth.settings.otp_max_attempts
        )
        if otp is not None and usable:
            expected = otp_hash(
                code,
                phone_number=phone,
                purpose="login",
                otp_id=otp.otp_id,
                pepper=auth.security.otp_pepper,
            )
            if hashes_equal(expected, otp.code_hash):
                await queries.otp_attempt(conn, otp.otp_id, consume=True)
                user = await queries.user_by_login(conn, email=None, phone_number=phone)
                if user is not None and user.status == "active":
                    tokens = await _open_session(
                        auth,
                        conn,
                        kind="user",
                        principal_id=int(user.user_id),
                        role_name=user.role_name or USER_ROLE,
                        client=client,
                    )
                    audit_change(
                        "Sessions", "INSERT", {"session_id": tokens.session_id, "method": "otp"}
                    )
                else:
                    blocked = user is not None
            else:
                last = otp.attempts + 1 >= auth.settings.otp_max_attempts
                await queries.otp_attempt(conn, otp.otp_id, consume=last)
    if tokens is not None:
        await auth.security.throttle.success(keys)
        return tokens
    if blocked:
        raise PermissionDenied("this account is blocked", reason="ACCOUNT_BLOCKED")
    await auth.security.throttle.failure(keys)
    raise Unauthenticated("the code is wrong or has expired", reason="INVALID_OTP")


# --- refresh, logout, sessions ------------------------------------------------------------


async def refresh(auth: Auth, *, refresh_token: str, client: Client) -> Tokens:
    if not refresh_token:
        raise InvalidArgument.field("refresh_token", "is required")
    old_hash = token_hash(refresh_token)
    new_refresh = new_opaque_token("rt")
    new_expires = _now() + timedelta(seconds=auth.settings.refresh_token_ttl_seconds)
    reused: uuid.UUID | None = None
    tokens: Tokens | None = None
    async with db.transaction(auth.engine) as conn:
        row = await queries.rotate_refresh_token(
            conn, old_hash=old_hash, new_hash=token_hash(new_refresh), expires_at=new_expires
        )
        if row is not None:
            kind = "user" if row.user_id is not None else "admin"
            principal_id = int(row.user_id if row.user_id is not None else row.admin_id)
            owner = (
                await queries.user_by_id(conn, principal_id)
                if kind == "user"
                else await queries.admin_by_id(conn, principal_id)
            )
            access, access_expires = auth.security.tokens.issue(
                principal_type=kind,
                principal_id=str(principal_id),
                role=(owner.role_name if owner else "") or kind,
                session_id=str(row.session_id),
            )
            set_actor(f"{kind}:{principal_id}")
            audit_change("Sessions", "UPDATE", {"session_id": str(row.session_id), "rotated": True})
            tokens = Tokens(access, access_expires, new_refresh, new_expires, str(row.session_id))
        else:
            reused = await queries.session_of_rotated_token(conn, old_hash)
            if reused is not None:
                revoked = await queries.revoke_sessions(
                    conn, reason="refresh token reuse", session_id=reused
                )
                _forget(auth, revoked)
                audit_change(
                    "Sessions", "UPDATE", {"session_id": str(reused), "revoked": "token reuse"}
                )
    if tokens is not None:
        return tokens
    if reused is not None:
        raise Unauthenticated(
            "this refresh token was already used; the session has been ended for safety",
            reason="REFRESH_TOKEN_REUSED",
        )
    raise Unauthenticated("invalid or expired refresh token", reason="INVALID_REFRESH_TOKEN")


def _owner_filter(who: Principal) -> dict[str, int]:
    if who.kind == "user":
        return {"user_id": who.numeric_id}
    if who.kind == "admin":
        return {"admin_id": who.numeric_id}
    raise PermissionDenied("service accounts have no sessions", reason="SESSION_ONLY")


async def logout(auth: Auth, who: Principal, *, all_sessions: bool) -> None:
    owner = _owner_filter(who)
    async with db.transaction(auth.engine) as conn:
        if all_sessions:
            revoked = await queries.revoke_sessions(
                conn,
                reason="logout (all)",
                user_id=owner.get("user_id"),
                admin_id=owner.get("admin_id"),
            )
        else:
            assert who.session_id is not None
            revoked = await queries.revoke_sessions(
                conn,
                reason="logout",
                session_id=uuid.UUID(who.session_id),
                user_id=owner.get("user_id"),
                admin_id=owner.get("admin_id"),
            )
        audit_change("Sessions", "UPDATE", {"revoked": [str(s) for s in revoked]})
    _forget(auth, revoked)


async def list_sessions(
    auth: Auth, who: Principal, *, include_inactive: bool, page_size: int, page_token: str
) -> tuple[list[Row[Any]], str]:
    owner = _owner_filter(who)
    page = pagination.parse(page_size, page_token, {"sessions": include_inactive, **owner})
    after = None
    if page.after is not None:
        try:
            after = (datetime.fromisoformat(page.after[0]), uuid.UUID(page.after[1]))
        except (TypeError, ValueError, IndexError):
            raise InvalidArgument.field(
                "page_token", "is not a token this service issued"
            ) from None
    async with db.read_only(auth.engine) as conn:
        rows = await queries.list_sessions(
            conn,
            user_id=owner.get("user_id"),
            admin_id=owner.get("admin_id"),
            include_inactive=include_inactive,
            after=after,
            limit=page.fetch,
        )
    items, more = pagination.split(list(rows), page)
    last = items[-1] if items else None
    token = page.next_token(
        [last.login_time.isoformat(), str(last.session_id)] if last else None, more
    )
    return items, token


def _session_uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument.field("session_id", "is not a session id") from None


async def revoke_session(auth: Auth, who: Principal, session_id: str) -> None:
    owner = _owner_filter(who)
    sid = _session_uuid(session_id)
    async with db.transaction(auth.engine) as conn:
        row = await queries.session_owner(conn, sid)
        mine = row is not None and all(getattr(row, k) == v for k, v in owner.items())
        if not mine:
            raise NotFound(f"session {session_id} not found")
        revoked = await queries.revoke_sessions(conn, reason="revoked by owner", session_id=sid)
        audit_change("Sessions", "UPDATE", {"session_id": session_id, "revoked": True})
    _forget(auth, revoked)


# --- passwords ----------------------------------------------------------------------------


async def change_password(
    auth: Auth, who: Principal, *, current_password: str, new_password: str, client: Client
) -> None:
    _owner_filter(who)
    keys = keys_for("login", account=who.subject, peer=client.ip)
    await auth.security.throttle.check(keys)
    async with db.read_only(auth.engine) as conn:
        row = (
            await queries.user_by_id(conn, who.numeric_id)
            if who.kind == "user"
            else await queries.admin_by_id(conn, who.numeric_id)
        )
    if row is None or not await _verify(row.password_hash, current_password):
        await auth.security.throttle.failure(keys)
        raise InvalidArgument(
            "the current password is wrong",
            violations=[FieldViolation("current_password", "is wrong")],
            reason=INVALID_CREDENTIALS,
        )
    if current_password == new_password:
        raise InvalidArgument.field("new_password", "must differ from the current password")
    _check_password("new_password", new_password, [row.name, row.email, row.phone_number])
    new_hash = await _hash(new_password)
    assert who.session_id is not None
    async with db.transaction(auth.engine) as conn:
        update = queries.update_user if who.kind == "user" else queries.update_admin
        await update(conn, who.numeric_id, {"password_hash": new_hash})
        revoked = await queries.revoke_sessions(
            conn,
            reason="password changed",
            except_session=uuid.UUID(who.session_id),
            user_id=_owner_filter(who).get("user_id"),
            admin_id=_owner_filter(who).get("admin_id"),
        )
        audit_change(
            "Users" if who.kind == "user" else "Admins",
            "UPDATE",
            {"password_changed": True, "sessions_revoked": len(revoked)},
        )
    await auth.security.throttle.success(keys)
    _forget(auth, revoked)


async def request_password_reset(
    auth: Auth, *, email: str, phone_number: str, admin: bool, client: Client
) -> None:
    by_email, by_phone, account = _identifier(email, phone_number)
    keys = keys_for("password_reset", account=account, peer=client.ip)
    await auth.security.throttle.check(keys)
    # Every request counts, so the endpoint cannot be used to flood someone's inbox.
    await auth.security.throttle.failure(keys)
    if admin:
        return  # admin passwords are reset by another admin; same answer (no enumeration)
    token = new_opaque_token("pr")
    ttl = auth.settings.password_reset_ttl_seconds
    async with db.transaction(auth.engine) as conn:
        user = await queries.user_by_login(conn, email=by_email, phone_number=by_phone)
        if user is None or user.status != "active":
            return
        await queries.insert_reset_token(
            conn,
            token_hash=token_hash(token),
            user_id=int(user.user_id),
            expires_at=_now() + timedelta(seconds=ttl),
        )
        audit_change("PasswordResetTokens", "INSERT", {"user_id": int(user.user_id)})
    await auth.security.sender.send(
        OutboundMessage(
            channel="email" if by_email else "sms",
            to=by_email or by_phone or "",
            purpose="password_reset",
            body=f"Your GenCharge password reset token is {token} . It expires in "
            f"{ttl // 60} minutes and works once. If you did not ask for it, ignore this.",
        )
    )


async def reset_password(auth: Auth, *, reset_token: str, new_password: str) -> None:
    if not reset_token:
        raise InvalidArgument.field("reset_token", "is required")
    revoked: list[uuid.UUID] = []
    async with db.transaction(auth.engine) as conn:
        user_id = await queries.consume_reset_token(conn, token_hash(reset_token))
        if user_id is None:
            raise Unauthenticated(
                "the reset token is invalid, used or expired", reason="INVALID_RESET_TOKEN"
            )
        user = await queries.user_by_id(conn, user_id, lock=True)
        assert user is not None
        _check_password("new_password", new_password, [user.name, user.email, user.phone_number])
        await queries.update_user(conn, user_id, {"password_hash": await _hash(new_password)})
        await queries.retire_reset_tokens(conn, user_id)
        revoked = await queries.revoke_sessions(conn, reason="password reset", user_id=user_id)
        set_actor(f"user:{user_id}")
        audit_change("Users", "UPDATE", {"password_reset": True, "sessions_revoked": len(revoked)})
    _forget(auth, revoked)


# --- profile ------------------------------------------------------------------------------


async def me(auth: Auth, who: Principal) -> Row[Any]:
    async with db.read_only(auth.engine) as conn:
        if who.kind == "user":
            row = await queries.user_by_id(conn, who.numeric_id)
        elif who.kind == "admin":
            row = await queries.admin_by_id(conn, who.numeric_id)
        else:
            row = await queries.service_account_by_client_id(conn, who.id)
    if row is None:
        raise NotFound("your account no longer exists")
    return row


PROFILE_FIELDS = ("name", "email", "phone_number")


async def update_me(
    auth: Auth, who: Principal, *, changes: dict[str, str], paths: Sequence[str]
) -> Row[Any]:
    owner = _owner_filter(who)
    unknown = [p for p in paths if p not in PROFILE_FIELDS]
    if not paths or unknown:
        raise InvalidArgument.field("update_mask", f"must list some of {', '.join(PROFILE_FIELDS)}")
    values: dict[str, Any] = {}
    violations: list[FieldViolation] = []
    for path in paths:
        value = changes.get(path, "")
        if path == "name":
            if not 1 <= len(value.strip()) <= 100:
                violations.append(FieldViolation("profile.name", "must have 1 to 100 characters"))
            values["name"] = value.strip()
        elif path == "email":
            email = normalize_email(value) if value else None
            if value and email is None:
                violations.append(FieldViolation("profile.email", "is not a valid e-mail address"))
            values["email"] = email
        else:
            phone = normalize_phone(value) if value else None
            if value and phone is None:
                violations.append(
                    FieldViolation(
                        "profile.phone_number", "must be a 10-digit Indian mobile number"
                    )
                )
            values["phone_number"] = phone
    if violations:
        raise InvalidArgument.of(violations)
    try:
        async with db.transaction(auth.engine) as conn:
            current = (
                await queries.user_by_id(conn, who.numeric_id, lock=True)
                if "user_id" in owner
                else await queries.admin_by_id(conn, who.numeric_id, lock=True)
            )
            assert current is not None
            email = values.get("email", current.email)
            phone = values.get("phone_number", current.phone_number)
            if not email and not phone:
                raise FailedPrecondition(
                    "an account needs an e-mail address or a phone number",
                    reason="CONTACT_REQUIRED",
                )
            if "user_id" in owner:
                await queries.update_user(conn, who.numeric_id, values)
            else:
                await queries.update_admin(conn, who.numeric_id, values)
            audit_change(
                "Users" if "user_id" in owner else "Admins",
                "UPDATE",
                {"fields": sorted(values)},
            )
    except IntegrityError as exc:
        constraint = str(getattr(exc.orig, "constraint_name", "") or exc.orig)
        what = "e-mail address" if "email" in constraint else "phone number"
        raise AlreadyExists(f"another account uses this {what}", reason="CONTACT_TAKEN") from None
    return await me(auth, who)


# --- service accounts ---------------------------------------------------------------------


async def issue_service_token(
    auth: Auth, *, client_id: str, client_secret: str, client: Client
) -> tuple[str, datetime]:
    if not client_id:
        raise InvalidArgument.field("client_id", "is required")
    if not client_secret:
        raise InvalidArgument.field("client_secret", "is required")
    keys = keys_for("service_token", account=client_id, peer=client.ip)
    await auth.security.throttle.check(keys)
    async with db.read_only(auth.engine) as conn:
        row = await queries.service_account_by_client_id(conn, client_id)
    ok = await asyncio.to_thread(
        verify_password, row.secret_hash if row else _DUMMY_HASH, client_secret
    )
    if not ok or row is None or row.status != "active":
        await auth.security.throttle.failure(keys)
        raise Unauthenticated("invalid client credentials", reason=INVALID_CREDENTIALS)
    await auth.security.throttle.success(keys)
    set_actor(f"service:{client_id}")
    async with db.transaction(auth.engine) as conn:
        await queries.touch_service_account(conn, client_id)
        audit_change("ServiceAccounts", "UPDATE", {"client_id": client_id, "token_issued": True})
    return auth.security.tokens.issue(
        principal_type="service",
        principal_id=client_id,
        role=row.role_name or SERVICE_ROLE,
        session_id=None,
    )


async def create_service_account(
    engine: AsyncEngine, *, name: str, client_id: str | None = None, created_by: int | None = None
) -> tuple[str, str]:
    """Create an active service account; returns (client_id, client_secret).

    The secret is shown once; only its argon2id hash is stored.
    """
    if not 1 <= len(name.strip()) <= 100:
        raise InvalidArgument.field("name", "must have 1 to 100 characters")
    client_id = client_id or f"svc_{secrets.token_hex(8)}"
    secret = new_opaque_token("gcs")
    secret_hash = await asyncio.to_thread(hash_password, secret)
    try:
        async with db.transaction(engine) as conn:
            role_id = await queries.role_id_by_name(conn, SERVICE_ROLE)
            if role_id is None:
                raise FailedPrecondition("the Service role is missing; load reference data")
            await queries.insert_service_account(
                conn,
                {
                    "client_id": client_id,
                    "name": name.strip(),
                    "secret_hash": secret_hash,
                    "role_id": role_id,
                    "created_by": created_by,
                },
            )
            audit_change("ServiceAccounts", "INSERT", {"client_id": client_id})
    except IntegrityError:
        raise AlreadyExists(f"service account {client_id} exists") from None
    return client_id, secret


async def cleanup(engine: AsyncEngine, *, grace: timedelta = timedelta(days=1)) -> int:
    """Delete sessions and one-time rows that expired more than ``grace`` ago."""
    before = _now() - grace
    async with db.transaction(engine) as conn:
        removed = await queries.delete_expired_sessions(conn, before)
        removed += await queries.delete_stale_auth_rows(conn, before)
    return removed
