"""The backup encryption key, its retired predecessors, and the subkeys derived from them.

One 32-byte master key (``GENCHARGE_BACKUP_ENCRYPTION_KEY``, base64) is never used
directly: each backup file gets its own AES-256-GCM key, derived with HKDF-SHA256 from
the master key and a random salt stored in the file's header
(:mod:`server.backup.archive`), and manifests are authenticated with an HMAC-SHA256
under another HKDF subkey (:mod:`server.backup.manifest`).

Files and manifests name the key they were made under by its ``key_id``: a 16-hex-digit
fingerprint derived from the key with HKDF (it reveals nothing about the key). Retired
keys (``GENCHARGE_BACKUP_ENCRYPTION_PREVIOUS_KEYS``) still open what was sealed under
them; new files are always sealed under the current key.

Development default: a key generated once under ``<data_dir>/keys/backup.key``. Unlike
the data key there is no ephemeral fallback: a backup sealed under a key lost at restart
could never be restored, so a folder that cannot keep the key is an error. Production
refuses to start without the setting (:func:`require_backup_key`). See docs/keys.md.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from server.backup.errors import BackupError
from server.core.config import Settings
from server.core.crypto import (
    KEY_BYTES,
    generate_data_key,
    load_or_create_dev_secret,
    parse_data_key,
)

#: Development default location, relative to ``Settings.data_dir``.
BACKUP_KEY_FILE = Path("keys") / "backup.key"
KEY_SETTING = "GENCHARGE_BACKUP_ENCRYPTION_KEY"
PREVIOUS_SETTING = "GENCHARGE_BACKUP_ENCRYPTION_PREVIOUS_KEYS"

_KEY_ID_LABEL = b"gencharge/backup/key-id/v1"
_FILE_LABEL = b"gencharge/backup/file/aes-256-gcm/v1"
_MANIFEST_LABEL = b"gencharge/backup/manifest/hmac-sha256/v1"
#: Bytes of the key fingerprint (hex: twice as many characters).
KEY_ID_BYTES = 8


def _hkdf(master: bytes, info: bytes, salt: bytes | None = None) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=info).derive(master)


@dataclass(frozen=True, repr=False)
class BackupKey:
    """One 32-byte backup master key and its fingerprint."""

    key_id: str
    _material: bytes = field(repr=False)

    @classmethod
    def from_bytes(cls, material: bytes) -> BackupKey:
        if not isinstance(material, bytes) or len(material) != KEY_BYTES:
            raise ValueError(f"a backup key must be exactly {KEY_BYTES} bytes")
        key_id = _hkdf(material, _KEY_ID_LABEL)[:KEY_ID_BYTES].hex()
        return cls(key_id, material)

    def __repr__(self) -> str:  # never show key material
        return f"BackupKey(key_id={self.key_id!r})"

    def file_key(self, salt: bytes) -> bytes:
        """The AES-256-GCM key of one file, from its header's random salt."""
        return _hkdf(self._material, _FILE_LABEL, salt=salt)

    def manifest_mac(self, message: bytes) -> bytes:
        """HMAC-SHA256 of ``message`` under this key's manifest subkey."""
        return hmac.new(_hkdf(self._material, _MANIFEST_LABEL), message, hashlib.sha256).digest()


@dataclass(frozen=True, repr=False)
class BackupKeys:
    """The current backup key (seals) and the retired ones (still open)."""

    current: BackupKey
    previous: tuple[BackupKey, ...] = ()
    _by_id: Mapping[str, BackupKey] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_id = {key.key_id: key for key in reversed((self.current, *self.previous))}
        object.__setattr__(self, "_by_id", MappingProxyType(by_id))

    def __repr__(self) -> str:
        return f"BackupKeys(current={self.current.key_id!r}, previous={self.key_ids[1:]!r})"

    @classmethod
    def from_bytes(cls, current: bytes, previous: tuple[bytes, ...] = ()) -> BackupKeys:
        return cls(BackupKey.from_bytes(current), tuple(BackupKey.from_bytes(k) for k in previous))

    @classmethod
    def from_settings(cls, settings: Settings) -> BackupKeys:
        """From ``backup_encryption_key`` / ``backup_encryption_previous_keys``; in
        development without the setting, the key file under ``<data_dir>/keys`` (created
        once). ``ValueError`` (naming the setting, never a value) when a key is malformed,
        missing in production, or the development key cannot be kept."""
        previous = _parse_previous(settings.backup_encryption_previous_keys.get_secret_value())
        configured = settings.backup_encryption_key.get_secret_value().strip()
        if configured:
            return cls.from_bytes(_parse_key(configured, KEY_SETTING), previous)
        if settings.production:
            raise ValueError(f"{KEY_SETTING} is required in production")
        stored = load_or_create_dev_secret(
            settings.data_dir,
            BACKUP_KEY_FILE,
            lambda: (generate_data_key() + "\n").encode("ascii"),
            "backup-encryption key",
        )
        path = settings.data_dir / BACKUP_KEY_FILE
        if stored is None:
            raise ValueError(
                f"cannot keep the development backup key at {path}: set {KEY_SETTING} or "
                "make the data folder writable (backups under a key lost at restart could "
                "never be restored)"
            )
        try:
            return cls.from_bytes(_parse_key(stored.decode("ascii"), KEY_SETTING), previous)
        except (UnicodeDecodeError, ValueError):
            raise ValueError(
                f"{path} does not hold a base64 32-byte key; backups sealed under it cannot "
                "be opened without it (restore the file, or set "
                f"{KEY_SETTING})"
            ) from None

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The current key's id first, then the retired ones'."""
        return (self.current.key_id, *(k.key_id for k in self.previous))

    def get(self, key_id: str) -> BackupKey:
        """The key with ``key_id``; BackupError ``BACKUP_KEY_UNKNOWN`` if it is neither the
        current key nor a retired one still configured."""
        key = self._by_id.get(key_id)
        if key is None:
            raise BackupError(
                "BACKUP_KEY_UNKNOWN",
                f"sealed under backup key {key_id!r}, which is neither the current key nor "
                f"one of {PREVIOUS_SETTING}",
            )
        return key


def _parse_key(text: str, setting: str) -> bytes:
    try:
        return parse_data_key(text)
    except ValueError:
        raise ValueError(
            f"{setting} must be the base64 encoding of exactly {KEY_BYTES} random bytes "
            '(generate one with: python -c "import base64,os; '
            'print(base64.b64encode(os.urandom(32)).decode())")'
        ) from None


def _parse_previous(text: str) -> tuple[bytes, ...]:
    keys: list[bytes] = []
    for number, item in enumerate(text.replace(",", " ").split(), start=1):
        try:
            keys.append(parse_data_key(item))
        except ValueError:
            raise ValueError(
                f"{PREVIOUS_SETTING}: key {number} is not base64 of exactly {KEY_BYTES} bytes"
            ) from None
    return tuple(keys)


def require_backup_key(settings: Settings) -> None:
    """Start-up check: in production the backup key must be configured and well formed
    (``ValueError`` otherwise); in development the key file is made at the first backup."""
    if settings.production:
        BackupKeys.from_settings(settings)
    else:
        _parse_previous(settings.backup_encryption_previous_keys.get_secret_value())
        configured = settings.backup_encryption_key.get_secret_value().strip()
        if configured:
            _parse_key(configured, KEY_SETTING)
