"""Access tokens (EdDSA-signed JWTs, RFC 9068 profile) and opaque secrets.

Access token: header ``{"alg": "EdDSA", "typ": "at+jwt", "kid": <thumbprint>}``;
claims ``iss aud sub iat nbf exp jti ptype role typ`` and ``sid`` when the token
belongs to a session (service tokens have none). ``sub`` is ``"<ptype>:<id>"``.
Service tokens also carry ``scope`` (RFC 8693 section 4.2: the account's scopes,
space-separated, see :mod:`server.auth.scopes`) when the account holds any; a ``scope``
claim on a user or admin token makes the token malformed.

Verification never lets the token choose how it is checked: the header's ``alg`` must
be exactly "EdDSA" (checked before any key is touched, so ``none``, HS256 keyed with the
public key, RS256 or ES256 are refused outright), the key comes from our ring by
``kid`` alone (``jku``/``jwk``/``x5u``/``x5c`` are ignored), and PyJWT is called with
``algorithms=["EdDSA"]`` and that explicit key. Expiry, not-before and issued-at are
checked against the service's own clock with a 5 s leeway.

Opaque tokens (refresh, password reset, service-account secrets) are 256 random bits;
only their SHA-256 is stored, which is sufficient for values that cannot be guessed.
OTP codes have only 10^6 values, so a plain hash of one could be reversed offline from
a database dump in a moment: OTP hashes are HMAC-SHA256 keyed with a server-side
pepper (derived from the data-encryption key, see :func:`otp_pepper`) that never lives
in the database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

from server.auth.keys import ALGORITHM, KeyRing
from server.auth.scopes import scope_claim, scopes_of_claim
from server.core.crypto import SecretBox

PRINCIPAL_TYPES = frozenset({"user", "admin", "service"})
ACCESS_TOKEN_TYPE = "access"  # noqa: S105 - a claim value, not a secret
#: RFC 9068 section 2.1 header ``typ`` (its long form is accepted too).
JWT_HEADER_TYPE = "at+jwt"
_HEADER_TYPES = frozenset({"at+jwt", "application/at+jwt"})
LEEWAY_SECONDS = 5
#: Far above any token we issue; stops parsing work on absurd inputs.
MAX_TOKEN_CHARS = 8192
_REQUIRED_CLAIMS = ["iss", "aud", "sub", "iat", "nbf", "exp", "jti"]

#: HKDF label of the OTP pepper (see :func:`otp_pepper`).
OTP_PEPPER_LABEL = b"gencharge/otp-pepper/v1"
OTP_DIGITS = 6
_PREFIX = re.compile(r"[A-Za-z0-9]{1,32}")


def _utc_now() -> datetime:
    return datetime.now(UTC)


class TokenError(Exception):
    """An access token was refused. ``reason`` is a short machine word:

    malformed, algorithm_not_allowed, unknown_kid, bad_signature, wrong_issuer,
    wrong_audience, expired, not_yet_valid, wrong_token_type.
    (A missing or ill-typed required claim is "malformed".)
    """

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason


@dataclass(frozen=True)
class AccessClaims:
    principal_type: str  # "user" | "admin" | "service"
    principal_id: str
    role: str
    session_id: str | None
    token_id: str
    issued_at: datetime
    expires_at: datetime
    #: Service tokens: the scopes the account held when the token was issued.
    scopes: frozenset[str] = frozenset()

    @property
    def subject(self) -> str:
        return f"{self.principal_type}:{self.principal_id}"


class TokenService:
    """Issues and verifies access tokens with one :class:`KeyRing`."""

    def __init__(
        self,
        keyring: KeyRing,
        *,
        issuer: str,
        audience: str,
        ttl_seconds: int,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if not issuer or not audience:
            raise ValueError("issuer and audience must be non-empty")
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self.keyring = keyring
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds
        self._clock = clock

    def issue(
        self,
        *,
        principal_type: str,
        principal_id: str,
        role: str,
        session_id: str | None,
        scopes: Iterable[str] = (),
    ) -> tuple[str, datetime]:
        """A signed access token and the moment it expires. ``scopes``: a service
        account's scopes (the ``scope`` claim); only service tokens have them."""
        if principal_type not in PRINCIPAL_TYPES:
            raise ValueError(f"unknown principal type {principal_type!r}")
        if not principal_id or not role:
            raise ValueError("principal_id and role must be non-empty")
        scope = scope_claim(scopes)
        if scope and principal_type != "service":
            raise ValueError("only service tokens carry scopes")
        issued = int(self._clock().timestamp())
        expires = issued + self.ttl_seconds
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": f"{principal_type}:{principal_id}",
            "iat": issued,
            "nbf": issued,
            "exp": expires,
            "jti": uuid.uuid4().hex,
            "ptype": principal_type,
            "role": role,
            "typ": ACCESS_TOKEN_TYPE,
        }
        if session_id is not None:
            claims["sid"] = session_id
        if scope:
            claims["scope"] = scope
        token = jwt.encode(
            claims,
            self.keyring.sign_key,
            algorithm=ALGORITHM,
            headers={"kid": self.keyring.signing_kid, "typ": JWT_HEADER_TYPE},
        )
        return token, datetime.fromtimestamp(expires, UTC)

    def verify(self, token: str) -> AccessClaims:
        """The claims of a valid access token; :class:`TokenError` otherwise."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise TokenError("malformed", "not a token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError("malformed", "cannot parse token header") from exc
        # Algorithm allow-list first: nothing below runs for alg none/HS*/RS*/ES*.
        if header.get("alg") != ALGORITHM:
            raise TokenError("algorithm_not_allowed", "token algorithm is not allowed")
        if "crit" in header or "b64" in header:
            raise TokenError("malformed", "unsupported critical header")
        kid = header.get("kid")
        now = self._clock()
        key = self.keyring.verification_key(kid, now) if isinstance(kid, str) else None
        if key is None:
            raise TokenError("unknown_kid", "token signing key is unknown or retired")
        try:
            claims = jwt.decode(
                token,
                key.public_key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require": list(_REQUIRED_CLAIMS),
                    "strict_aud": True,
                    # Time claims are checked below against our own clock.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidAlgorithmError as exc:
            raise TokenError("algorithm_not_allowed", "token algorithm is not allowed") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenError("bad_signature", "token signature is invalid") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenError("wrong_audience", "token is for another audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenError("wrong_issuer", "token is from another issuer") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError("malformed", f"token lacks the {exc.claim!r} claim") from exc
        except jwt.PyJWTError as exc:
            raise TokenError("malformed", "token cannot be decoded") from exc
        return self._claims(header, claims, now)

    def _claims(
        self, header: Mapping[str, Any], claims: Mapping[str, Any], now: datetime
    ) -> AccessClaims:
        # Defence in depth: exact matches even if the library's checks ever loosen.
        if claims.get("iss") != self.issuer:
            raise TokenError("wrong_issuer", "token is from another issuer")
        if claims.get("aud") != self.audience:
            raise TokenError("wrong_audience", "token is for another audience")
        iat, nbf, exp = (_timestamp(claims, name) for name in ("iat", "nbf", "exp"))
        moment = now.timestamp()
        if moment >= exp + LEEWAY_SECONDS:
            raise TokenError("expired", "token has expired")
        if nbf > moment + LEEWAY_SECONDS or iat > moment + LEEWAY_SECONDS:
            raise TokenError("not_yet_valid", "token is not valid yet")
        typ_header = header.get("typ")
        if not isinstance(typ_header, str) or typ_header.lower() not in _HEADER_TYPES:
            raise TokenError("wrong_token_type", "not an access token")
        if claims.get("typ") != ACCESS_TOKEN_TYPE:
            raise TokenError("wrong_token_type", "not an access token")
        ptype = claims.get("ptype")
        role = claims.get("role")
        subject = claims.get("sub")
        jti = claims.get("jti")
        sid = claims.get("sid")
        if not isinstance(ptype, str) or ptype not in PRINCIPAL_TYPES:
            raise TokenError("malformed", "token has no valid principal type")
        if not isinstance(role, str) or not role:
            raise TokenError("malformed", "token has no role")
        if not isinstance(jti, str) or not jti:
            raise TokenError("malformed", "token has no id")
        if sid is not None and (not isinstance(sid, str) or not sid):
            raise TokenError("malformed", "token has an invalid session id")
        scope = claims.get("scope")
        if scope is not None and (not isinstance(scope, str) or ptype != "service"):
            raise TokenError("malformed", "token has an invalid scope claim")
        prefix = f"{ptype}:"
        if not isinstance(subject, str) or not subject.startswith(prefix):
            raise TokenError("malformed", "token subject does not match its principal type")
        principal_id = subject[len(prefix) :]
        if not principal_id:
            raise TokenError("malformed", "token subject has no principal id")
        return AccessClaims(
            principal_type=ptype,
            principal_id=principal_id,
            role=role,
            session_id=sid,
            token_id=jti,
            issued_at=datetime.fromtimestamp(iat, UTC),
            expires_at=datetime.fromtimestamp(exp, UTC),
            scopes=scopes_of_claim(scope) if scope else frozenset(),
        )


def _timestamp(claims: Mapping[str, Any], name: str) -> int:
    value = claims.get(name)
    # bool is an int subclass; floats are legal NumericDate but we only issue ints.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError("malformed", f"token claim {name!r} is not a number")
    return int(value)


# --- opaque tokens and one-time codes ------------------------------------------------


def new_opaque_token(prefix: str) -> str:
    """``<prefix>_<43 base64url chars>``: 32 bytes from the CSPRNG. The prefix (letters
    and digits, e.g. "rt" for refresh tokens) makes leaked tokens recognisable."""
    if not _PREFIX.fullmatch(prefix):
        raise ValueError("token prefix must be 1-32 ASCII letters or digits")
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_hash(token: str) -> str:
    """SHA-256 hex of a high-entropy token (what the database stores)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_otp_code() -> str:
    """Six decimal digits, uniform over 000000-999999 (leading zeros kept)."""
    return f"{secrets.randbelow(10**OTP_DIGITS):0{OTP_DIGITS}d}"


