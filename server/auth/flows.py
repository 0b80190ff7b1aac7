"""Identity work that spans more than one transaction.

Each flow takes the unit of work (``db``: server.core.db.Database) and opens its
transactions itself, calling the rules in server/auth/domain.py inside them:

- brute-force counters (:class:`~server.auth.throttle.Throttle`) are checked before and
  written after the call's own transaction, in their own side transactions, so a
  failed attempt is counted even though the call fails;
- password hashing (argon2id, a thread) runs outside any transaction;
- messages (SMS, e-mail) are sent after the transaction that stored the code or token
  has committed: no transaction is held open across the message sender;
- sessions ended by a call are dropped from this process's session cache after the
  commit.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy.exc import IntegrityError

from server.audit.scope import set_actor
from server.auth import domain
from server.auth.passwords import needs_rehash
from server.auth.principal import Principal
from server.auth.throttle import Throttle, ThrottleKey, keys_for
from server.auth.tokens import token_hash
from server.core.db import Database
from server.core.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
)
from server.core.messaging import MessageSender, OutboundMessage

log = logging.getLogger(__name__)


class SessionCache(Protocol):
    """Where this process caches session states (server.auth.access.Authenticator)."""

    def forget_sessions(self, session_ids: Iterable[uuid.UUID | str]) -> None: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --- registration and logins --------------------------------------------------------------


async def register(
    db: Database,
    reg: domain.Registration,
    client: domain.Client,
    *,
    issuer: domain.Issuer,
    throttle: Throttle,
) -> tuple[domain.User, domain.Tokens]:
    """Sign a customer up. Throttled like Login, per client address and per identifier
    (action ``register``): a refusal because the e-mail or phone is taken is the
    failure that counts, since that answer is what would let a caller enumerate
    accounts; a success clears the identifiers' counters (never the address's)."""
    new = domain.validate_registration(reg)
    keys = [
        key
        for identifier in domain.identifiers_of(new)
        for key in keys_for("register", account=identifier, peer=client.ip)
    ]
    await throttle.check(keys)
    async with db.read_only() as conn:
        conflict = await domain.registration_conflict(new, conn=conn)
    if conflict is not None:
        await throttle.failure(keys)
        raise conflict
    password_hash = await domain.new_password_hash(reg.password)
    for _ in range(5):
        try:
            async with db.transaction() as conn:
                registered = await domain.register(
                    new, client, password_hash=password_hash, conn=conn, issuer=issuer
                )
        except IntegrityError as exc:
            taken = domain.contact_taken(exc)
            if taken is not None:
                await throttle.failure(keys)
                raise taken from None
            if not domain.referral_code_collision(exc):
                raise
            continue  # a generated referral code collided: try another
        await throttle.success(keys)
        return registered
    raise FailedPrecondition("could not allocate a referral code; try again")


async def login(
    db: Database,
    *,
    email: str,
    phone_number: str,
    password: str,
    admin: bool,
    client: domain.Client,
    issuer: domain.Issuer,
    throttle: Throttle,
) -> domain.LoginResult:
    """Password login: a customer gets a session, an administrator an MFA challenge."""
    by_email, by_phone, account_name = domain.login_identifier(email, phone_number)
    if not password:
        raise InvalidArgument.field("password", "is required")
    kind = "admin" if admin else "user"
    keys = keys_for("login", account=f"{kind}:{account_name}", peer=client.ip)
    await throttle.check(keys)
    async with db.read_only() as conn:
        account = await domain.find_login(
            admin=admin, email=by_email, phone_number=by_phone, conn=conn
        )
    if not await domain.password_ok(account.password_hash if account else None, password):
        await throttle.failure(keys)
        raise Unauthenticated(
            "wrong e-mail/phone number or password", reason=domain.INVALID_CREDENTIALS
        )
    assert account is not None and account.password_hash is not None
    await throttle.success(keys)
    if account.status != "active":
        raise PermissionDenied("this account is blocked", reason="ACCOUNT_BLOCKED")
    if needs_rehash(account.password_hash):
        new_hash = await domain.new_password_hash(password)
        async with db.transaction() as conn:
            await domain.store_password_hash(account, new_hash, conn=conn)
    if admin:
        async with db.transaction() as conn:
            challenge = await domain.open_mfa_challenge(account, client, conn=conn, issuer=issuer)
        return domain.LoginResult(challenge=challenge)
    async with db.transaction() as conn:
        tokens = await domain.open_password_session(account, client, conn=conn, issuer=issuer)
    return domain.LoginResult(tokens=tokens)


async def verify_mfa(
    db: Database,
    *,
    challenge_token: str,
    code: str,
    client: domain.Client,
    issuer: domain.Issuer,
    throttle: Throttle,
) -> domain.Tokens:
    if not challenge_token:
        raise InvalidArgument.field("challenge_token", "is required")
    if not code:
        raise InvalidArgument.field("totp_code", "is required")
    keys = keys_for("mfa", account=token_hash(challenge_token), peer=client.ip)
    await throttle.check(keys)
    # A refused code is counted on the challenge in this (committed) transaction.
    async with db.transaction() as conn:
        outcome = await domain.verify_mfa(
            challenge_token=challenge_token, code=code, client=client, conn=conn, issuer=issuer
        )
    if outcome.tokens is None:
        await throttle.failure(keys)
        raise Unauthenticated(outcome.failure or "MFA failed", reason="MFA_FAILED")
    return outcome.tokens


async def request_otp(
    db: Database,
    *,
    phone_number: str,
    client: domain.Client,
    issuer: domain.Issuer,
    throttle: Throttle,
    sender: MessageSender,
) -> tuple[datetime, int]:
    """Send a login code; the same answer whether or not the number has an account."""
    phone = domain.phone_of(phone_number)
    keys = keys_for("otp", account=phone, peer=client.ip)
    await throttle.check(keys)
    async with db.transaction() as conn:
        issued = await domain.issue_login_otp(phone, conn=conn, issuer=issuer)
    # Count every send against the pair and peer limits, so a flood of requests trips.
    await throttle.failure(keys_for("otp", account=None, peer=client.ip))
    if issued.message is not None:
        await sender.send(issued.message)
    return issued.expires_at, domain.OTP_RESEND_SECONDS


async def verify_otp(
    db: Database,
    *,
    phone_number: str,
    code: str,
    client: domain.Client,
    issuer: domain.Issuer,
    throttle: Throttle,
) -> domain.Tokens:
    phone = domain.phone_of(phone_number)
    domain.check_otp_format(code)
    keys = keys_for("otp", account=phone, peer=client.ip)
    await throttle.check(keys)
    # A wrong code is counted on the code row in this (committed) transaction.
    async with db.transaction() as conn:
        outcome = await domain.verify_otp(phone, code, client, conn=conn, issuer=issuer)
    if outcome.tokens is not None:
        await throttle.success(keys)
        return outcome.tokens
    if outcome.blocked:
        raise PermissionDenied("this account is blocked", reason="ACCOUNT_BLOCKED")
    await throttle.failure(keys)
    raise Unauthenticated("the code is wrong or has expired", reason="INVALID_OTP")


async def issue_service_token(
    db: Database,
    *,
    client_id: str,
    client_secret: str,
    client: domain.Client,
    issuer: domain.Issuer,
    throttle: Throttle,
) -> tuple[str, datetime]:
    if not client_id:
        raise InvalidArgument.field("client_id", "is required")
    if not client_secret:
        raise InvalidArgument.field("client_secret", "is required")
    keys = keys_for("service_token", account=client_id, peer=client.ip)
    await throttle.check(keys)
    async with db.read_only() as conn:
        account = await domain.service_credentials(client_id, conn=conn)
    if not await domain.service_secret_ok(account, client_secret):
        await throttle.failure(keys)
        raise Unauthenticated("invalid client credentials", reason=domain.INVALID_CREDENTIALS)
    assert account is not None
    await throttle.success(keys)
    set_actor(f"service:{client_id}")
    async with db.transaction() as conn:
        return await domain.issue_service_token(account, conn=conn, issuer=issuer)


# --- refresh and sessions -----------------------------------------------------------------


async def refresh(
    db: Database, *, refresh_token: str, issuer: domain.Issuer, sessions: SessionCache
) -> domain.Tokens:
    """Rotate a refresh token. Presenting an already-rotated one ends its session (that
    change commits) and the call fails; the token of a session that blocking its account
    ended is PERMISSION_DENIED ``ACCOUNT_BLOCKED``, as a login would be."""
    if not refresh_token:
        raise InvalidArgument.field("refresh_token", "is required")
    async with db.transaction() as conn:
        rotation = await domain.rotate_refresh_token(refresh_token, conn=conn, issuer=issuer)
    sessions.forget_sessions(rotation.revoked)
    if rotation.tokens is not None:
        return rotation.tokens
    if rotation.reused_session is not None:
        raise Unauthenticated(
            "this refresh token was already used; the session has been ended for safety",
            reason="REFRESH_TOKEN_REUSED",
        )
    if rotation.blocked:
        raise PermissionDenied("this account is blocked", reason="ACCOUNT_BLOCKED")
    raise Unauthenticated("invalid or expired refresh token", reason="INVALID_REFRESH_TOKEN")


async def logout(
    db: Database, who: Principal, *, all_sessions: bool, sessions: SessionCache
) -> None:
    async with db.transaction() as conn:
        ended = await domain.logout(who, all_sessions=all_sessions, conn=conn)
    sessions.forget_sessions(ended)


async def revoke_session(
    db: Database, who: Principal, session_id: str, *, sessions: SessionCache
) -> None:
    async with db.transaction() as conn:
        ended = await domain.revoke_session(who, session_id, conn=conn)
    sessions.forget_sessions(ended)


# --- passwords ----------------------------------------------------------------------------


async def change_password(
    db: Database,
    who: Principal,
    *,
    current_password: str,
    new_password: str,
    client: domain.Client,
    throttle: Throttle,
    sessions: SessionCache,
) -> None:
    domain.sessions_owner(who)
    keys = keys_for("login", account=who.subject, peer=client.ip)
    await throttle.check(keys)
    async with db.read_only() as conn:
        owner = await domain.password_owner(who, conn=conn)
    if owner is None or not await domain.password_ok(owner.password_hash, current_password):
        await throttle.failure(keys)
        raise InvalidArgument(
            "the current password is wrong",
            violations=[FieldViolation("current_password", "is wrong")],
            reason=domain.INVALID_CREDENTIALS,
        )
    domain.check_new_password(owner, current_password=current_password, new_password=new_password)
    new_hash = await domain.new_password_hash(new_password)
    async with db.transaction() as conn:
        ended = await domain.change_password(who, new_hash, conn=conn)
    await throttle.success(keys)
    sessions.forget_sessions(ended)


async def request_password_reset(
    db: Database,
    *,
    email: str,
    phone_number: str,
    admin: bool,
    client: domain.Client,
    issuer: domain.Issuer,
    throttle: Throttle,
    sender: MessageSender,
) -> None:
    by_email, by_phone, account = domain.login_identifier(email, phone_number)
    keys = keys_for("password_reset", account=account, peer=client.ip)
    await throttle.check(keys)
    # Every request counts, so the endpoint cannot be used to flood someone's inbox.
    await throttle.failure(keys)
    if admin:
        return  # admin passwords are reset by another admin; same answer (no enumeration)
    async with db.transaction() as conn:
        message = await domain.create_reset_token(
            email=by_email, phone_number=by_phone, conn=conn, issuer=issuer
        )
    if message is not None:
        await sender.send(message)


async def reset_password(
    db: Database, *, reset_token: str, new_password: str, sessions: SessionCache
) -> None:
    if not reset_token:
        raise InvalidArgument.field("reset_token", "is required")
    async with db.transaction() as conn:
        ended = await domain.reset_password(
            reset_token=reset_token, new_password=new_password, conn=conn
        )
    sessions.forget_sessions(ended)


# --- profile ------------------------------------------------------------------------------


async def update_me(db: Database, who: Principal, update: domain.ProfileUpdate) -> domain.Account:
    """Change the caller's profile (the name; contacts change through
    :func:`start_contact_change`), then read it back."""
    values = domain.profile_values(who, update)
    async with db.transaction() as conn:
        await domain.update_me(who, values, conn=conn)
    async with db.read_only() as conn:
        return await domain.me(who, conn=conn)


# --- verified contacts and contact changes ------------------------------------------------


async def _may_send_code(
    throttle: Throttle, destination: str, client: domain.Client
) -> list[ThrottleKey]:
    """Check another code may go to ``destination`` from this client; the keys to count
    the send on (action ``contact_send``, keyed by the destination like login OTPs are
    by the phone number, so no address or phone can be flooded)."""
    keys = keys_for("contact_send", account=destination, peer=client.ip)
    await throttle.check(keys)
    return keys


async def send_contact_code(
    db: Database,
    who: Principal,
    channel: domain.Channel,
    *,
    client: domain.Client,
    issuer: domain.Issuer,
    throttle: Throttle,
    sender: MessageSender,
) -> tuple[datetime, int]:
    """Send a proof code to the caller's current contact on ``channel``."""
    async with db.read_only() as conn:
        destination = await domain.contact_of(who, channel, conn=conn)
    send_keys = await _may_send_code(throttle, destination, client)
    async with db.transaction() as conn:
        sent = await domain.send_contact_code(who, channel, conn=conn, issuer=issuer)
    # Every send counts, so nobody's inbox can be flooded through this.
    await throttle.failure(send_keys)
    await sender.send(sent.message)
    return sent.expires_at, domain.OTP_RESEND_SECONDS


