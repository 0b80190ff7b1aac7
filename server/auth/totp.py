"""RFC 6238 TOTP (HMAC-SHA1, 6 digits, 30-second steps) for admin MFA.

Secrets are 160 random bits (RFC 4226 section 4 recommends that length), shown to the
admin once as base32 and in an ``otpauth://`` URI, and stored sealed with
:class:`server.core.crypto.SecretBox`. :func:`verify` accepts the current step and one
step either side (clock drift) and returns the matched step; the caller stores it and
passes it back as ``last_step`` so a code is accepted at most once (RFC 6238
section 5.2).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import struct
from datetime import UTC, datetime

import pyotp

DIGITS = 6
STEP_SECONDS = 30
#: Steps either side of the current one that are accepted.
WINDOW = 1
_CODE = re.compile(r"[0-9]{6}")


def new_secret() -> str:
    """A new base32 secret (160 bits, 32 characters, no padding)."""
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii")


def _key(secret: str) -> bytes:
    cleaned = "".join(secret.split()).upper()
    try:
        return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except binascii.Error as exc:
        raise ValueError("TOTP secret is not base32") from exc


def provisioning_uri(secret: str, account_name: str, issuer: str = "GenCharge") -> str:
    """``otpauth://totp/...`` URI for authenticator apps (usually shown as a QR code)."""
    _key(secret)  # reject a bad secret here rather than in the app
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account_name, issuer_name=issuer
    )


def time_step(now: datetime) -> int:
    """The RFC 6238 counter T for ``now`` (an aware datetime; naive means UTC)."""
    moment = now.replace(tzinfo=UTC) if now.tzinfo is None else now
    return int(moment.timestamp()) // STEP_SECONDS


def _code_at(key: bytes, step: int) -> str:
    digest = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 10**DIGITS:0{DIGITS}d}"


def current_code(secret: str, now: datetime) -> str:
    """The code an authenticator shows at ``now`` (for tests and tooling)."""
    return _code_at(_key(secret), time_step(now))


def verify(secret: str, code: str, *, now: datetime, last_step: int | None) -> int | None:
    """The time step ``code`` matches within +/-1 step of ``now`` and strictly after
    ``last_step``; None otherwise. Input that is not six ASCII digits (spaces
    allowed, as apps display "123 456") yields None, never an exception."""
    if not isinstance(code, str):
        return None
    candidate = code.replace(" ", "").strip()
    if not _CODE.fullmatch(candidate):
        return None
    key = _key(secret)
    current = time_step(now)
    matched: int | None = None
    for step in range(current - WINDOW, current + WINDOW + 1):
        # Compare every step (no early exit) so timing says nothing about which matched.
        ok = hmac.compare_digest(_code_at(key, step), candidate)
        if ok and (last_step is None or step > last_step):
            matched = step
    return matched
