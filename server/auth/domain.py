"""Identity rules: registration, logins (password, OTP, admin MFA), sessions with
rotating refresh tokens, password change and reset, profile, verified contacts and
contact changes, service accounts.

Plain async functions over the connection they are given (the keyword argument
``conn``); none opens a transaction or holds an engine. The work around them that
spans several transactions, counts brute-force attempts, sends messages or drops cached
sessions is in server/auth/flows.py. What these functions return are frozen
dataclasses, never database rows. Secrets never leave this module except the tokens
handed to their owner (and the messages that carry a code or reset token to it);
nothing secret is logged or audited.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import string
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from server.audit.scope import audit_change, set_actor
from server.auth import queries, totp
from server.auth.identifiers import normalize_email, normalize_phone
from server.auth.password_policy import normalize_password, password_problem
from server.auth.passwords import hash_password, verify_password
from server.auth.principal import Principal
from server.auth.tokens import (
    TokenService,
    hashes_equal,
    new_opaque_token,
    new_otp_code,
    otp_hash,
    token_hash,
)
from server.core import pagination
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
INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
#: A wrong, used or expired contact code (VerifyContact, StartContactChange, ...).
INVALID_CODE = "INVALID_CODE"
PROFILE_FIELDS = ("name", "email", "phone_number")
#: Profile fields UpdateMe refuses: contacts change through StartContactChange.
CONTACT_FIELDS = ("email", "phone_number")
_DUMMY_HASH = hash_password("gencharge-timing-equaliser")
_REFERRAL_ALPHABET = string.ascii_uppercase + string.digits
_SIX_DIGITS = re.compile(r"[0-9]{6}")

log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --- values -------------------------------------------------------------------------------


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
    access_token: str = field(repr=False)
    access_expires_at: datetime
    refresh_token: str = field(repr=False)
    refresh_expires_at: datetime
    session_id: str


@dataclass(frozen=True)
class MfaChallengeResult:
    challenge_token: str = field(repr=False)
    expires_at: datetime
    enrolment_secret: str | None = field(default=None, repr=False)
    enrolment_uri: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class LoginResult:
    tokens: Tokens | None = None
    challenge: MfaChallengeResult | None = None


@dataclass(frozen=True)
class User:
    user_id: int
    name: str | None
    email: str | None
    phone_number: str | None
    referral_code: str | None
    referred_by: str | None
    user_type: str
    status: str
    wallet_balance: Decimal
    created_at: datetime
    updated_at: datetime
    role_id: int | None
    role_name: str | None
    email_verified: bool
    phone_verified: bool


@dataclass(frozen=True)
class Admin:
    admin_id: int
    name: str | None
    email: str | None
    phone_number: str | None
    status: str
    role_id: int | None
    role_name: str | None
    mfa_enabled: bool
    created_at: datetime
    updated_at: datetime
    email_verified: bool
    phone_verified: bool


@dataclass(frozen=True)
class ServiceAccount:
    service_account_id: int
    client_id: str
    name: str
    role_id: int
    role_name: str | None
    status: str
    created_at: datetime
    created_by: int | None
    last_used_at: datetime | None
    #: What it may do as a service (server/auth/scopes.py), sorted.
    scopes: tuple[str, ...] = ()
    #: What the caller is, for operators (optional).
    description: str | None = None


#: Whoever :func:`me` finds: a customer, an administrator or a service account.
Account = User | Admin | ServiceAccount


@dataclass(frozen=True)
class Session:
    session_id: uuid.UUID
    login_time: datetime
    last_active: datetime
    expires_at: datetime
    is_active: bool
    revoked_at: datetime | None
    user_agent: str | None
    ip_address: str | None
    #: The session of the caller who listed it.
    current: bool


def _user(row: Row[Any]) -> User:
    return User(
        user_id=int(row.user_id),
        name=row.name,
        email=row.email,
        phone_number=row.phone_number,
        referral_code=row.referral_code,
        referred_by=row.referred_by,
        user_type=row.user_type,
        status=row.status,
        wallet_balance=row.wallet_balance,
        created_at=row.created_at,
        updated_at=row.updated_at,
        role_id=row.role_id,
        role_name=row.role_name,
        email_verified=row.email_verified_at is not None,
        phone_verified=row.phone_verified_at is not None,
    )


def admin_of_row(row: Row[Any]) -> Admin:
    """An ``admins`` row (joined with its role name) as an Admin."""
    return Admin(
        admin_id=int(row.admin_id),
        name=row.name,
        email=row.email,
        phone_number=row.phone_number,
        status=row.status,
        role_id=row.role_id,
        role_name=row.role_name,
        mfa_enabled=bool(row.mfa_enabled),
        created_at=row.created_at,
        updated_at=row.updated_at,
        email_verified=row.email_verified_at is not None,
        phone_verified=row.phone_verified_at is not None,
    )


def service_account_of_row(row: Row[Any]) -> ServiceAccount:
    """A ``service_accounts`` row (joined with its role name; never its secret hash) as a
    ServiceAccount."""
    return ServiceAccount(
        service_account_id=int(row.service_account_id),
        client_id=row.client_id,
        name=row.name,
        role_id=row.role_id,
        role_name=row.role_name,
        status=row.status,
        created_at=row.created_at,
        created_by=row.created_by,
        last_used_at=row.last_used_at,
        scopes=tuple(sorted(row.scopes or ())),
        description=getattr(row, "description", None),
    )


# --- what the rules need ------------------------------------------------------------------


class RoleIds:
    """Role name -> role_id, remembered once read (roles are reference data)."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    async def get(self, name: str, *, conn: AsyncConnection) -> int:
        cached = self._ids.get(name)
        if cached is None:
            found = await queries.role_id_by_name(conn, name)
            if found is None:
                raise FailedPrecondition(f"role {name!r} is missing; load reference data")
            self._ids[name] = cached = found
        return cached


@dataclass(frozen=True)
class Issuer:
    """What the rules need to mint and check credentials: the access-token service, the
    data-key box (TOTP secrets), the OTP pepper, the lifetimes in ``settings``, the
    role-id cache and the clock that dates sessions, codes and challenges."""

    tokens: TokenService
    secret_box: SecretBox = field(repr=False)
    otp_pepper: bytes = field(repr=False)
    settings: Settings = field(repr=False)
    roles: RoleIds = field(default_factory=RoleIds, repr=False)
    now: Callable[[], datetime] = _utc_now


# --- passwords (CPU work in a thread; no connection) --------------------------------------


async def new_password_hash(password: str) -> str:
    """The argon2id hash of a (normalised) password, computed off the event loop."""
    return await asyncio.to_thread(hash_password, normalize_password(password))


async def password_ok(password_hash: str | None, password: str) -> bool:
    """Constant work whether or not the account exists (no timing oracle)."""
    candidate = normalize_password(password)
    ok = await asyncio.to_thread(verify_password, password_hash or _DUMMY_HASH, candidate)
    return ok and password_hash is not None


