"""The manifest of a backup: what it holds, authenticated under the backup key.

Stored as ``<backup_id>/manifest.json`` (readable JSON, not encrypted: it holds names,
counts, hashes and sizes, no data)::

    {"format": "gencharge-backup-manifest", "version": 1, "key_id": "<16 hex>",
     "hmac_sha256": "<64 hex>", "manifest": {...}}

The MAC is HMAC-SHA256, under an HKDF subkey of the backup key named by ``key_id``, of
a label and the canonical JSON of ``manifest`` (sorted keys, no spaces, ASCII), so a
changed manifest (``BACKUP_MANIFEST_TAMPERED``) and one made under another
deployment's key (``BACKUP_KEY_UNKNOWN``) are detected; a manifest copied into another
backup's folder is ``BACKUP_MANIFEST_MISPLACED``. Other reasons:
``BACKUP_MANIFEST_MISSING``, ``BACKUP_MANIFEST_CORRUPT`` (not JSON, wrong shape, a file
outside the backup's folder), ``BACKUP_MANIFEST_VERSION_UNSUPPORTED``.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from server.backup.archive import SealedFile
from server.backup.errors import BackupError
from server.backup.keys import BackupKeys
from server.backup.storage import Storage, check_name

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "gencharge-backup-manifest"
MANIFEST_VERSION = 1
#: A manifest larger than this is refused before it is parsed.
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
KINDS = ("full", "incremental")
_MAC_LABEL = b"gencharge/backup/manifest/v1\n"


@dataclass(frozen=True)
class ManifestFile:
    """One sealed file of a backup. ``name`` is its storage name (under
    ``<backup_id>/``); ``database`` says whose data it holds (``postgres``, ``mongo``);
    ``format`` how to read it once opened (e.g. ``pg_dump-custom``, ``bson``);
    ``objects`` the tables or collections in it, with ``rows`` and ``hashes`` per
    object (decimal text, docs/backups.md)."""

    name: str
    database: str
    format: str
    size: int
    sha256: str
    plain_size: int
    key_id: str
    objects: tuple[str, ...] = ()
    rows: Mapping[str, int] = field(default_factory=dict)
    hashes: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        sealed: SealedFile,
        *,
        database: str,
        format: str,
        objects: Sequence[str] = (),
        rows: Mapping[str, int] | None = None,
        hashes: Mapping[str, str] | None = None,
    ) -> ManifestFile:
        return cls(
            name=sealed.name,
            database=database,
            format=format,
            size=sealed.size,
            sha256=sealed.sha256,
            plain_size=sealed.plain_size,
            key_id=sealed.key_id,
            objects=tuple(objects),
            rows=dict(rows or {}),
            hashes=dict(hashes or {}),
        )

    def sealed(self) -> SealedFile:
        """What :func:`server.backup.archive.check_file` checks against."""
        return SealedFile(self.name, self.size, self.sha256, self.plain_size, self.key_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "database": self.database,
            "format": self.format,
            "size": self.size,
            "sha256": self.sha256,
            "plain_size": self.plain_size,
            "key_id": self.key_id,
            "objects": list(self.objects),
            "rows": dict(self.rows),
            "hashes": dict(self.hashes),
        }

    @classmethod
    def from_json(cls, data: Any) -> ManifestFile:
        obj = _mapping(data, "a file")
        rows = _mapping(obj.get("rows", {}), "rows")
        hashes = _mapping(obj.get("hashes", {}), "hashes")
        objects = obj.get("objects", [])
        if not isinstance(objects, list) or not all(isinstance(o, str) for o in objects):
            raise _corrupt("objects must be a list of names")
        return cls(
            name=_str(obj, "name"),
            database=_str(obj, "database"),
            format=_str(obj, "format"),
            size=_int(obj, "size"),
            sha256=_str(obj, "sha256"),
            plain_size=_int(obj, "plain_size"),
            key_id=_str(obj, "key_id"),
            objects=tuple(objects),
            rows={str(k): _int(rows, k) for k in rows},
            hashes={str(k): _str(hashes, k) for k in hashes},
        )


@dataclass(frozen=True)
class Manifest:
    """What a backup holds. ``schema_revisions`` is ``{"postgres": <alembic head>,
    "mongo": <last MongoDB step id>}``; ``kind`` is ``full`` or ``incremental`` (with
    ``parent_backup_id``); ``extra`` is free JSON for the parts that need more (WAL
    positions, snapshot names, ...)."""

    backup_id: str
    created_at: datetime
    server_version: str
    schema_revisions: Mapping[str, str]
    kind: str
    files: tuple[ManifestFile, ...]
    parent_backup_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    format_version: int = MANIFEST_VERSION

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        if self.created_at.tzinfo is None:
            raise ValueError("created_at must be timezone-aware")
        object.__setattr__(self, "files", tuple(self.files))

    def file(self, name: str) -> ManifestFile:
        """The file named ``name`` (its storage name); KeyError if absent."""
        for item in self.files:
            if item.name == name:
                return item
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "backup_id": self.backup_id,
            "created_at": self.created_at.isoformat(),
            "server_version": self.server_version,
            "schema_revisions": dict(self.schema_revisions),
            "kind": self.kind,
            "parent_backup_id": self.parent_backup_id,
            "files": [f.to_json() for f in self.files],
            "extra": _plain(self.extra),
        }

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        obj = _mapping(data, "the manifest")
        if obj.get("format_version") != MANIFEST_VERSION:
            raise BackupError(
                "BACKUP_MANIFEST_VERSION_UNSUPPORTED",
                f"manifest format {obj.get('format_version')!r} is not readable by this "
                f"server (it reads {MANIFEST_VERSION})",
            )
        try:
            created_at = datetime.fromisoformat(_str(obj, "created_at"))
        except ValueError:
            raise _corrupt("created_at is not an ISO 8601 time") from None
        revisions = _mapping(obj.get("schema_revisions"), "schema_revisions")
        files = obj.get("files")
        if not isinstance(files, list):
            raise _corrupt("files must be a list")
        parent = obj.get("parent_backup_id")
        if parent is not None and not isinstance(parent, str):
            raise _corrupt("parent_backup_id must be text or null")
        try:
            return cls(
                backup_id=_str(obj, "backup_id"),
                created_at=created_at,
                server_version=_str(obj, "server_version"),
                schema_revisions={str(k): _str(revisions, k) for k in revisions},
                kind=_str(obj, "kind"),
                files=tuple(ManifestFile.from_json(f) for f in files),
                parent_backup_id=parent,
                extra=dict(_mapping(obj.get("extra", {}), "extra")),
            )
        except ValueError as exc:
            raise _corrupt(str(exc)) from None


def _corrupt(why: str) -> BackupError:
    return BackupError("BACKUP_MANIFEST_CORRUPT", f"the manifest is malformed: {why}")


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _corrupt(f"{what} must be an object")
    return value


def _str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise _corrupt(f"{key} must be text")
    return value


def _int(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _corrupt(f"{key} must be a whole number")
    return value


def _plain(value: Any) -> Any:
    """``value`` as plain JSON types (mappings to dicts, tuples to lists)."""
    if isinstance(value, Mapping | MappingProxyType):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("manifest extra values must be finite numbers")
    return value


def _canonical(data: Any) -> bytes:
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def manifest_name(backup_id: str) -> str:
    """The storage name of a backup's manifest."""
    return f"{_check_backup_id(backup_id)}/{MANIFEST_NAME}"


