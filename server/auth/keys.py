"""Ed25519 signing keys for access tokens (JWS ``alg`` "EdDSA", RFC 8037).

The ring holds the current signing key and, during a rotation, the public halves of
retired keys that still verify tokens until an overlap deadline. Every key is named by
its RFC 7638 JWK thumbprint (the ``kid``), so the same key always has the same id on
every replica without any coordination.

Configuration (see docs/keys.md): ``GENCHARGE_JWT_PRIVATE_KEY`` (PKCS#8 PEM),
``GENCHARGE_JWT_PREVIOUS_PUBLIC_KEYS`` (PEM blocks) and
``GENCHARGE_JWT_PREVIOUS_KEYS_VALID_UNTIL`` (ISO 8601). In development, with no key
configured, one is generated once and kept in ``<data_dir>/keys/jwt_ed25519.pem``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from server.core.config import Settings
from server.core.crypto import b64url_encode, load_or_create_dev_secret

log = logging.getLogger(__name__)

ALGORITHM = "EdDSA"
#: Development default location, relative to ``Settings.data_dir``.
DEV_KEY_FILE = Path("keys") / "jwt_ed25519.pem"

_PUBLIC_PEM_BLOCK = re.compile(r"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----", re.DOTALL)


@dataclass(frozen=True)
class VerificationKey:
    kid: str
    public_key: Ed25519PublicKey
    #: None for the current signing key; the overlap deadline for a retired key.
    not_after: datetime | None


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def jwk_thumbprint(public_key: Ed25519PublicKey) -> str:
    """RFC 7638 thumbprint: base64url(SHA-256) of the canonical JSON of the required
    OKP members (crv, kty, x) in lexicographic order, no whitespace."""
    canonical = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": b64url_encode(_raw_public(public_key))},
        separators=(",", ":"),
        sort_keys=True,
    )
    return b64url_encode(hashlib.sha256(canonical.encode("ascii")).digest())


def public_jwk(public_key: Ed25519PublicKey, kid: str) -> dict[str, str]:
    """The public OKP JWK (RFC 8037) for ``public_key``: never any private member."""
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": b64url_encode(_raw_public(public_key)),
        "kid": kid,
        "alg": ALGORITHM,
        "use": "sig",
    }


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class KeyRing:
    """The current signing key plus retired public keys valid until ``not_after``."""

    def __init__(
        self, sign_key: Ed25519PrivateKey, previous_keys: Iterable[VerificationKey] = ()
    ) -> None:
        self.sign_key = sign_key
        self.signing_kid = jwk_thumbprint(sign_key.public_key())
        self._current = VerificationKey(self.signing_kid, sign_key.public_key(), None)
        self._previous: dict[str, VerificationKey] = {}
        for key in previous_keys:
            if key.kid == self.signing_kid:
                continue  # the current key listed again: it is current, not retired
            if key.not_after is None:
                raise ValueError("a previous (retired) key needs a not_after deadline")
            self._previous[key.kid] = VerificationKey(key.kid, key.public_key, _utc(key.not_after))

    def __repr__(self) -> str:
        return f"KeyRing(signing_kid={self.signing_kid!r}, previous={list(self._previous)!r})"

    def verification_key(self, kid: str, now: datetime) -> VerificationKey | None:
        """The key named ``kid`` if it may verify tokens at ``now``; None for an unknown
        kid or a retired key past its ``not_after``."""
        if kid == self.signing_kid:
            return self._current
        key = self._previous.get(kid)
        if key is None or key.not_after is None or _utc(now) > key.not_after:
            return None
        return key

    def verification_keys(self, now: datetime) -> list[VerificationKey]:
        """The current key first, then the retired keys still valid at ``now``."""
        moment = _utc(now)
        return [self._current] + [
            key
            for key in self._previous.values()
            if key.not_after is not None and moment <= key.not_after
        ]

    def jwks(self, now: datetime) -> list[dict[str, str]]:
        """Public JWKs (RFC 8037 OKP) of every key that verifies tokens at ``now``."""
        return [public_jwk(key.public_key, key.kid) for key in self.verification_keys(now)]


# --- PEM helpers (also for a ``gencharge keygen`` command) ---------------------------


def generate_private_key_pem() -> str:
    """A new Ed25519 private key as unencrypted PKCS#8 PEM (the
    ``GENCHARGE_JWT_PRIVATE_KEY`` format)."""
    return private_key_pem(Ed25519PrivateKey.generate())


def private_key_pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """SubjectPublicKeyInfo PEM of ``key`` (what goes into
    ``GENCHARGE_JWT_PREVIOUS_PUBLIC_KEYS`` when the key is retired)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def _pem_text(value: str) -> str:
    """Accept PEM pasted into one environment line with literal ``\\n`` escapes."""
    text = value.strip()
    if "\\n" in text and "\n" not in text:
        text = text.replace("\\n", "\n")
    return text


