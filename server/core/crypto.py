"""Encryption of secrets at rest (AES-256-GCM) and derived keys (HKDF-SHA256).

One 32-byte master key (``GENCHARGE_DATA_ENCRYPTION_KEY``) is never used directly:
every use gets its own HKDF-derived subkey (key separation), so the key that seals TOTP
secrets is not the key that peppers OTP hashes.

Sealed values are text, ``v1.<base64url(nonce || ciphertext || tag)>``: a fresh 96-bit
random nonce per message, and optional associated data (for example the owning row's
id) that must be presented again to open the value, so a ciphertext copied onto
another row does not decrypt there.

See docs/keys.md for configuration and the development default.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import logging
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from server.core.config import Settings

log = logging.getLogger(__name__)

KEY_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16
_VERSION = "v1."
#: HKDF label of the AES-GCM subkey; reserved, ``derive_key`` refuses it.
_SEAL_LABEL = b"gencharge/secretbox/aes-256-gcm/v1"
#: Development default location, relative to ``Settings.data_dir``.
DATA_KEY_FILE = Path("keys") / "data.key"


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url_encode`; raises ``ValueError`` on bad input."""
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError as exc:
        raise ValueError("not base64url") from exc
    if b"=" in raw:
        raise ValueError("not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except binascii.Error as exc:
        raise ValueError("not base64url") from exc


def _hkdf(master: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=label).derive(master)


class SecretBox:
    """AES-256-GCM authenticated encryption of short strings under one master key.

    ``previous_keys`` (optional) are older master keys still accepted by :meth:`open`
    while values are re-sealed under the current key; :meth:`seal` and
    :meth:`derive_key` always use the current key.
    """

    __slots__ = ("_aead", "_master", "_previous")

    def __init__(self, key: bytes, *, previous_keys: Sequence[bytes] = ()) -> None:
        for candidate in (key, *previous_keys):
            if not isinstance(candidate, bytes) or len(candidate) != KEY_BYTES:
                raise ValueError(f"a SecretBox key must be exactly {KEY_BYTES} bytes")
        self._master = key
        self._aead = AESGCM(_hkdf(key, _SEAL_LABEL))
        self._previous = tuple(AESGCM(_hkdf(k, _SEAL_LABEL)) for k in previous_keys)

    def __repr__(self) -> str:  # never show key material
        return "SecretBox(<redacted>)"

    def seal(self, plaintext: str, *, associated_data: bytes = b"") -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), associated_data)
        return _VERSION + b64url_encode(nonce + sealed)

    def open(self, token: str, *, associated_data: bytes = b"") -> str:
        """Decrypt a value from :meth:`seal`; ``ValueError`` if it was altered, was
        sealed under another key, or is bound to other associated data."""
        if not isinstance(token, str) or not token.startswith(_VERSION):
            raise ValueError("not a sealed value (unknown format or version)")
        blob = b64url_decode(token[len(_VERSION) :])
        if len(blob) < _NONCE_BYTES + _TAG_BYTES:
            raise ValueError("sealed value is truncated")
        nonce, sealed = blob[:_NONCE_BYTES], blob[_NONCE_BYTES:]
        for aead in (self._aead, *self._previous):
            try:
                plain = aead.decrypt(nonce, sealed, associated_data)
            except InvalidTag:
                continue
            try:
                return plain.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError("sealed value is not UTF-8 text") from exc
        raise ValueError("cannot open sealed value: wrong key, wrong associated data or tampered")

    def sealed_with_current_key(self, token: str, *, associated_data: bytes = b"") -> bool:
        """Whether ``token`` opens under the current key (False: it needs re-sealing,
        or does not open at all)."""
        try:
            blob = b64url_decode(token[len(_VERSION) :]) if token.startswith(_VERSION) else b""
            if len(blob) < _NONCE_BYTES + _TAG_BYTES:
                return False
            self._aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], associated_data)
        except (InvalidTag, ValueError):
            return False
        return True

    def export_key(self) -> str:
        """The current master key in the ``GENCHARGE_DATA_ENCRYPTION_KEY`` format, to
        hand to this service's own worker processes (server/ops/workers.py). Never log it."""
        return base64.b64encode(self._master).decode("ascii")

    def derive_key(self, label: bytes) -> bytes:
        """A 32-byte subkey for ``label`` (HKDF-SHA256, info=label), e.g. an HMAC pepper.

        Use one fixed, versioned label per purpose (``b"gencharge/otp-pepper/v1"``).
        """
        if not label:
            raise ValueError("derive_key needs a non-empty label")
        if label == _SEAL_LABEL:
            raise ValueError("that label is reserved for SecretBox encryption")
        return _hkdf(self._master, label)