def _wrong_code(field_name: str) -> InvalidArgument:
    return InvalidArgument(
        "the code is wrong, used or expired",
        violations=[FieldViolation(field_name, "is wrong, used or expired")],
        reason=domain.INVALID_CODE,
    )


async def verify_contact(
    db: Database,
    who: Principal,
    *,
    code: str,
    client: domain.Client,
    issuer: domain.Issuer,
    throttle: Throttle,
) -> domain.Account:
    """Mark a contact verified with the proof code sent to it; the caller's account."""
    domain.sessions_owner(who)
    domain.check_code_format(code)
    keys = keys_for("contact_code", account=who.subject, peer=client.ip)
    await throttle.check(keys)
    # A wrong code is counted on the code row in this (committed) transaction.
    async with db.transaction() as conn:
        verified = await domain.verify_contact(who, code, conn=conn, issuer=issuer)
    if not verified:
        await throttle.failure(keys)
        raise _wrong_code("code")
    await throttle.success(keys)
    async with db.read_only() as conn:
        return await domain.me(who, conn=conn)


async def start_contact_change(
    db: Database,
    who: Principal,
    change: domain.ContactChange,
    *,
    client: domain.Client,
    issuer: domain.Issuer,
    throttle: Throttle,
    sender: MessageSender,
) -> tuple[datetime, int]:
    """Check the proof (current password or a proof code), then send a code to the new
    contact. The password is counted like ChangePassword's (action ``login``), a proof
    code like VerifyContact's (``contact_code``)."""
    domain.sessions_owner(who)
    send_keys = await _may_send_code(throttle, change.destination, client)
    by_password = bool(change.current_password)
    if by_password:
        proof_keys = keys_for("login", account=who.subject, peer=client.ip)
        await throttle.check(proof_keys)
        async with db.read_only() as conn:
            owner = await domain.password_owner(who, conn=conn)
        if owner is None or not await domain.password_ok(
            owner.password_hash, change.current_password
        ):
            await throttle.failure(proof_keys)
            raise InvalidArgument(
                "the current password is wrong",
                violations=[FieldViolation("current_password", "is wrong")],
                reason=domain.INVALID_CREDENTIALS,
            )
    else:
        proof_keys = keys_for("contact_code", account=who.subject, peer=client.ip)
        await throttle.check(proof_keys)
    # A wrong proof code is counted on its row in this (committed) transaction.
    async with db.transaction() as conn:
        started = await domain.start_contact_change(
            who, change, password_checked=by_password, conn=conn, issuer=issuer
        )
    if started.sent is None:
        await throttle.failure(proof_keys)
        raise _wrong_code("current_contact_code")
    await throttle.success(proof_keys)
    await throttle.failure(send_keys)
    await sender.send(started.sent.message)
    return started.sent.expires_at, domain.OTP_RESEND_SECONDS