def parse_private_key_pem(
    pem: str, *, source: str = "GENCHARGE_JWT_PRIVATE_KEY"
) -> Ed25519PrivateKey:
    """Load an unencrypted PKCS#8 PEM Ed25519 private key; ``ValueError`` naming
    ``source`` otherwise (the message never contains key material)."""
    try:
        key = serialization.load_pem_private_key(_pem_text(pem).encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError, UnsupportedAlgorithm) as exc:
        raise ValueError(
            f"{source} is not an unencrypted PKCS#8 PEM private key "
            "(generate one with: openssl genpkey -algorithm ed25519)"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{source} must be an Ed25519 key (JWS alg EdDSA)")
    return key


def parse_public_keys_pem(bundle: str) -> list[Ed25519PublicKey]:
    """Every ``PUBLIC KEY`` PEM block in ``bundle`` (each must be Ed25519)."""
    text = _pem_text(bundle)
    blocks = _PUBLIC_PEM_BLOCK.findall(text)
    if text and not blocks:
        raise ValueError(
            "GENCHARGE_JWT_PREVIOUS_PUBLIC_KEYS must hold one or more "
            "'-----BEGIN PUBLIC KEY-----' PEM blocks"
        )
    keys: list[Ed25519PublicKey] = []
    for number, block in enumerate(blocks, start=1):
        try:
            key = serialization.load_pem_public_key(block.encode("ascii"))
        except (ValueError, UnicodeEncodeError, UnsupportedAlgorithm) as exc:
            raise ValueError(
                f"GENCHARGE_JWT_PREVIOUS_PUBLIC_KEYS: PEM block {number} is not a valid public key"
            ) from exc
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(
                f"GENCHARGE_JWT_PREVIOUS_PUBLIC_KEYS: PEM block {number} is not an Ed25519 key"
            )
        keys.append(key)
    return keys


def _parse_valid_until(value: str) -> datetime:
    text = value.strip()
    if not text:
        raise ValueError(
            "GENCHARGE_JWT_PREVIOUS_KEYS_VALID_UNTIL is required when "
            "GENCHARGE_JWT_PREVIOUS_PUBLIC_KEYS is set (ISO 8601, e.g. "
            "2026-11-20T12:00:00Z): retired keys must stop verifying at a known time"
        )
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(
            "GENCHARGE_JWT_PREVIOUS_KEYS_VALID_UNTIL is not an ISO 8601 date-time "
            "(e.g. 2026-11-20T12:00:00Z)"
        ) from exc
    return _utc(moment)  # a time without offset is taken as UTC


def load_keyring(settings: Settings) -> KeyRing:
    """The key ring from settings; ``ValueError`` with a clear message when the
    configuration is unusable (see module docstring for the development default)."""
    configured = settings.jwt_private_key.get_secret_value().strip()
    if configured:
        sign_key = parse_private_key_pem(configured)
    elif settings.production:
        raise ValueError("GENCHARGE_JWT_PRIVATE_KEY is required in production")
    else:
        sign_key = _development_key(settings.data_dir)

    previous_public = parse_public_keys_pem(settings.jwt_previous_public_keys)
    previous: list[VerificationKey] = []
    if previous_public:
        valid_until = _parse_valid_until(settings.jwt_previous_keys_valid_until)
        previous = [VerificationKey(jwk_thumbprint(k), k, valid_until) for k in previous_public]
    ring = KeyRing(sign_key, previous)
    log.info(
        "JWT key ring: signing kid %s, %d retired key(s)",
        ring.signing_kid,
        len(previous),
    )
    return ring


def _development_key(data_dir: Path) -> Ed25519PrivateKey:
    stored = load_or_create_dev_secret(
        data_dir,
        DEV_KEY_FILE,
        lambda: generate_private_key_pem().encode("ascii"),
        "JWT signing key",
    )
    if stored is None:
        return Ed25519PrivateKey.generate()
    try:
        text = stored.decode("ascii")
    except UnicodeDecodeError:
        text = ""
    return parse_private_key_pem(text, source=str(data_dir / DEV_KEY_FILE))
