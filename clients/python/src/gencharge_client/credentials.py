"""Credentials: where each call's ``authorization: Bearer <access token>`` comes from.

- :class:`SessionCredentials`: a user's or admin's session (from :func:`login`,
  :func:`login_otp`, :func:`login_admin`, or tokens you stored). The access token is
  refreshed with ``AuthService.RefreshToken`` shortly before it expires, and once more
  if the server says it expired. Refresh tokens are single use and a reused one ends
  the session, so exactly one refresh runs at a time per credentials object: every
  concurrent call waits for that one refresh. The newest refresh token is stored (and
  handed to ``on_refresh``, to persist it) before the new access token is used.
- :class:`ServiceAccountCredentials`: an internal service's client id and secret; the
  token is issued with ``IssueServiceToken`` (no refresh token) and issued again
  before it expires, or when the server retires it; one issue at a time.
- :class:`StaticTokenCredentials`: an access token you manage yourself.

Secrets never appear in ``repr``/``str`` of these objects, nor in the SDK's errors.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from google.protobuf.timestamp_pb2 import Timestamp

from gencharge_client.errors import (
    GenChargeError,
    InvalidRefreshToken,
    RefreshTokenReused,
    SessionEnded,
    TokenExpired,
)
from gencharge_client.v1 import auth_service_pb2 as auth_pb
from gencharge_client.v1 import common_pb2

if TYPE_CHECKING:
    from gencharge_client.v1.services import AuthService

Clock = Callable[[], float]
OnRefresh = Callable[[auth_pb.AuthTokens], Awaitable[None] | None]
TotpSource = Callable[[auth_pb.MfaChallenge], Awaitable[str] | str]

REDACTED = "<redacted>"
#: Renew this long before the access token expires, at most (seconds).
DEFAULT_REFRESH_SKEW = 60.0
#: ... and at most this share of the token's lifetime.
SKEW_SHARE_OF_LIFETIME = 0.1


class Credentials(ABC):
    """Supplies the access token of each call."""

    @abstractmethod
    async def get_access_token(self, auth: AuthService) -> str:
        """A token valid for now (renewed first if it is about to expire). ``auth``
        reaches AuthService without credentials."""

    async def token_rejected(self, token: str, error: GenChargeError, auth: AuthService) -> bool:
        """The server refused ``token`` with ``error``: renew if that helps. True means
        a new token is ready and the call may be replayed once."""
        return False


class StaticTokenCredentials(Credentials):
    """One access token, never renewed (its owner renews it)."""

    def __init__(self, access_token: str) -> None:
        self._access = access_token

    async def get_access_token(self, auth: AuthService) -> str:
        return self._access

    def __repr__(self) -> str:
        return f"StaticTokenCredentials(access_token={REDACTED})"


class _RenewingCredentials(Credentials):
    """An access token with an expiry, renewed before it and on the server's word, by
    one renewal at a time (single flight: concurrent callers wait for it)."""

    def __init__(self, *, refresh_skew: float, clock: Clock) -> None:
        self.refresh_skew = refresh_skew
        self._clock = clock
        self._lock = asyncio.Lock()
        self._access = ""
        self._expires_at = 0.0
        self._lifetime = 0.0
        #: How many times the token was renewed (refreshed or re-issued).
        self.renewals = 0

    @property
    def access_token_expires_at(self) -> float:
        """When the current access token expires, on this object's clock (0: no token).

        Measured as the token's lifetime (``exp - iat`` of its JWT payload, read, not
        verified) from when it arrived, so a client clock that is off from the server's
        neither renews too late nor renews in a loop."""
        return self._expires_at

    def _store_access(self, token: str, expires_at: Timestamp) -> None:
        now = self._clock()
        issued_at = _jwt_issued_at(token)
        expiry = float(expires_at.seconds) + expires_at.nanos / 1e9
        if issued_at is not None and expiry > issued_at:
            self._lifetime = expiry - issued_at
        else:  # not a JWT we can read: trust our clock
            self._lifetime = max(expiry - now, 0.0)
        self._access = token
        self._expires_at = now + self._lifetime

    def _fresh(self) -> bool:
        if not self._access:
            return False
        skew = min(self.refresh_skew, self._lifetime * SKEW_SHARE_OF_LIFETIME)
        return self._clock() < self._expires_at - skew

    async def get_access_token(self, auth: AuthService) -> str:
        if self._fresh():
            return self._access
        async with self._lock:
            if not self._fresh():  # another caller may have renewed while we waited
                await self._renew(auth)
                self.renewals += 1
        return self._access

    async def token_rejected(self, token: str, error: GenChargeError, auth: AuthService) -> bool:
        if not self._renews_after(error):
            return False
        async with self._lock:
            if self._access == token:  # nobody renewed since that token was sent
                await self._renew(auth)
                self.renewals += 1
        return True

    @abstractmethod
    def _renews_after(self, error: GenChargeError) -> bool:
        """Does a new token help after the server refused ours with ``error``?"""

    @abstractmethod
    async def _renew(self, auth: AuthService) -> None:
        """Get a new access token (called under the lock)."""


class SessionCredentials(_RenewingCredentials):
    """A logged-in user's or admin's session: access and refresh tokens.

    ``on_refresh(tokens)`` (sync or async) is called with every new token pair, after
    the new refresh token is stored here and before the new access token is used:
    persist ``tokens.refresh_token`` there if the session must outlive the process.
    ``clock`` (seconds since the epoch) decides when the token is about to expire.
    """

    def __init__(
        self,
        tokens: auth_pb.AuthTokens,
        *,
        on_refresh: OnRefresh | None = None,
        refresh_skew: float = DEFAULT_REFRESH_SKEW,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(refresh_skew=refresh_skew, clock=clock)
        self.session_id = tokens.session_id
        self._refresh = tokens.refresh_token
        self._on_refresh = on_refresh
        self._ended: GenChargeError | None = None
        self._store_access(tokens.access_token, tokens.access_token_expires_at)

    @property
    def refresh_token(self) -> str:
        """The newest refresh token (single use: never use it while this object lives)."""
        return self._refresh

    @property
    def ended(self) -> GenChargeError | None:
        """Why the session is over (the server refused its refresh token), or None.
        Once set, every renewal raises it again without calling the server: log in."""
        return self._ended

    def _renews_after(self, error: GenChargeError) -> bool:
        return isinstance(error, TokenExpired)

    async def _renew(self, auth: AuthService) -> None:
        if self._ended is not None:
            raise self._ended.with_traceback(None)
        try:
            tokens = await auth.refresh_token(
                auth_pb.RefreshTokenRequest(refresh_token=self._refresh)
            )
        except (RefreshTokenReused, InvalidRefreshToken, SessionEnded) as exc:
            self._ended = exc
            raise
        # The old refresh token is spent: keep the new one before anything else.
        self._refresh = tokens.refresh_token
        self.session_id = tokens.session_id or self.session_id
        if self._on_refresh is not None:
            outcome = self._on_refresh(tokens)
            if inspect.isawaitable(outcome):
                await outcome
        self._store_access(tokens.access_token, tokens.access_token_expires_at)

    def __repr__(self) -> str:
        return (
            f"SessionCredentials(session_id={self.session_id!r}, access_token={REDACTED}, "
            f"refresh_token={REDACTED}, access_token_expires_at={self._expires_at:.0f})"
        )


class ServiceAccountCredentials(_RenewingCredentials):
    """An internal service's account: a token from ``IssueServiceToken`` with the client
    id and secret, issued again before it expires or when the server retired it."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        refresh_skew: float = DEFAULT_REFRESH_SKEW,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(refresh_skew=refresh_skew, clock=clock)
        self.client_id = client_id
        self._secret = client_secret

    def _renews_after(self, error: GenChargeError) -> bool:
        return isinstance(error, TokenExpired | SessionEnded)

    async def _renew(self, auth: AuthService) -> None:
        reply = await auth.issue_service_token(
            auth_pb.IssueServiceTokenRequest(client_id=self.client_id, client_secret=self._secret)
        )
        self._store_access(reply.access_token, reply.access_token_expires_at)

    def __repr__(self) -> str:
        return (
            f"ServiceAccountCredentials(client_id={self.client_id!r}, "
            f"client_secret={REDACTED}, access_token={REDACTED})"
        )