async def new_secret_hash(secret: str) -> str:
    """The argon2id hash of a generated secret (service-account secrets)."""
    return await asyncio.to_thread(hash_password, secret)


def _check_password(field_name: str, password: str, context: Sequence[str | None]) -> None:
    problem = password_problem(password, context=[c for c in context if c])
    if problem:
        raise InvalidArgument.field(field_name, problem)


def _constraint(exc: IntegrityError) -> str:
    return str(getattr(exc.orig, "constraint_name", "") or exc.orig)


# --- sessions and tokens ------------------------------------------------------------------


async def _open_session(
    *,
    conn: AsyncConnection,
    issuer: Issuer,
    kind: str,
    principal_id: int,
    role_name: str,
    client: Client,
) -> Tokens:
    refresh = new_opaque_token("rt")
    refresh_expires = issuer.now() + timedelta(seconds=issuer.settings.refresh_token_ttl_seconds)
    session_id = await queries.insert_session(
        conn,
        user_id=principal_id if kind == "user" else None,
        admin_id=principal_id if kind == "admin" else None,
        refresh_hash=token_hash(refresh),
        expires_at=refresh_expires,
        user_agent=(client.user_agent or "")[:256] or None,
        ip_address=client.ip,
    )
    access, access_expires = issuer.tokens.issue(
        principal_type=kind,
        principal_id=str(principal_id),
        role=role_name or kind,
        session_id=str(session_id),
    )
    set_actor(f"{kind}:{principal_id}")
    return Tokens(access, access_expires, refresh, refresh_expires, str(session_id))


# --- registration -------------------------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    name: str
    email: str
    phone_number: str
    password: str = field(repr=False)
    user_type: str | None
    referral_code: str


@dataclass(frozen=True)
class NewUser:
    """A registration that passed validation (the password is hashed separately)."""

    name: str
    email: str | None
    phone_number: str | None
    user_type: str
    #: The referrer's code as typed, trimmed and upper-cased; "" for none.
    referral: str


def validate_registration(reg: Registration) -> NewUser:
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
    assert reg.user_type is not None
    return NewUser(
        name=name,
        email=email,
        phone_number=phone,
        user_type=reg.user_type,
        referral=reg.referral_code.strip().upper(),
    )


async def register(
    new: NewUser,
    client: Client,
    *,
    password_hash: str,
    conn: AsyncConnection,
    issuer: Issuer,
) -> tuple[User, Tokens]:
    """Create the customer with a fresh referral code and open their first session.

    A generated referral code may collide with an existing one (IntegrityError, see
    :func:`referral_code_collision`): the caller retries in a new transaction."""
    if new.referral and not await queries.referral_code_exists(conn, new.referral):
        raise InvalidArgument.field("referral_code", "no user has this referral code")
    user_id = await queries.insert_user(
        conn,
        {
            "name": new.name,
            "email": new.email,
            "phone_number": new.phone_number,
            "password_hash": password_hash,
            "user_type": new.user_type,
            "referral_code": "".join(secrets.choice(_REFERRAL_ALPHABET) for _ in range(8)),
            "referred_by": new.referral or None,
            "role_id": await issuer.roles.get(USER_ROLE, conn=conn),
        },
    )
    tokens = await _open_session(
        conn=conn,
        issuer=issuer,
        kind="user",
        principal_id=user_id,
        role_name=USER_ROLE,
        client=client,
    )
    audit_change("Users", "INSERT", {"user_id": user_id, "referred_by": new.referral})
    row = await queries.user_by_id(conn, user_id)
    assert row is not None
    return _user(row), tokens


def identifiers_of(new: NewUser) -> list[str]:
    """The login identifiers a registration claims (what Register is throttled on)."""
    return [value for value in (new.email, new.phone_number) if value]


async def registration_conflict(new: NewUser, *, conn: AsyncConnection) -> AlreadyExists | None:
    """The error for a registration whose e-mail or phone another customer already has,
    found before any password is hashed (the insert's unique constraints still decide
    a race, see :func:`contact_taken`)."""
    if new.email and await queries.user_by_login(conn, email=new.email, phone_number=None):
        return AlreadyExists("an account with this e-mail address exists", reason="EMAIL_TAKEN")
    if new.phone_number and await queries.user_by_login(
        conn, email=None, phone_number=new.phone_number
    ):
        return AlreadyExists("an account with this phone number exists", reason="PHONE_TAKEN")
    return None


def contact_taken(exc: IntegrityError) -> AlreadyExists | None:
    """The error for a registration whose e-mail or phone number another account has."""
    constraint = _constraint(exc)
    if "email" in constraint:
        return AlreadyExists("an account with this e-mail address exists", reason="EMAIL_TAKEN")
    if "phone" in constraint:
        return AlreadyExists("an account with this phone number exists", reason="PHONE_TAKEN")
    return None


def referral_code_collision(exc: IntegrityError) -> bool:
    """True when a generated referral code collided (worth another try)."""
    return "referral_code" in _constraint(exc)


# --- password login -----------------------------------------------------------------------


def login_identifier(email: str, phone_number: str) -> tuple[str | None, str | None, str]:
    """(e-mail, phone, account) of a login by e-mail or phone number, normalised."""
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


@dataclass(frozen=True)
class LoginAccount:
    """An account found by its login name, with what the login rules need of it."""

    kind: str  # "user" | "admin"
    principal_id: int
    status: str
    role_name: str | None
    email: str | None
    #: Admins only: an authenticator is enrolled (else the login enrols one).
    mfa_enrolled: bool
    password_hash: str | None = field(repr=False)


async def find_login(
    *, admin: bool, email: str | None, phone_number: str | None, conn: AsyncConnection
) -> LoginAccount | None:
    if admin:
        row = await queries.admin_by_login(conn, email=email, phone_number=phone_number)
    else:
        row = await queries.user_by_login(conn, email=email, phone_number=phone_number)
    if row is None:
        return None
    return LoginAccount(
        kind="admin" if admin else "user",
        principal_id=int(row.admin_id if admin else row.user_id),
        status=row.status,
        role_name=row.role_name,
        email=row.email,
        mfa_enrolled=bool(admin and row.mfa_enabled and row.totp_secret),
        password_hash=row.password_hash,
    )


async def store_password_hash(
    account: LoginAccount, password_hash: str, *, conn: AsyncConnection
) -> None:
    """Replace the stored hash (a rehash with current parameters after a login)."""
    update = queries.update_admin if account.kind == "admin" else queries.update_user
    await update(conn, account.principal_id, {"password_hash": password_hash})