async def confirm_contact_change(
    db: Database,
    who: Principal,
    *,
    code: str,
    client: domain.Client,
    issuer: domain.Issuer,
    throttle: Throttle,
    sender: MessageSender,
    sessions: SessionCache,
) -> domain.Account:
    """Apply the pending contact change with the code the new contact received: end
    the caller's other sessions, tell the previous contacts, return the account."""
    domain.sessions_owner(who)
    domain.check_code_format(code)
    keys = keys_for("contact_code", account=who.subject, peer=client.ip)
    await throttle.check(keys)
    try:
        # A wrong code is counted on the code row in this (committed) transaction.
        async with db.transaction() as conn:
            confirmed = await domain.confirm_contact_change(who, code, conn=conn, issuer=issuer)
    except IntegrityError as exc:
        raise domain.contact_conflict(exc) from None
    if not confirmed.changed:
        await throttle.failure(keys)
        raise _wrong_code("code")
    sessions.forget_sessions(confirmed.revoked)
    await throttle.success(keys)
    await _tell_previous_contacts(sender, confirmed.notices)
    async with db.read_only() as conn:
        return await domain.me(who, conn=conn)


async def _tell_previous_contacts(
    sender: MessageSender, notices: Iterable[OutboundMessage]
) -> None:
    """Best effort: the change has committed, so a message that cannot be delivered is
    logged (purpose and channel only, never the address), not raised."""
    for notice in notices:
        try:
            await sender.send(notice)
        except Exception as exc:
            # No traceback: a driver's error text could quote the message document.
            log.warning(
                "could not tell a previous contact about a contact change",
                extra={
                    "purpose": notice.purpose,
                    "channel": notice.channel,
                    "error": type(exc).__name__,
                },
            )


# --- service accounts and housekeeping ----------------------------------------------------


async def cleanup(
    db: Database,
    *,
    grace: timedelta = timedelta(days=1),
    now: Callable[[], datetime] = _utc_now,
) -> int:
    """Delete sessions and one-time rows that expired more than ``grace`` ago."""
    async with db.transaction() as conn:
        return await domain.delete_expired(now() - grace, conn=conn)