def _jwt_issued_at(token: str) -> float | None:
    """The ``iat`` claim of a JWT's payload (not verified: only the lifetime is read)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, TypeError):
        return None
    issued_at = claims.get("iat") if isinstance(claims, dict) else None
    return float(issued_at) if isinstance(issued_at, int | float) else None


# --- logins -----------------------------------------------------------------------------------


class MfaRequired(RuntimeError):
    """The account answered with an MFA challenge: log in with :func:`login_admin`."""


def _login_request(
    email: str,
    phone_number: str,
    password: str,
    principal: common_pb2.PrincipalType.ValueType,
    user_agent: str,
) -> auth_pb.LoginRequest:
    if bool(email) == bool(phone_number):
        raise ValueError("give exactly one of email and phone_number")
    request = auth_pb.LoginRequest(
        password=password, principal_type=principal, user_agent=user_agent
    )
    if email:
        request.email = email
    else:
        request.phone_number = phone_number
    return request


async def login(
    auth: AuthService,
    *,
    email: str = "",
    phone_number: str = "",
    password: str,
    user_agent: str = "",
    on_refresh: OnRefresh | None = None,
) -> SessionCredentials:
    """Log a customer in with e-mail or phone number and password."""
    reply = await auth.login(
        _login_request(email, phone_number, password, common_pb2.PRINCIPAL_TYPE_USER, user_agent)
    )
    if reply.WhichOneof("result") != "tokens":
        raise MfaRequired("this account needs a second factor: use login_admin")
    return SessionCredentials(reply.tokens, on_refresh=on_refresh)


async def login_admin(
    auth: AuthService,
    *,
    email: str = "",
    phone_number: str = "",
    password: str,
    totp: TotpSource,
    user_agent: str = "",
    on_refresh: OnRefresh | None = None,
) -> SessionCredentials:
    """Log an admin in: password, then the MFA challenge answered with ``totp(challenge)``
    (the current code of the authenticator app; on a first login the challenge carries
    the enrolment secret, ``challenge.enrolment``, to set the app up with)."""
    reply = await auth.login(
        _login_request(email, phone_number, password, common_pb2.PRINCIPAL_TYPE_ADMIN, user_agent)
    )
    if reply.WhichOneof("result") == "tokens":
        return SessionCredentials(reply.tokens, on_refresh=on_refresh)
    challenge = reply.mfa_challenge
    code = totp(challenge)
    if inspect.isawaitable(code):
        code = await code
    tokens = await auth.verify_mfa(
        auth_pb.VerifyMfaRequest(challenge_token=challenge.challenge_token, totp_code=str(code))
    )
    return SessionCredentials(tokens, on_refresh=on_refresh)


async def request_otp(auth: AuthService, phone_number: str) -> auth_pb.RequestOtpResponse:
    """Send a one-time login code by SMS to a customer's verified phone number."""
    return await auth.request_otp(auth_pb.RequestOtpRequest(phone_number=phone_number))


async def login_otp(
    auth: AuthService,
    *,
    phone_number: str,
    code: str,
    user_agent: str = "",
    on_refresh: OnRefresh | None = None,
) -> SessionCredentials:
    """Log a customer in with the code :func:`request_otp` sent."""
    tokens = await auth.verify_otp(
        auth_pb.VerifyOtpRequest(phone_number=phone_number, code=code, user_agent=user_agent)
    )
    return SessionCredentials(tokens, on_refresh=on_refresh)