def otp_pepper(box: SecretBox) -> bytes:
    """The HMAC key for :func:`otp_hash`, derived from the data-encryption key."""
    return box.derive_key(OTP_PEPPER_LABEL)


def otp_hash(
    code: str, *, phone_number: str, purpose: str, otp_id: int | str, pepper: bytes
) -> str:
    """HMAC-SHA256 (hex) of an OTP code bound to its phone number, purpose and row id.

    Keyed with ``pepper`` (:func:`otp_pepper`) because the code space is only 10^6:
    without the server-side key a leaked row would be brute-forced instantly. Binding
    the id and purpose stops a code issued for one request being replayed on another.
    """
    if len(pepper) < 16:
        raise ValueError("the OTP pepper must be at least 16 bytes")
    message = json.dumps(
        ["otp", purpose, phone_number, str(otp_id), code], separators=(",", ":")
    ).encode("utf-8")
    return hmac.new(pepper, message, hashlib.sha256).hexdigest()


def hashes_equal(a: str | bytes, b: str | bytes) -> bool:
    """Constant-time equality for hashes/tokens (str is compared as UTF-8)."""
    left = a.encode("utf-8") if isinstance(a, str) else a
    right = b.encode("utf-8") if isinstance(b, str) else b
    return hmac.compare_digest(left, right)
