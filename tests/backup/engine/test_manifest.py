"""Manifests: written and read back over both storages, authenticated (a change, another
deployment's key, a manifest moved to another backup), readable after key rotation."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from server.backup import manifest as module
from server.backup.archive import SealedFile, check_file, seal_file
from server.backup.errors import BackupError
from server.backup.keys import BackupKeys
from server.backup.manifest import (
    Manifest,
    ManifestFile,
    manifest_name,
    read_manifest,
    write_manifest,
)
from server.backup.storage import Storage
from tests.backup.engine.test_storage import chunks_of, read_all

BACKUP_ID = "20261202T020000Z-7f3a"


def sample(backup_id: str = BACKUP_ID, **changes: object) -> Manifest:
    files = (
        ManifestFile(
            name=f"{backup_id}/postgres.dump",
            database="postgres",
            format="pg_dump-custom",
            size=1234,
            sha256="ab" * 32,
            plain_size=5678,
            key_id="0123456789abcdef",
            objects=("users", "transactions"),
            rows={"users": 3, "transactions": 12},
            hashes={"users": "18446744073709551615", "transactions": "42"},
        ),
        ManifestFile(
            name=f"{backup_id}/mongo/AuditLog.bson",
            database="mongo",
            format="bson",
            size=10,
            sha256="cd" * 32,
            plain_size=8,
            key_id="0123456789abcdef",
            objects=("AuditLog",),
            rows={"AuditLog": 1},
            hashes={"AuditLog": "7"},
        ),
    )
    fields: dict[str, object] = {
        "backup_id": backup_id,
        "created_at": datetime(2026, 12, 2, 2, 0, 0, 123456, tzinfo=UTC),
        "server_version": "0.9.0",
        "schema_revisions": {"postgres": "0015_service_account_description", "mongo": "0008"},
        "kind": "full",
        "files": files,
        "extra": {"snapshot": "00000003-0000001B-1", "ratio": 0.5, "tables": ["a", "b"]},
    }
    fields.update(changes)
    return Manifest(**fields)  # type: ignore[arg-type]


async def reason(storage: Storage, keys: BackupKeys, backup_id: str = BACKUP_ID) -> str:
    with pytest.raises(BackupError) as caught:
        await read_manifest(storage, backup_id, keys)
    return caught.value.reason


async def stored_document(storage: Storage, backup_id: str = BACKUP_ID) -> dict[str, object]:
    document: dict[str, object] = json.loads(await read_all(storage, manifest_name(backup_id)))
    return document


async def store_document(storage: Storage, document: object, backup_id: str = BACKUP_ID) -> None:
    await storage.put(manifest_name(backup_id), chunks_of(json.dumps(document).encode()))


async def test_round_trip(storage: Storage, keys: BackupKeys) -> None:
    manifest = sample()
    await write_manifest(storage, BACKUP_ID, manifest, keys)
    assert await read_manifest(storage, BACKUP_ID, keys) == manifest
    incremental = sample(
        "20261202T030000Z-8a1b", kind="incremental", parent_backup_id=BACKUP_ID, extra={}
    )
    await write_manifest(storage, incremental.backup_id, incremental, keys)
    assert await read_manifest(storage, incremental.backup_id, keys) == incremental
    document = await stored_document(storage)
    assert document["key_id"] == keys.current.key_id
    assert document["format"] == "gencharge-backup-manifest" and document["version"] == 1


async def test_with_sealed_files(storage: Storage, keys: BackupKeys, tmp_path: Path) -> None:
    """How the next stage uses it: seal, describe, write; read, check every file."""
    source = tmp_path / "dump"
    source.write_bytes(os.urandom(5000))
    sealed = await seal_file(source, storage, f"{BACKUP_ID}/postgres.dump", keys)
    file = ManifestFile.of(
        sealed, database="postgres", format="pg_dump-custom", objects=["t"], rows={"t": 1}
    )
    await write_manifest(storage, BACKUP_ID, sample(files=(file,)), keys)
    manifest = await read_manifest(storage, BACKUP_ID, keys)
    assert manifest.file(f"{BACKUP_ID}/postgres.dump").sealed() == sealed
    assert [await check_file(storage, f.sealed(), keys) for f in manifest.files] == [[]]


async def test_a_changed_manifest_is_tampered(storage: Storage, keys: BackupKeys) -> None:
    await write_manifest(storage, BACKUP_ID, sample(), keys)
    original = await stored_document(storage)
    changes = [
        lambda m: m["files"][0]["rows"].update(users=4),
        lambda m: m["files"][0].update(sha256="ef" * 32),
        lambda m: m["schema_revisions"].update(postgres="0016_other"),
        lambda m: m["files"].pop(),
        lambda m: m["extra"].update(snapshot="x"),
        lambda m: m.update(kind="incremental"),
    ]
    for change in changes:
        document = json.loads(json.dumps(original))
        change(document["manifest"])
        await store_document(storage, document)
        assert await reason(storage, keys) == "BACKUP_MANIFEST_TAMPERED"
    # Rewritten as it was (whitespace and key order do not matter): it reads again.
    await store_document(storage, original)
    assert await read_manifest(storage, BACKUP_ID, keys) == sample()


async def test_a_mac_under_another_key(storage: Storage, keys: BackupKeys) -> None:
    """Another deployment's manifest (its own key) is refused, also when it claims our
    key id."""
    theirs = BackupKeys.from_bytes(os.urandom(32))
    await write_manifest(storage, BACKUP_ID, sample(), theirs)
    assert await reason(storage, keys) == "BACKUP_KEY_UNKNOWN"
    document = await stored_document(storage)
    document["key_id"] = keys.current.key_id
    await store_document(storage, document)
    assert await reason(storage, keys) == "BACKUP_MANIFEST_TAMPERED"


async def test_readable_after_rotation(storage: Storage) -> None:
    old, new = os.urandom(32), os.urandom(32)
    await write_manifest(storage, BACKUP_ID, sample(), BackupKeys.from_bytes(old))
    rotated = BackupKeys.from_bytes(new, (old,))
    assert await read_manifest(storage, BACKUP_ID, rotated) == sample()
    assert await reason(storage, BackupKeys.from_bytes(new)) == "BACKUP_KEY_UNKNOWN"


async def test_a_manifest_moved_to_another_backup(storage: Storage, keys: BackupKeys) -> None:
    await write_manifest(storage, BACKUP_ID, sample(), keys)
    other = "20261203T020000Z-0000"
    await storage.put(
        manifest_name(other), chunks_of(await read_all(storage, manifest_name(BACKUP_ID)))
    )
    assert await reason(storage, keys, other) == "BACKUP_MANIFEST_MISPLACED"


async def test_missing_and_malformed(storage: Storage, keys: BackupKeys) -> None:
    assert await reason(storage, keys) == "BACKUP_MANIFEST_MISSING"
    name = manifest_name(BACKUP_ID)
    for junk in (b"", b"\xff\xfe", b"not json", b"[1, 2]", b'{"format": "other"}'):
        await storage.put(name, chunks_of(junk))
        assert await reason(storage, keys) == "BACKUP_MANIFEST_CORRUPT", junk
    await write_manifest(storage, BACKUP_ID, sample(), keys)
    document = await stored_document(storage)
    document["version"] = 2
    await store_document(storage, document)
    assert await reason(storage, keys) == "BACKUP_MANIFEST_VERSION_UNSUPPORTED"


async def test_a_well_authenticated_but_malformed_body(storage: Storage, keys: BackupKeys) -> None:
    """Shape errors behind a valid MAC (a bug of a writer, never a tamper) are corrupt."""
    good = sample().to_json()
    bodies = [
        {**good, "files": "none"},
        {**good, "created_at": "yesterday"},
        {**good, "kind": "weekly"},
        {**good, "files": [{**good["files"][0], "size": -1}]},
        {**good, "files": [{**good["files"][0], "name": "elsewhere/postgres.dump"}]},
    ]
    for body in bodies:
        mac = keys.current.manifest_mac(module._MAC_LABEL + module._canonical(body)).hex()
        document = {
            "format": module.MANIFEST_FORMAT,
            "version": 1,
            "key_id": keys.current.key_id,
            "hmac_sha256": mac,
            "manifest": body,
        }
        await store_document(storage, document)
        assert await reason(storage, keys) == "BACKUP_MANIFEST_CORRUPT", body
    body = {**good, "format_version": 9}
    mac = keys.current.manifest_mac(module._MAC_LABEL + module._canonical(body)).hex()
    await store_document(
        storage,
        {
            "format": module.MANIFEST_FORMAT,
            "version": 1,
            "key_id": keys.current.key_id,
            "hmac_sha256": mac,
            "manifest": body,
        },
    )
    assert await reason(storage, keys) == "BACKUP_MANIFEST_VERSION_UNSUPPORTED"


async def test_write_refuses_what_could_not_be_read(
    local_storage: Storage, keys: BackupKeys
) -> None:
    with pytest.raises(ValueError, match="differs"):
        await write_manifest(local_storage, "another", sample(), keys)
    outside = SealedFile("elsewhere/x", 1, "00" * 32, 1, "0" * 16)
    stray = sample(files=(ManifestFile.of(outside, database="postgres", format="x"),))
    with pytest.raises(ValueError, match="not in the backup's folder"):
        await write_manifest(local_storage, BACKUP_ID, stray, keys)
    with pytest.raises(BackupError) as caught:
        await write_manifest(local_storage, "a/b", sample("a/b"), keys)
    assert caught.value.reason == "BACKUP_NAME_INVALID"
    with pytest.raises(ValueError, match="finite"):
        await write_manifest(local_storage, BACKUP_ID, sample(extra={"x": float("nan")}), keys)
    with pytest.raises(ValueError, match="kind"):
        sample(kind="weekly")
    with pytest.raises(ValueError, match="timezone"):
        sample(created_at=datetime(2026, 1, 1))
    assert await local_storage.list("") == []
