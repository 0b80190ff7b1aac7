"""The storage contract, run against a local folder and against S3 (moto's server, a
stand-in for real S3), plus what is particular to each and the settings that pick one."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import boto3
import pytest

from server.backup.archive import SealedFile, check_file
from server.backup.errors import BackupError
from server.backup.keys import BackupKeys
from server.backup.storage import (
    LocalStorage,
    S3Storage,
    Storage,
    storage_from_settings,
)
from server.core.config import ConfigurationError, Settings
from tests.backup.engine.conftest import create_bucket, s3_settings

MIB = 1024 * 1024


async def chunks_of(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def read_all(storage: Storage, name: str) -> bytes:
    out = bytearray()
    async with contextlib.aclosing(storage.get(name)) as stream:
        async for chunk in stream:
            out += chunk
    return bytes(out)


async def test_put_get_size_list(storage: Storage) -> None:
    assert await storage.put("b1/a.bin", chunks_of(b"hello ", b"world")) == 11
    assert await storage.put("b1/sub/c.bin", chunks_of(b"")) == 0
    assert await storage.put("b10/x.bin", chunks_of(b"x")) == 1
    assert await read_all(storage, "b1/a.bin") == b"hello world"
    assert await read_all(storage, "b1/sub/c.bin") == b""
    assert await storage.size("b1/a.bin") == 11
    assert await storage.size("b1/sub/c.bin") == 0
    assert await storage.size("b1/nothing") is None
    assert await storage.size("b1") is None  # a folder is not a file
    assert await storage.list("") == ["b1/a.bin", "b1/sub/c.bin", "b10/x.bin"]
    # Prefixes are folders: "b1" is not a prefix of "b10/...".
    assert await storage.list("b1") == ["b1/a.bin", "b1/sub/c.bin"]
    assert await storage.list("b1/") == ["b1/a.bin", "b1/sub/c.bin"]
    assert await storage.list("b2") == []


async def test_put_replaces_and_streams_large_files(storage: Storage) -> None:
    await storage.put("b/big", chunks_of(b"old"))
    # Larger than an S3 part (8 MiB): a multipart upload, in uneven pieces.
    blocks = [os.urandom(3 * MIB + 17) for _ in range(4)]
    assert await storage.put("b/big", chunks_of(*blocks)) == sum(map(len, blocks))
    data = await read_all(storage, "b/big")
    assert hashlib.sha256(data).digest() == hashlib.sha256(b"".join(blocks)).digest()
    assert await storage.size("b/big") == len(data)


async def test_get_missing_file(storage: Storage) -> None:
    with pytest.raises(BackupError) as caught:
        await read_all(storage, "nowhere/file")
    assert caught.value.reason == "BACKUP_FILE_MISSING"


async def test_a_failed_put_leaves_nothing_under_the_name(storage: Storage) -> None:
    await storage.put("b/kept", chunks_of(b"first version"))

    async def failing() -> AsyncIterator[bytes]:
        yield os.urandom(MIB)
        yield os.urandom(9 * MIB)
        raise RuntimeError("source died")

    for name in ("b/kept", "b/new"):
        with pytest.raises(RuntimeError, match="source died"):
            await storage.put(name, failing())
    assert await read_all(storage, "b/kept") == b"first version"
    assert await storage.size("b/new") is None
    assert await storage.list("b") == ["b/kept"]


async def test_delete_prefix(storage: Storage) -> None:
    for name in ("b1/a", "b1/deep/b", "b10/c", "b2/d"):
        await storage.put(name, chunks_of(b"x"))
    assert await storage.delete_prefix("b1") == 2
    assert await storage.list("") == ["b10/c", "b2/d"]
    assert await storage.delete_prefix("b1") == 0
    assert await storage.delete_prefix("b2/d") == 0  # a prefix is a folder, not a file
    assert await storage.list("b2/d") == []
    with pytest.raises(BackupError) as caught:
        await storage.delete_prefix("")
    assert caught.value.reason == "BACKUP_NAME_INVALID"
    assert await storage.list("") == ["b10/c", "b2/d"]


@pytest.mark.parametrize(
    "name",
    [
        "",
        "../outside",
        "b/../../outside",
        "b/./x",
        "/etc/passwd",
        "b//x",
        "b/",
        ".hidden",
        "b/.tmp",
        "b\\x",
        "C:/x",
        "b/x\x00y",
        "b/x\ny",
        "x" * 1025,
    ],
    ids=repr,
)
async def test_names_escaping_or_malformed_are_refused(storage: Storage, name: str) -> None:
    attempts = [
        storage.put(name, chunks_of(b"x")),
        read_all(storage, name),
        storage.size(name),
    ]
    for attempt in attempts:
        with pytest.raises(BackupError) as caught:
            await attempt
        assert caught.value.reason == "BACKUP_NAME_INVALID"
    assert await storage.list("") == []


async def test_uri_for(storage: Storage, tmp_path: Path) -> None:
    if isinstance(storage, LocalStorage):
        root = (tmp_path / "backups").as_uri()
        assert storage.uri_for("") == root
        assert storage.uri_for("b1") == f"{root}/b1"
    else:
        assert isinstance(storage, S3Storage)
        assert storage.uri_for("b1") == f"s3://{storage.bucket}/gencharge/backups/b1"
        assert storage.uri_for("") == f"s3://{storage.bucket}/gencharge/backups"


# --- local folder ----------------------------------------------------------------------


async def test_local_writes_are_atomic_and_leave_no_temporary_files(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "backups")
    seen: list[list[str]] = []

    async def watched() -> AsyncIterator[bytes]:
        yield b"part one, "
        # Mid-write: the final name does not exist yet, only a hidden temporary file.
        seen.append(sorted(p.name for p in (tmp_path / "backups" / "b").iterdir()))
        assert not (tmp_path / "backups" / "b" / "f").exists()
        yield b"part two"

    await storage.put("b/f", watched())
    assert len(seen[0]) == 1 and seen[0][0].startswith(".f.") and seen[0][0].endswith(".tmp")
    assert sorted(p.name for p in (tmp_path / "backups" / "b").iterdir()) == ["f"]
    assert (tmp_path / "backups" / "b" / "f").read_bytes() == b"part one, part two"
    assert (tmp_path / "backups" / "b" / "f").stat().st_mode & 0o777 == 0o600


async def test_local_refuses_a_symlink_out_of_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "backups"
    root.mkdir()
    (root / "b").symlink_to(outside, target_is_directory=True)
    storage = LocalStorage(root)
    with pytest.raises(BackupError) as caught:
        await storage.put("b/f", chunks_of(b"x"))
    assert caught.value.reason == "BACKUP_NAME_INVALID"
    assert list(outside.iterdir()) == []


async def test_local_unwritable_root_is_storage_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"not a folder")
    storage = LocalStorage(blocker / "backups")
    with pytest.raises(BackupError) as caught:
        await storage.put("b/f", chunks_of(b"x"))
    assert caught.value.reason == "BACKUP_STORAGE_UNAVAILABLE"


# --- settings ----------------------------------------------------------------------------


def test_storage_from_settings_local(tmp_path: Path) -> None:
    default = storage_from_settings(Settings(data_dir=tmp_path))
    assert isinstance(default, LocalStorage) and default.root == tmp_path / "backups"
    other = storage_from_settings(Settings(backup_storage_url=f"file://{tmp_path}/elsewhere"))
    assert isinstance(other, LocalStorage) and other.root == tmp_path / "elsewhere"


@pytest.mark.parametrize(
    ("url", "endpoint", "message"),
    [
        ("file://relative/path", "", "absolute path"),
        ("file:relative", "", "absolute path"),
        ("ftp://host/x", "", "GENCHARGE_BACKUP_STORAGE_URL must be"),
        ("/srv/backups", "", "GENCHARGE_BACKUP_STORAGE_URL must be"),
        ("s3:///prefix", "", "needs a bucket"),
        ("s3://bucket/../x", "", "GENCHARGE_BACKUP_STORAGE_URL"),
        ("s3://bucket/x?versionId=1", "", "no query"),
        ("s3://bucket/x", "http://s3.example.com", "loopback"),
        ("s3://bucket/x", "ftp://127.0.0.1", "http(s)://"),
    ],
)
def test_storage_from_settings_refuses_what_cannot_work(
    url: str, endpoint: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        storage_from_settings(Settings(backup_storage_url=url, backup_s3_endpoint=endpoint))


def test_s3_credentials_go_together() -> None:
    settings = Settings(
        backup_storage_url="s3://bucket/x",
        backup_s3_endpoint="https://s3.example.com",
        backup_s3_access_key_id="AKIA-ONLY",
    )
    with pytest.raises(ConfigurationError, match="go together"):
        storage_from_settings(settings)


async def test_s3_wrong_credentials_are_storage_unavailable(moto_url: str) -> None:
    bucket = create_bucket(moto_url)
    # moto accepts any credentials; a bucket that does not exist fails the same way a
    # refused request does: as an unavailable storage, never as a missing file.
    storage = storage_from_settings(s3_settings(moto_url, f"s3://{bucket}-absent/x"))
    with pytest.raises(BackupError) as caught:
        await storage.put("b/f", chunks_of(b"x"))
    assert caught.value.reason == "BACKUP_STORAGE_UNAVAILABLE"
    assert "gencharge-test-secret" not in str(caught.value)


async def test_s3_objects_live_under_the_configured_prefix(moto_url: str) -> None:
    bucket = create_bucket(moto_url)
    outer = storage_from_settings(s3_settings(moto_url, f"s3://{bucket}"))
    inner = storage_from_settings(s3_settings(moto_url, f"s3://{bucket}/team/backups"))
    await inner.put("b1/f", chunks_of(b"x"))
    assert await outer.list("") == ["team/backups/b1/f"]
    assert await inner.list("") == ["b1/f"]


async def test_s3_uploads_in_parts_and_aborts_a_failed_upload(moto_url: str) -> None:
    """A large file goes up as a multipart upload (S3's ETag of a multipart object ends
    in the number of parts); a failed one is aborted, not left hidden in the bucket."""
    bucket = create_bucket(moto_url)
    storage = storage_from_settings(s3_settings(moto_url, f"s3://{bucket}/p"))
    await storage.put("b/big", chunks_of(*(os.urandom(5 * MIB) for _ in range(4))))

    async def failing() -> AsyncIterator[bytes]:
        yield os.urandom(9 * MIB)
        yield os.urandom(9 * MIB)
        raise RuntimeError("source died")

    with pytest.raises(RuntimeError):
        await storage.put("b/failed", failing())
    client = boto3.client(
        "s3",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="gencharge-test",
        aws_secret_access_key="gencharge-test-secret",
    )
    etag = client.head_object(Bucket=bucket, Key="p/b/big")["ETag"].strip('"')
    assert etag.endswith("-3")  # 20 MiB in 8 MiB parts
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads") in (None, [])


async def test_local_root_that_is_not_a_folder(tmp_path: Path) -> None:
    """A misconfigured folder is an unavailable storage, not an empty one or a missing
    file, and check_file raises it rather than blaming the file."""
    blocker = tmp_path / "file"
    blocker.write_bytes(b"not a folder")
    for root in (blocker, blocker / "backups"):
        storage = LocalStorage(root)
        for attempt in (storage.size("b/f"), storage.list(""), read_all(storage, "b/f")):
            with pytest.raises(BackupError) as caught:
                await attempt
            assert caught.value.reason == "BACKUP_STORAGE_UNAVAILABLE"
        sealed = SealedFile("b/f", 1, "00" * 32, 1, "0" * 16)
        with pytest.raises(BackupError) as caught:
            await check_file(storage, sealed, BackupKeys.from_bytes(os.urandom(32)))
        assert caught.value.reason == "BACKUP_STORAGE_UNAVAILABLE"


async def test_local_leftover_temporary_files(tmp_path: Path) -> None:
    """A write killed midway leaves its hidden temporary file: never listed, never a
    file, and removed with its backup's folder."""
    storage = LocalStorage(tmp_path / "backups")
    await storage.put("b1/f", chunks_of(b"x"))
    leftover = tmp_path / "backups" / "b1" / ".g.0123456789abcdef.tmp"
    leftover.write_bytes(b"half")
    assert await storage.list("") == ["b1/f"]
    assert await storage.delete_prefix("b1") == 1
    assert not leftover.exists()