async def open_password_session(
    account: LoginAccount, client: Client, *, conn: AsyncConnection, issuer: Issuer
) -> Tokens:
    """A customer's session after a good password."""
    tokens = await _open_session(
        conn=conn,
        issuer=issuer,
        kind="user",
        principal_id=account.principal_id,
        role_name=account.role_name or USER_ROLE,
        client=client,
    )
    audit_change("Sessions", "INSERT", {"session_id": tokens.session_id, "method": "password"})
    return tokens


# --- admin MFA ----------------------------------------------------------------------------


async def open_mfa_challenge(
    admin: LoginAccount, client: Client, *, conn: AsyncConnection, issuer: Issuer
) -> MfaChallengeResult:
    """An administrator's second step after a good password (with a new TOTP secret to
    enrol when none is enrolled yet)."""
    challenge = new_opaque_token("mfa")
    expires = issuer.now() + timedelta(seconds=issuer.settings.mfa_challenge_ttl_seconds)
    enrolling = not admin.mfa_enrolled
    secret = totp.new_secret() if enrolling else None
    admin_id = admin.principal_id
    await queries.insert_mfa_challenge(
        conn,
        {
            "challenge_hash": token_hash(challenge),
            "admin_id": admin_id,
            "enrolment": enrolling,
            "pending_secret": (
                issuer.secret_box.seal(secret, associated_data=_totp_aad(admin_id))
                if secret
                else None
            ),
            "expires_at": expires,
            "user_agent": client.user_agent,
            "ip_address": client.ip,
        },
    )
    set_actor(f"admin:{admin_id}")
    audit_change("MfaChallenges", "INSERT", {"admin_id": admin_id, "enrolment": enrolling})
    if secret is None:
        return MfaChallengeResult(challenge, expires)
    return MfaChallengeResult(
        challenge,
        expires,
        enrolment_secret=secret,
        enrolment_uri=totp.provisioning_uri(secret, admin.email or f"admin-{admin_id}"),
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


@dataclass(frozen=True)
class MfaOutcome:
    """The admin's session, or why the code was refused (the attempt is counted)."""

    tokens: Tokens | None = None
    failure: str | None = None


async def verify_mfa(
    *,
    challenge_token: str,
    code: str,
    client: Client,
    conn: AsyncConnection,
    issuer: Issuer,
) -> MfaOutcome:
    challenge = await queries.mfa_challenge_for_update(conn, token_hash(challenge_token))
    if (
        challenge is None
        or challenge.consumed_at is not None
        or challenge.expires_at <= issuer.now()
        or challenge.attempts >= MAX_MFA_ATTEMPTS
    ):
        return MfaOutcome(failure="the MFA challenge is invalid or has expired; log in again")
    admin = await queries.admin_by_id(conn, challenge.admin_id, lock=True)
    sealed = challenge.pending_secret if challenge.enrolment else (admin and admin.totp_secret)
    step = None
    box = issuer.secret_box
    if admin is not None and admin.status == "active" and sealed:
        aad = _totp_aad(admin.admin_id)
        secret = _open_totp_secret(box, sealed, aad, int(admin.admin_id))
        step = totp.verify(secret, code, now=issuer.now(), last_step=admin.totp_last_step)
    if step is None or admin is None:
        last = challenge.attempts + 1 >= MAX_MFA_ATTEMPTS
        await queries.mfa_attempt(conn, challenge.challenge_hash, consume=last)
        return MfaOutcome(failure="wrong or reused authentication code")
    await queries.mfa_attempt(conn, challenge.challenge_hash, consume=True)
    values: dict[str, Any] = {"totp_last_step": step}
    if challenge.enrolment:
        values.update(totp_secret=challenge.pending_secret, mfa_enabled=True)
    elif sealed and not box.sealed_with_current_key(sealed, associated_data=aad):
        # Sealed under a retired data key: re-seal under the current one.
        values.update(totp_secret=box.seal(secret, associated_data=aad))
    await queries.update_admin(conn, admin.admin_id, values)
    tokens = await _open_session(
        conn=conn,
        issuer=issuer,
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
    return MfaOutcome(tokens=tokens)


# --- phone OTP ----------------------------------------------------------------------------


def phone_of(value: str) -> str:
    phone = normalize_phone(value)
    if phone is None:
        raise InvalidArgument.field("phone_number", "must be a 10-digit Indian mobile number")
    return phone


def check_otp_format(code: str) -> None:
    if not _SIX_DIGITS.fullmatch(code):
        raise InvalidArgument.field("code", "must be the 6-digit code")


@dataclass(frozen=True)
class OtpIssued:
    expires_at: datetime
    #: The SMS to send; None when no active account has the number verified (nothing
    #: is sent, and the caller gets the same answer).
    message: OutboundMessage | None


async def issue_login_otp(phone: str, *, conn: AsyncConnection, issuer: Issuer) -> OtpIssued:
    """Store a new login code for ``phone`` (replacing older unused ones)."""
    ttl = issuer.settings.otp_ttl_seconds
    code = new_otp_code()
    latest = await queries.latest_otp(conn, phone_number=phone, purpose="login")
    if latest is not None:
        wait = OTP_RESEND_SECONDS - (issuer.now() - latest.created_at).total_seconds()
        if wait > 0:
            raise ResourceExhausted(
                f"a code was sent moments ago; try again in {int(wait) + 1} seconds",
                reason="OTP_RESEND_TOO_SOON",
                metadata={"retry_after_seconds": str(int(wait) + 1)},
            )
    user = await queries.user_by_login(conn, email=None, phone_number=phone)
    await queries.retire_open_otps(conn, phone_number=phone, purpose="login")
    expires = issuer.now() + timedelta(seconds=ttl)
    otp_id = await queries.insert_otp(conn, phone_number=phone, purpose="login", expires_at=expires)
    await queries.set_otp_hash(
        conn,
        otp_id,
        otp_hash(
            code, phone_number=phone, purpose="login", otp_id=otp_id, pepper=issuer.otp_pepper
        ),
    )
    audit_change("OtpCodes", "INSERT", {"otp_id": otp_id})
    if user is None or user.status != "active" or user.phone_verified_at is None:
        # Unknown, blocked or never-verified number: nothing is sent, same answer.
        return OtpIssued(expires, None)
    return OtpIssued(
        expires,
        OutboundMessage(
            channel="sms",
            to=phone,
            purpose="login_otp",
            body=f"{code} is your GenCharge login code. It expires in {ttl // 60} minutes. "
            "Never share it.",
        ),
    )


@dataclass(frozen=True)
class OtpOutcome:
    """The customer's session; else ``blocked`` (a good code for a blocked account) or
    a wrong, used or expired code."""

    tokens: Tokens | None = None
    blocked: bool = False


async def verify_otp(
    phone: str, code: str, client: Client, *, conn: AsyncConnection, issuer: Issuer
) -> OtpOutcome:
    max_attempts = issuer.settings.otp_max_attempts
    otp = await queries.latest_otp(conn, phone_number=phone, purpose="login")
    usable = (
        otp is not None
        and otp.consumed_at is None
        and otp.expires_at > issuer.now()
        and otp.attempts < max_attempts
    )
    if otp is None or not usable:
        return OtpOutcome()
    expected = otp_hash(
        code, phone_number=phone, purpose="login", otp_id=otp.otp_id, pepper=issuer.otp_pepper
    )
    if not hashes_equal(expected, otp.code_hash):
        last = otp.attempts + 1 >= max_attempts
        await queries.otp_attempt(conn, otp.otp_id, consume=last)
        return OtpOutcome()
    await queries.otp_attempt(conn, otp.otp_id, consume=True)
    user = await queries.user_by_login(conn, email=None, phone_number=phone)
    if user is None or user.phone_verified_at is None:
        # No code is ever sent to a never-verified number; refuse one all the same.
        return OtpOutcome()
    if user.status != "active":
        return OtpOutcome(blocked=True)
    tokens = await _open_session(
        conn=conn,
        issuer=issuer,
        kind="user",
        principal_id=int(user.user_id),
        role_name=user.role_name or USER_ROLE,
        client=client,
    )
    audit_change("Sessions", "INSERT", {"session_id": tokens.session_id, "method": "otp"})
    return OtpOutcome(tokens=tokens)


# --- refresh, logout, sessions ------------------------------------------------------------


@dataclass(frozen=True)
class Rotation:
    """New tokens for a refresh token; else, if it was an already-rotated one, the
    session it belonged to (``reused_session``) and the sessions ended for safety; else
    whether it is the current token of a session that blocking its account ended."""

    tokens: Tokens | None = None
    reused_session: uuid.UUID | None = None
    revoked: tuple[uuid.UUID, ...] = ()
    blocked: bool = False


async def rotate_refresh_token(
    refresh_token: str, *, conn: AsyncConnection, issuer: Issuer
) -> Rotation:
    old_hash = token_hash(refresh_token)
    new_refresh = new_opaque_token("rt")
    new_expires = issuer.now() + timedelta(seconds=issuer.settings.refresh_token_ttl_seconds)
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
        access, access_expires = issuer.tokens.issue(
            principal_type=kind,
            principal_id=str(principal_id),
            role=(owner.role_name if owner else "") or kind,
            session_id=str(row.session_id),
        )
        set_actor(f"{kind}:{principal_id}")
        audit_change("Sessions", "UPDATE", {"session_id": str(row.session_id), "rotated": True})
        return Rotation(
            tokens=Tokens(access, access_expires, new_refresh, new_expires, str(row.session_id))
        )
    reused = await queries.session_of_rotated_token(conn, old_hash)
    if reused is None:
        return Rotation(blocked=await queries.blocked_session(conn, old_hash))
    revoked = await queries.revoke_sessions(conn, reason="refresh token reuse", session_id=reused)
    audit_change("Sessions", "UPDATE", {"session_id": str(reused), "revoked": "token reuse"})
    return Rotation(reused_session=reused, revoked=tuple(revoked))


def sessions_owner(who: Principal) -> dict[str, int]:
    """The owner filter of ``who``'s sessions; service accounts have none."""
    if who.kind == "user":
        return {"user_id": who.numeric_id}
    if who.kind == "admin":
        return {"admin_id": who.numeric_id}
    raise PermissionDenied("service accounts have no sessions", reason="SESSION_ONLY")


async def logout(who: Principal, *, all_sessions: bool, conn: AsyncConnection) -> list[uuid.UUID]:
    """End the caller's session (or all of them); the ids ended."""
    owner = sessions_owner(who)
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
    return revoked


@dataclass(frozen=True)
class SessionsQuery:
    """A validated ListSessions request: whose sessions, which, from where."""

    owner: Mapping[str, int]
    include_inactive: bool
    page: pagination.Page
    after: tuple[datetime, uuid.UUID] | None
    current_session: str | None


def sessions_query(
    who: Principal, *, include_inactive: bool, page_size: int, page_token: str
) -> SessionsQuery:
    owner = sessions_owner(who)
    page = pagination.parse(page_size, page_token, {"sessions": include_inactive, **owner})
    after = None
    if page.after is not None:
        try:
            after = (datetime.fromisoformat(page.after[0]), uuid.UUID(page.after[1]))
        except (TypeError, ValueError, IndexError):
            raise InvalidArgument.field(
                "page_token", "is not a token this service issued"
            ) from None
    return SessionsQuery(owner, include_inactive, page, after, who.session_id)


async def list_sessions(
    query: SessionsQuery, *, conn: AsyncConnection
) -> tuple[list[Session], str]:
    """One page of the caller's sessions, newest first, and the next page's token."""
    rows = await queries.list_sessions(
        conn,
        user_id=query.owner.get("user_id"),
        admin_id=query.owner.get("admin_id"),
        include_inactive=query.include_inactive,
        after=query.after,
        limit=query.page.fetch,
    )
    items, more = pagination.split(list(rows), query.page)
    last = items[-1] if items else None
    token = query.page.next_token(
        [last.login_time.isoformat(), str(last.session_id)] if last else None, more
    )
    sessions = [
        Session(
            session_id=r.session_id,
            login_time=r.login_time,
            last_active=r.last_active,
            expires_at=r.refresh_token_expires_at,
            is_active=bool(r.live),  # ended once logged out, revoked or expired
            revoked_at=r.revoked_at,
            user_agent=r.user_agent,
            ip_address=r.ip_address,
            current=str(r.session_id) == query.current_session,
        )
        for r in items
    ]
    return sessions, token


def _session_uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument.field("session_id", "is not a session id") from None


async def revoke_session(
    who: Principal, session_id: str, *, conn: AsyncConnection
) -> list[uuid.UUID]:
    """End one of the caller's sessions; the ids ended."""
    owner = sessions_owner(who)
    sid = _session_uuid(session_id)
    row = await queries.session_owner(conn, sid)
    mine = row is not None and all(getattr(row, k) == v for k, v in owner.items())
    if not mine:
        raise NotFound(f"session {session_id} not found")
    revoked = await queries.revoke_sessions(conn, reason="revoked by owner", session_id=sid)
    audit_change("Sessions", "UPDATE", {"session_id": session_id, "revoked": True})
    return revoked


async def end_sessions(
    *, reason: str, conn: AsyncConnection, user_id: int | None = None, admin_id: int | None = None
) -> list[uuid.UUID]:
    """End every active session of a user or an admin (an operator's action)."""
    return await queries.revoke_sessions(conn, reason=reason, user_id=user_id, admin_id=admin_id)


async def end_every_session(*, reason: str, conn: AsyncConnection) -> list[uuid.UUID]:
    """End every active session of every user and admin (after a restore: the
    restored sessions table would otherwise bring ended sessions back)."""
    return await queries.revoke_sessions(conn, reason=reason)


async def retire_service_tokens(*, now: datetime, conn: AsyncConnection) -> int:
    """Retire every service-account access token issued before ``now``: each account's
    ``tokens_valid_after`` becomes ``now`` (a later cut-off already set stays), and the
    authenticator refuses a service token issued (``iat``, whole seconds) before that
    second with UNAUTHENTICATED ``SESSION_ENDED``. Service tokens carry no session, so
    :func:`end_every_session` cannot end them; a restore calls both in its transaction.
    The number of accounts. Callers drop the process's cached account states after the
    commit (``Authenticator.forget_all``); other replicas see the cut-off within
    ``auth_cache_seconds``."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    return await queries.retire_service_tokens(conn, now)


# --- passwords ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PasswordOwner:
    """The caller's account as a password change needs it."""

    name: str | None
    email: str | None
    phone_number: str | None
    password_hash: str | None = field(repr=False)


async def password_owner(who: Principal, *, conn: AsyncConnection) -> PasswordOwner | None:
    row = (
        await queries.user_by_id(conn, who.numeric_id)
        if who.kind == "user"
        else await queries.admin_by_id(conn, who.numeric_id)
    )
    if row is None:
        return None
    return PasswordOwner(row.name, row.email, row.phone_number, row.password_hash)


def check_new_password(owner: PasswordOwner, *, current_password: str, new_password: str) -> None:
    if current_password == new_password:
        raise InvalidArgument.field("new_password", "must differ from the current password")
    _check_password("new_password", new_password, [owner.name, owner.email, owner.phone_number])


async def change_password(
    who: Principal, password_hash: str, *, conn: AsyncConnection
) -> list[uuid.UUID]:
    """Store the new hash and end the caller's other sessions; the ids ended."""
    assert who.session_id is not None
    owner = sessions_owner(who)
    update = queries.update_user if who.kind == "user" else queries.update_admin
    await update(conn, who.numeric_id, {"password_hash": password_hash})
    revoked = await queries.revoke_sessions(
        conn,
        reason="password changed",
        except_session=uuid.UUID(who.session_id),
        user_id=owner.get("user_id"),
        admin_id=owner.get("admin_id"),
    )
    audit_change(
        "Users" if who.kind == "user" else "Admins",
        "UPDATE",
        {"password_changed": True, "sessions_revoked": len(revoked)},
    )
    return revoked


async def create_reset_token(
    *, email: str | None, phone_number: str | None, conn: AsyncConnection, issuer: Issuer
) -> OutboundMessage | None:
    """Store a password-reset token for the active customer with this e-mail or phone,
    when that contact is verified; the message that carries it to them, or None when
    there is no such customer or the contact was never verified (a token must only ever
    reach someone who proved they hold the contact)."""
    token = new_opaque_token("pr")
    ttl = issuer.settings.password_reset_ttl_seconds
    user = await queries.user_by_login(conn, email=email, phone_number=phone_number)
    if user is None or user.status != "active":
        return None
    if (user.email_verified_at if email else user.phone_verified_at) is None:
        return None
    await queries.insert_reset_token(
        conn,
        token_hash=token_hash(token),
        user_id=int(user.user_id),
        expires_at=issuer.now() + timedelta(seconds=ttl),
    )
    audit_change("PasswordResetTokens", "INSERT", {"user_id": int(user.user_id)})
    return OutboundMessage(
        channel="email" if email else "sms",
        to=email or phone_number or "",
        purpose="password_reset",
        body=f"Your GenCharge password reset token is {token} . It expires in "
        f"{ttl // 60} minutes and works once. If you did not ask for it, ignore this.",
    )


async def reset_password(
    *, reset_token: str, new_password: str, conn: AsyncConnection
) -> list[uuid.UUID]:
    """Use a reset token: new password, every session ended; the ids ended."""
    user_id = await queries.consume_reset_token(conn, token_hash(reset_token))
    if user_id is None:
        raise Unauthenticated(
            "the reset token is invalid, used or expired", reason="INVALID_RESET_TOKEN"
        )
    user = await queries.user_by_id(conn, user_id, lock=True)
    assert user is not None
    _check_password("new_password", new_password, [user.name, user.email, user.phone_number])
    await queries.update_user(
        conn, user_id, {"password_hash": await new_password_hash(new_password)}
    )
    await queries.retire_reset_tokens(conn, user_id)
    revoked = await queries.revoke_sessions(conn, reason="password reset", user_id=user_id)
    set_actor(f"user:{user_id}")
    audit_change("Users", "UPDATE", {"password_reset": True, "sessions_revoked": len(revoked)})
    return revoked


# --- profile ------------------------------------------------------------------------------


async def me(who: Principal, *, conn: AsyncConnection) -> Account:
    if who.kind == "user":
        row = await queries.user_by_id(conn, who.numeric_id)
        if row is not None:
            return _user(row)
    elif who.kind == "admin":
        row = await queries.admin_by_id(conn, who.numeric_id)
        if row is not None:
            return admin_of_row(row)
    else:
        row = await queries.service_account_by_client_id(conn, who.id)
        if row is not None:
            return service_account_of_row(row)
    raise NotFound("your account no longer exists")


@dataclass(frozen=True)
class ProfileUpdate:
    """UpdateMe: the fields named in ``paths`` take their value from ``changes``."""

    changes: Mapping[str, str]
    paths: tuple[str, ...]


def profile_values(who: Principal, update: ProfileUpdate) -> dict[str, Any]:
    """The validated column values of a profile update (the name).

    The e-mail address and the phone number are refused: UpdateMe is authorised by the
    access token alone, and a contact is what OTP logins and password resets trust, so
    changing one takes proof of the account and a code sent to the new contact
    (:func:`start_contact_change`, :func:`confirm_contact_change`)."""
    sessions_owner(who)
    paths = update.paths
    unknown = [p for p in paths if p not in PROFILE_FIELDS]
    if not paths or unknown:
        raise InvalidArgument.field("update_mask", f"must list some of {', '.join(PROFILE_FIELDS)}")
    contacts = [p for p in paths if p in CONTACT_FIELDS]
    if contacts:
        raise InvalidArgument(
            f"{' and '.join(contacts)} change with StartContactChange and ConfirmContactChange "
            "(proof of the account, then a code sent to the new contact), not UpdateMe",
            violations=[
                FieldViolation(
                    "update_mask",
                    f"{', '.join(contacts)}: use StartContactChange + ConfirmContactChange",
                )
            ],
            reason="CONTACT_CHANGE_NEEDS_VERIFICATION",
        )
    name = update.changes.get("name", "").strip()
    if not 1 <= len(name) <= 100:
        raise InvalidArgument.field("profile.name", "must have 1 to 100 characters")
    return {"name": name}


async def update_me(who: Principal, values: Mapping[str, Any], *, conn: AsyncConnection) -> None:
    """Apply :func:`profile_values`."""
    is_user = "user_id" in sessions_owner(who)
    if is_user:
        await queries.update_user(conn, who.numeric_id, dict(values))
    else:
        await queries.update_admin(conn, who.numeric_id, dict(values))
    audit_change("Users" if is_user else "Admins", "UPDATE", {"fields": sorted(values)})


def contact_conflict(exc: IntegrityError) -> AlreadyExists:
    """The error for a contact change whose e-mail or phone another account has."""
    what = "e-mail address" if "email" in _constraint(exc) else "phone number"
    return AlreadyExists(f"another account uses this {what}", reason="CONTACT_TAKEN")


# --- verified contacts and contact changes ------------------------------------------------
#
# A contact (e-mail address or phone number) is verified when a code sent to it comes
# back. Codes live in ``contact_codes``: purpose ``contact_proof`` goes to one of the
# account's current contacts (VerifyContact, or proof for a change), ``contact_change``
# to the new contact of a pending change. Each is 6 digits, stored as an HMAC bound to
# its row, destination and purpose; single use; expires after ``otp_ttl_seconds``;
# burned after ``otp_max_attempts`` wrong tries; a new one replaces the owner's
# previous one of the same purpose.

CONTACT_PROOF = "contact_proof"
CONTACT_CHANGE = "contact_change"


@dataclass(frozen=True)
class Channel:
    """One of an account's two contacts: its column, and how a code reaches it."""

    name: str  # "email" | "phone"
    column: str  # users/admins column holding the contact
    verified_column: str
    field: str  # the request field naming such a contact
    message_channel: str  # OutboundMessage.channel
    label: str


CHANNELS: Mapping[str, Channel] = {
    "email": Channel("email", "email", "email_verified_at", "email", "email", "e-mail address"),
    "phone": Channel(
        "phone", "phone_number", "phone_verified_at", "phone_number", "sms", "phone number"
    ),
}


def contact_channel(name: str | None) -> Channel:
    """The channel SendContactCode names ("email" or "phone")."""
    channel = CHANNELS.get(name or "")
    if channel is None:
        raise InvalidArgument.field(
            "channel", "must be CONTACT_CHANNEL_EMAIL or CONTACT_CHANNEL_PHONE"
        )
    return channel


def check_code_format(code: str, field_name: str = "code") -> None:
    if not _SIX_DIGITS.fullmatch(code):
        raise InvalidArgument.field(field_name, "must be the 6-digit code")


def masked(channel: Channel, value: str) -> str:
    """A contact shown to someone who may not own it: ``a***@example.com``, ``******3210``."""
    if channel.name == "email":
        local, _, domain_part = value.partition("@")
        return f"{local[:1]}***@{domain_part}"
    return "*" * max(0, len(value) - 4) + value[-4:]


@dataclass(frozen=True)
class ContactHolder:
    """The caller's account as the contact rules need it (locked for the transaction)."""

    kind: str  # "user" | "admin"
    principal_id: int
    owner: Mapping[str, int]
    email: str | None
    phone_number: str | None

    def contact(self, channel: Channel) -> str | None:
        value: str | None = self.email if channel.name == "email" else self.phone_number
        return value

    @property
    def table(self) -> str:
        return "Users" if self.kind == "user" else "Admins"


async def _contact_holder(who: Principal, *, conn: AsyncConnection) -> ContactHolder:
    owner = sessions_owner(who)
    is_user = "user_id" in owner
    row = (
        await queries.user_by_id(conn, who.numeric_id, lock=True)
        if is_user
        else await queries.admin_by_id(conn, who.numeric_id, lock=True)
    )
    if row is None:
        raise NotFound("your account no longer exists")
    return ContactHolder(
        kind="user" if is_user else "admin",
        principal_id=who.numeric_id,
        owner=owner,
        email=row.email,
        phone_number=row.phone_number,
    )


def _contact_code_hash(
    code: str, *, code_id: int, purpose: str, destination: str, pepper: bytes
) -> str:
    return otp_hash(
        code,
        phone_number=destination,
        purpose=f"contact:{purpose}",
        otp_id=f"contact:{code_id}",
        pepper=pepper,
    )


async def _new_contact_code(
    holder: ContactHolder,
    *,
    purpose: str,
    channel: Channel,
    destination: str,
    conn: AsyncConnection,
    issuer: Issuer,
) -> tuple[str, datetime]:
    """Store a new code of ``purpose`` for ``destination`` (replacing the holder's open
    ones of that purpose); the code and when it expires. Not more than one to the same
    destination every :data:`OTP_RESEND_SECONDS` (the holder's row is locked, so this
    is race-free)."""
    latest = await queries.latest_contact_code(
        conn,
        purpose=purpose,
        user_id=holder.owner.get("user_id"),
        admin_id=holder.owner.get("admin_id"),
    )
    if latest is not None and latest.destination == destination:
        wait = OTP_RESEND_SECONDS - (issuer.now() - latest.created_at).total_seconds()
        if wait > 0:
            raise ResourceExhausted(
                f"a code was sent moments ago; try again in {int(wait) + 1} seconds",
                reason="OTP_RESEND_TOO_SOON",
                metadata={"retry_after_seconds": str(int(wait) + 1)},
            )
    await queries.retire_contact_codes(
        conn,
        user_id=holder.owner.get("user_id"),
        admin_id=holder.owner.get("admin_id"),
        purpose=purpose,
    )
    expires = issuer.now() + timedelta(seconds=issuer.settings.otp_ttl_seconds)
    code = new_otp_code()
    code_id = await queries.insert_contact_code(
        conn,
        user_id=holder.owner.get("user_id"),
        admin_id=holder.owner.get("admin_id"),
        purpose=purpose,
        channel=channel.name,
        destination=destination,
        expires_at=expires,
    )
    await queries.set_contact_code_hash(
        conn,
        code_id,
        _contact_code_hash(
            code,
            code_id=code_id,
            purpose=purpose,
            destination=destination,
            pepper=issuer.otp_pepper,
        ),
    )
    return code, expires


async def _use_contact_code(
    holder: ContactHolder, purpose: str, code: str, *, conn: AsyncConnection, issuer: Issuer
) -> Row[Any] | None:
    """The holder's latest code row of ``purpose`` if ``code`` is it (then used up);
    None for a wrong, used, expired or burned code (a wrong try is counted, and the
    last allowed one burns the code)."""
    max_attempts = issuer.settings.otp_max_attempts
    row = await queries.latest_contact_code(
        conn,
        purpose=purpose,
        user_id=holder.owner.get("user_id"),
        admin_id=holder.owner.get("admin_id"),
    )
    if (
        row is None
        or row.consumed_at is not None
        or row.expires_at <= issuer.now()
        or row.attempts >= max_attempts
    ):
        return None
    expected = _contact_code_hash(
        code,
        code_id=int(row.code_id),
        purpose=purpose,
        destination=row.destination,
        pepper=issuer.otp_pepper,
    )
    if not hashes_equal(expected, row.code_hash):
        await queries.contact_code_attempt(
            conn, row.code_id, consume=row.attempts + 1 >= max_attempts
        )
        return None
    await queries.contact_code_attempt(conn, row.code_id, consume=True)
    return row


@dataclass(frozen=True)
class CodeSent:
    """A code stored for its destination, and the message that carries it there."""

    expires_at: datetime
    message: OutboundMessage


async def contact_of(who: Principal, channel: Channel, *, conn: AsyncConnection) -> str:
    """The caller's current contact on ``channel``; FailedPrecondition when it has none."""
    owner = sessions_owner(who)
    row = (
        await queries.user_by_id(conn, who.numeric_id)
        if "user_id" in owner
        else await queries.admin_by_id(conn, who.numeric_id)
    )
    value: str | None = getattr(row, channel.column) if row is not None else None
    if not value:
        raise FailedPrecondition(f"your account has no {channel.label}", reason="NO_SUCH_CONTACT")
    return value


async def send_contact_code(
    who: Principal, channel: Channel, *, conn: AsyncConnection, issuer: Issuer
) -> CodeSent:
    """A proof code for the caller's current contact on ``channel``."""
    holder = await _contact_holder(who, conn=conn)
    destination = holder.contact(channel)
    if not destination:
        raise FailedPrecondition(f"your account has no {channel.label}", reason="NO_SUCH_CONTACT")
    code, expires = await _new_contact_code(
        holder,
        purpose=CONTACT_PROOF,
        channel=channel,
        destination=destination,
        conn=conn,
        issuer=issuer,
    )
    audit_change("ContactCodes", "INSERT", {"purpose": CONTACT_PROOF, "channel": channel.name})
    minutes = issuer.settings.otp_ttl_seconds // 60
    return CodeSent(
        expires,
        OutboundMessage(
            channel=channel.message_channel,
            to=destination,
            purpose="contact_code",
            body=f"{code} is your GenCharge verification code. It expires in {minutes} "
            "minutes. Never share it. If you did not ask for it, someone may be using your "
            "account: change your password.",
        ),
    )


async def verify_contact(
    who: Principal, code: str, *, conn: AsyncConnection, issuer: Issuer
) -> bool:
    """Mark the contact the caller's latest proof code went to as verified; False for a
    wrong, used or expired code, or a contact that changed since the code was sent."""
    holder = await _contact_holder(who, conn=conn)
    row = await _use_contact_code(holder, CONTACT_PROOF, code, conn=conn, issuer=issuer)
    if row is None:
        return False
    channel = CHANNELS[row.channel]
    if holder.contact(channel) != row.destination:
        return False
    update = queries.update_user if holder.kind == "user" else queries.update_admin
    await update(conn, holder.principal_id, {channel.verified_column: issuer.now()})
    audit_change(holder.table, "UPDATE", {"contact_verified": channel.name})
    return True


@dataclass(frozen=True)
class ContactChange:
    """A validated StartContactChange: the new contact and the proof offered."""

    channel: Channel
    destination: str
    current_password: str = field(default="", repr=False)
    current_contact_code: str = field(default="", repr=False)


def validate_contact_change(
    *, email: str, phone_number: str, current_password: str, current_contact_code: str
) -> ContactChange:
    violations: list[FieldViolation] = []
    channel: Channel | None = None
    destination: str | None = None
    if email:
        channel, destination = CHANNELS["email"], normalize_email(email)
        if destination is None:
            violations.append(FieldViolation("email", "is not a valid e-mail address"))
    elif phone_number:
        channel, destination = CHANNELS["phone"], normalize_phone(phone_number)
        if destination is None:
            violations.append(
                FieldViolation("phone_number", "must be a 10-digit Indian mobile number")
            )
    else:
        violations.append(FieldViolation("email", "the new e-mail address or phone number"))
    if not current_password and not current_contact_code:
        violations.append(
            FieldViolation(
                "current_password",
                "proof is required: the current password, or current_contact_code "
                "(a code SendContactCode sent to one of your contacts)",
            )
        )
    elif current_contact_code and not _SIX_DIGITS.fullmatch(current_contact_code):
        violations.append(FieldViolation("current_contact_code", "must be the 6-digit code"))
    if violations:
        raise InvalidArgument.of(violations)
    assert channel is not None and destination is not None
    return ContactChange(
        channel,
        destination,
        current_password=current_password,
        current_contact_code="" if current_password else current_contact_code,
    )


@dataclass(frozen=True)
class ChangeStarted:
    """The code sent to the new contact; None when the proof code was wrong (counted)."""

    sent: CodeSent | None = None


async def start_contact_change(
    who: Principal,
    change: ContactChange,
    *,
    password_checked: bool,
    conn: AsyncConnection,
    issuer: Issuer,
) -> ChangeStarted:
    """Store a pending change of the caller's contact and a code for the new contact.

    The proof is the current password (checked by the caller: ``password_checked``) or
    ``change.current_contact_code``, checked and used up here. Nothing of the account
    changes until :func:`confirm_contact_change`."""
    holder = await _contact_holder(who, conn=conn)
    channel = change.channel
    if not password_checked:
        proof = await _use_contact_code(
            holder, CONTACT_PROOF, change.current_contact_code, conn=conn, issuer=issuer
        )
        if proof is None or holder.contact(CHANNELS[proof.channel]) != proof.destination:
            return ChangeStarted()
    if holder.contact(channel) == change.destination:
        raise InvalidArgument.field(channel.field, f"is already your {channel.label}")
    if await queries.contact_in_use(
        conn,
        admin=holder.kind == "admin",
        column=channel.column,
        value=change.destination,
        except_id=holder.principal_id,
    ):
        raise AlreadyExists(f"another account uses this {channel.label}", reason="CONTACT_TAKEN")
    code, expires = await _new_contact_code(
        holder,
        purpose=CONTACT_CHANGE,
        channel=channel,
        destination=change.destination,
        conn=conn,
        issuer=issuer,
    )
    audit_change(
        "ContactCodes",
        "INSERT",
        {
            "purpose": CONTACT_CHANGE,
            "channel": channel.name,
            "proof": "password" if password_checked else "contact_proof",
        },
    )
    minutes = issuer.settings.otp_ttl_seconds // 60
    return ChangeStarted(
        CodeSent(
            expires,
            OutboundMessage(
                channel=channel.message_channel,
                to=change.destination,
                purpose="contact_change_code",
                body=f"{code} is your GenCharge code to make this your account's "
                f"{channel.label}. It expires in {minutes} minutes. Never share it. If you "
                "did not ask for it, ignore this message.",
            ),
        )
    )


@dataclass(frozen=True)
class ChangeConfirmed:
    """``changed`` False: wrong, used or expired code, or no pending change (counted).
    Else the sessions ended and the notices for the previous contacts."""

    changed: bool = False
    revoked: tuple[uuid.UUID, ...] = ()
    notices: tuple[OutboundMessage, ...] = ()


async def confirm_contact_change(
    who: Principal, code: str, *, conn: AsyncConnection, issuer: Issuer
) -> ChangeConfirmed:
    """Apply the caller's pending contact change whose code is ``code``.

    The account takes the new contact, verified (the code proved it). Codes and
    password-reset tokens that went to the old contacts stop working, every other
    session of the caller ends, and the previous e-mail address and phone number get a
    notice. A unique-constraint violation (another account took the contact since the
    change started) propagates as ``IntegrityError``: see :func:`contact_conflict`."""
    assert who.session_id is not None
    holder = await _contact_holder(who, conn=conn)
    row = await _use_contact_code(holder, CONTACT_CHANGE, code, conn=conn, issuer=issuer)
    if row is None:
        return ChangeConfirmed()
    channel = CHANNELS[row.channel]
    previous = holder.contact(channel)
    update = queries.update_user if holder.kind == "user" else queries.update_admin
    await update(
        conn,
        holder.principal_id,
        {channel.column: row.destination, channel.verified_column: issuer.now()},
    )
    user_id, admin_id = holder.owner.get("user_id"), holder.owner.get("admin_id")
    if user_id is not None:
        await queries.retire_reset_tokens(conn, user_id)
    if channel.name == "phone" and previous:
        await queries.retire_open_otps(conn, phone_number=previous, purpose="login")
    await queries.retire_contact_codes(conn, user_id=user_id, admin_id=admin_id)
    revoked = await queries.revoke_sessions(
        conn,
        reason="contact changed",
        except_session=uuid.UUID(who.session_id),
        user_id=user_id,
        admin_id=admin_id,
    )
    audit_change(
        holder.table,
        "UPDATE",
        {"contact_changed": channel.name, "sessions_revoked": len(revoked)},
    )
    when = issuer.now().strftime("%Y-%m-%d %H:%M UTC")
    shown = masked(channel, row.destination)
    notices = tuple(
        OutboundMessage(
            channel=c.message_channel,
            to=old,
            purpose="contact_changed",
            body=f"The {channel.label} of your GenCharge account was changed to {shown} "
            f"on {when}, and its other sessions were logged out. If this was not you, "
            "contact GenCharge support at once.",
        )
        for c in CHANNELS.values()
        if (old := (previous if c is channel else holder.contact(c)))
    )
    return ChangeConfirmed(changed=True, revoked=tuple(revoked), notices=notices)


# --- service accounts ---------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceCredentials:
    client_id: str
    status: str
    role_name: str | None
    secret_hash: str = field(repr=False)
    scopes: tuple[str, ...] = ()


async def service_credentials(
    client_id: str, *, conn: AsyncConnection
) -> ServiceCredentials | None:
    row = await queries.service_account_by_client_id(conn, client_id)
    if row is None:
        return None
    return ServiceCredentials(
        row.client_id, row.status, row.role_name, row.secret_hash, tuple(row.scopes or ())
    )


async def service_secret_ok(account: ServiceCredentials | None, client_secret: str) -> bool:
    """Constant work whether or not the account exists; True only for an active one."""
    ok = await asyncio.to_thread(
        verify_password, account.secret_hash if account else _DUMMY_HASH, client_secret
    )
    return ok and account is not None and account.status == "active"


async def issue_service_token(
    account: ServiceCredentials, *, conn: AsyncConnection, issuer: Issuer
) -> tuple[str, datetime]:
    """An access token for a service account that proved its secret."""
    await queries.touch_service_account(conn, account.client_id)
    audit_change(
        "ServiceAccounts", "UPDATE", {"client_id": account.client_id, "token_issued": True}
    )
    return issuer.tokens.issue(
        principal_type="service",
        principal_id=account.client_id,
        role=account.role_name or SERVICE_ROLE,
        session_id=None,
        scopes=account.scopes,
    )


# --- roles and housekeeping ---------------------------------------------------------------


async def role_id_named(name: str, *, conn: AsyncConnection) -> int | None:
    """The id of the role called ``name`` (case-insensitive), None when there is none."""
    return await queries.role_id_by_name(conn, name)


async def delete_expired(before: datetime, *, conn: AsyncConnection) -> int:
    """Delete sessions and one-time rows (codes, reset tokens, MFA challenges) that
    expired before ``before``; the number deleted."""
    removed = await queries.delete_expired_sessions(conn, before)
    removed += await queries.delete_stale_auth_rows(conn, before)
    return removed


# --- administrators created or reset by operators (server/admin/flows.py) ---------------


async def forget_admin_mfa(email: str, *, conn: AsyncConnection) -> int | None:
    """Clear the admin's TOTP enrolment (the next login enrols again); their id, or None
    when no admin has ``email``."""
    return await queries.reset_admin_mfa(conn, email)


# --- operators' user actions (server/admin/users) ------------------------------------------


@dataclass(frozen=True)
class ArchivedUser:
    """A ``usersarchive`` row: the user as archived, and when."""

    user: User
    archived_at: datetime


def user_of(row: Row[Any]) -> User:
    """A ``users`` row (with ``role_name``) as a User, for readers of the table."""
    return _user(row)


async def user_by_id(user_id: int, *, conn: AsyncConnection, lock: bool = False) -> User | None:
    """The ``users`` row of ``user_id`` (an archived user's is the blocked row without
    personal data that keeps the ledger's foreign keys), locked FOR UPDATE on request."""
    row = await queries.user_by_id(conn, user_id, lock=lock)
    return None if row is None else _user(row)


async def archived_user(
    user_id: int, *, conn: AsyncConnection, lock: bool = False
) -> ArchivedUser | None:
    row = await queries.archived_user(conn, user_id, lock=lock)
    return None if row is None else ArchivedUser(_user(row), row.archived_at)


async def set_user_status(user_id: int, status: str, *, conn: AsyncConnection) -> None:
    """Block or unblock a user (blocking also ends their sessions: a trigger)."""
    await queries.update_user(conn, user_id, {"status": status})


async def archive_user(user_id: int, *, conn: AsyncConnection) -> None:
    """Move the user to ``usersarchive`` (see queries.archive_user). The caller has
    locked the row, checked the preconditions and ended the sessions."""
    await queries.archive_user(conn, user_id)


async def erase_archived_user(user_id: int, *, conn: AsyncConnection) -> dict[str, int]:
    """Remove an archived user's personal fields and the identity rows that hold
    personal data (sessions, contact codes, reset tokens); counts deleted per table."""
    await queries.erase_archived_user(conn, user_id)
    return await queries.delete_user_traces(conn, user_id)