def generate_data_key() -> str:
    """A new data-encryption key, base64 of 32 random bytes (the
    ``GENCHARGE_DATA_ENCRYPTION_KEY`` format)."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def parse_data_key(text: str) -> bytes:
    """Decode a base64 (standard or URL-safe alphabet) 32-byte key; ``ValueError``
    naming the setting otherwise (without echoing the value)."""
    cleaned = "".join(text.split())
    cleaned += "=" * (-len(cleaned) % 4)
    if cleaned.isascii():
        for altchars in (b"+/", b"-_"):
            try:
                key = base64.b64decode(cleaned.encode("ascii"), altchars=altchars, validate=True)
            except (binascii.Error, ValueError):
                continue
            if len(key) == KEY_BYTES:
                return key
    raise ValueError(
        "GENCHARGE_DATA_ENCRYPTION_KEY must be the base64 encoding of exactly 32 random "
        'bytes (generate one with: python -c "import base64,os; '
        'print(base64.b64encode(os.urandom(32)).decode())")'
    )


def load_or_create_dev_secret(
    data_dir: Path, relative: Path, create: Callable[[], bytes], what: str
) -> bytes | None:
    """Read ``<data_dir>/<relative>``, creating it with ``create()`` if absent.

    The file is written with mode 0600 (its folder 0700; ``data_dir`` is created only if
    it is a relative path) through a temporary file and a no-clobber hard link, so
    concurrent first starts agree on one secret and a reader never sees a half-written
    file. Returns None (after a warning that names the path,
    never the secret) when the folder cannot be created or written: the caller then
    uses an ephemeral secret.
    """
    path = data_dir / relative
    try:
        if path.exists():
            _tighten(path, 0o600)
            return path.read_bytes()
        # Only a relative data_dir (the default ``.data`` beside the checkout) is
        # created here; an absolute one must exist already, so a mistyped or
        # placeholder path (``/nonexistent``) gives an ephemeral key, even as root.
        if not data_dir.is_absolute():
            data_dir.mkdir(parents=True, exist_ok=True)
        elif not data_dir.is_dir():
            raise FileNotFoundError(errno.ENOENT, "data folder does not exist", str(data_dir))
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _tighten(path.parent, 0o700)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(create())
                handle.flush()
                os.fsync(handle.fileno())
            # No-clobber: if another process created it first, use theirs.
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path.read_bytes()
    except OSError as exc:
        log.warning(
            "cannot keep the development %s under %s (%s); using an ephemeral in-memory "
            "key that is lost on restart",
            what,
            path,
            exc.strerror or type(exc).__name__,
        )
        return None


def _tighten(path: Path, mode: int) -> None:
    try:
        if path.stat().st_mode & 0o777 != mode:
            os.chmod(path, mode)
    except OSError:
        pass  # not ours to change (e.g. read-only mount); reading may still work


def _previous_data_keys(settings: Settings) -> list[bytes]:
    text = settings.data_encryption_previous_keys.get_secret_value()
    keys: list[bytes] = []
    for number, item in enumerate(text.replace(",", " ").split(), start=1):
        try:
            keys.append(parse_data_key(item))
        except ValueError:
            raise ValueError(
                f"GENCHARGE_DATA_ENCRYPTION_PREVIOUS_KEYS: key {number} is not base64 of "
                f"exactly {KEY_BYTES} bytes"
            ) from None
    return keys


def load_secret_box(settings: Settings) -> SecretBox:
    """The data-encryption SecretBox from settings (see module docstring), accepting
    values sealed under ``data_encryption_previous_keys`` too."""
    previous = _previous_data_keys(settings)
    configured = settings.data_encryption_key.get_secret_value().strip()
    if configured:
        return SecretBox(parse_data_key(configured), previous_keys=previous)
    if settings.production:
        raise ValueError("GENCHARGE_DATA_ENCRYPTION_KEY is required in production")
    stored = load_or_create_dev_secret(
        settings.data_dir,
        DATA_KEY_FILE,
        lambda: (generate_data_key() + "\n").encode("ascii"),
        "data-encryption key",
    )
    if stored is None:
        return SecretBox(secrets.token_bytes(KEY_BYTES), previous_keys=previous)
    try:
        text = stored.decode("ascii")
        return SecretBox(parse_data_key(text), previous_keys=previous)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(
            f"{settings.data_dir / DATA_KEY_FILE} does not hold a base64 32-byte key; "
            "delete it to generate a new one (values sealed under it become unreadable)"
        ) from exc