def _check_backup_id(backup_id: str) -> str:
    check_name(backup_id)
    if "/" in backup_id:
        raise BackupError("BACKUP_NAME_INVALID", f"backup id {backup_id!r} may not contain '/'")
    return backup_id


async def write_manifest(
    storage: Storage, backup_id: str, manifest: Manifest, keys: BackupKeys
) -> None:
    """Store ``manifest`` as ``<backup_id>/manifest.json``, authenticated under the
    current key (written last, so a backup without one is incomplete)."""
    name = manifest_name(backup_id)
    if manifest.backup_id != backup_id:
        raise ValueError("the manifest's backup_id differs from the folder it is written to")
    for item in manifest.files:
        if not item.name.startswith(f"{backup_id}/"):
            raise ValueError(f"file {item.name!r} is not in the backup's folder")
    body = manifest.to_json()
    key = keys.current
    document = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "key_id": key.key_id,
        "hmac_sha256": key.manifest_mac(_MAC_LABEL + _canonical(body)).hex(),
        "manifest": body,
    }
    text = (json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()

    async def one() -> AsyncIterator[bytes]:
        yield text

    await storage.put(name, one())


async def read_manifest(storage: Storage, backup_id: str, keys: BackupKeys) -> Manifest:
    """The authenticated manifest of ``backup_id`` (BackupError otherwise; see the module
    docstring for the reasons)."""
    name = manifest_name(backup_id)
    raw = bytearray()
    try:
        async with contextlib.aclosing(storage.get(name)) as stream:
            async for chunk in stream:
                raw += chunk
                if len(raw) > MAX_MANIFEST_BYTES:
                    raise _corrupt(f"larger than {MAX_MANIFEST_BYTES} bytes")
    except BackupError as exc:
        if exc.reason == "BACKUP_FILE_MISSING":
            raise BackupError(
                "BACKUP_MANIFEST_MISSING", f"backup {backup_id!r} has no manifest"
            ) from None
        raise
    try:
        document = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _corrupt("not JSON") from None
    document = _mapping(document, "the manifest file")
    if document.get("format") != MANIFEST_FORMAT:
        raise _corrupt("not a GenCharge backup manifest")
    if document.get("version") != MANIFEST_VERSION:
        raise BackupError(
            "BACKUP_MANIFEST_VERSION_UNSUPPORTED",
            f"manifest version {document.get('version')!r} is not readable by this server",
        )
    key_id = _str(document, "key_id")
    mac_hex = _str(document, "hmac_sha256")
    body = _mapping(document.get("manifest"), "manifest")
    try:
        key = keys.get(key_id)
    except BackupError:
        raise BackupError(
            "BACKUP_KEY_UNKNOWN",
            f"the manifest of backup {backup_id!r} is authenticated under backup key "
            f"{key_id!r}, which is neither the current key nor a retired one (another "
            "deployment's backup, or a key no longer configured)",
        ) from None
    try:
        expected = key.manifest_mac(_MAC_LABEL + _canonical(body))
    except ValueError:
        raise _corrupt("contains values that are not JSON") from None
    if not hmac.compare_digest(expected.hex(), mac_hex.lower()):
        raise BackupError(
            "BACKUP_MANIFEST_TAMPERED",
            f"the manifest of backup {backup_id!r} does not match its MAC: it was changed "
            "after it was written",
        )
    manifest = Manifest.from_json(body)
    if manifest.backup_id != backup_id:
        raise BackupError(
            "BACKUP_MANIFEST_MISPLACED",
            f"the manifest in folder {backup_id!r} describes backup {manifest.backup_id!r}",
        )
    for item in manifest.files:
        if not item.name.startswith(f"{backup_id}/"):
            raise _corrupt(f"file {item.name!r} is outside the backup's folder")
    return manifest
