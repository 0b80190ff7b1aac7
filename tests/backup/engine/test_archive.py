"""Sealed files: round trips over both storages, and every kind of damage detected with
its own reason (flipped bytes in header, body and tag, truncation, chunks moved,
repeated or dropped, a renamed file, a wrong key), key rotation, bounded memory."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import struct
import tracemalloc
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from server.backup.archive import (
    CHUNK_SIZE,
    TAG_BYTES,
    SealedFile,
    check_file,
    open_file,
    seal_chunks,
    seal_file,
)
from server.backup.errors import BackupError
from server.backup.keys import BackupKeys
from server.backup.storage import LocalStorage, Storage
from tests.backup.engine.test_storage import chunks_of, read_all

NAME = "20261202T000000Z-abc/postgres.dump"
#: Small chunks so that a few KiB make several of them.
CHUNK = 4096
#: magic, version, compression, chunk size, key id, salt, nonce prefix, name length
FIXED = 8 + 1 + 1 + 4 + 8 + 16 + 7 + 2
HEADER = FIXED + len(NAME.encode()) + 8
WHOLE = CHUNK + TAG_BYTES


def _seed() -> int:
    seed = int(os.environ.get("GENCHARGE_TEST_SEED", random.randrange(2**32)))
    print(f"seed: {seed} (replay with GENCHARGE_TEST_SEED={seed})")
    return seed


def incompressible(size: int, rng: random.Random | None = None) -> bytes:
    return (rng or random.Random(size)).randbytes(size)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """About 5 chunks of compressed data (random bytes do not compress)."""
    path = tmp_path / "source.bin"
    path.write_bytes(incompressible(5 * CHUNK + 123))
    return path


async def sealed(source: Path, storage: Storage, keys: BackupKeys) -> tuple[SealedFile, bytes]:
    info = await seal_file(source, storage, NAME, keys, chunk_size=CHUNK)
    return info, await read_all(storage, NAME)


async def reason_of(storage: Storage, keys: BackupKeys, dest: Path, name: str = NAME) -> str:
    with pytest.raises(BackupError) as caught:
        await open_file(storage, name, keys, dest)
    assert not await asyncio.to_thread(dest.exists), "a failed open leaves no output file"
    return caught.value.reason


async def test_round_trip(storage: Storage, keys: BackupKeys, tmp_path: Path) -> None:
    rng = random.Random(7)
    cases = {
        "empty": b"",
        "tiny": b"x",
        "compressible": b"row,1,active\n" * 300_000,
        "several-chunks": incompressible(3 * CHUNK_SIZE + 5, rng),
        "exact-chunk": incompressible(CHUNK_SIZE, rng),
    }
    for label, data in cases.items():
        source = tmp_path / f"{label}.src"
        source.write_bytes(data)
        name = f"b1/{label}"
        info = await seal_file(source, storage, name, keys)
        stored = await read_all(storage, name)
        assert info == SealedFile(
            name, len(stored), hashlib.sha256(stored).hexdigest(), len(data), keys.current.key_id
        )
        if len(data) >= 64:
            assert data[:64] not in stored, "stored bytes are encrypted"
        dest = tmp_path / f"{label}.out"
        assert await open_file(storage, name, keys, dest) == len(data)
        assert dest.read_bytes() == data
        assert await check_file(storage, info, keys) == []
    # Compressed before encryption: 3.9 MB of repetitive rows store in a few KB.
    assert (await storage.size("b1/compressible") or 0) < 50_000


async def test_sealing_a_stream(storage: Storage, keys: BackupKeys, tmp_path: Path) -> None:
    """seal_chunks takes bytes as they come (a dump tool's stdout), in pieces of any
    size, and gives the same result as sealing the file."""
    rng = random.Random(11)
    pieces = [b"", rng.randbytes(10), rng.randbytes(3 * CHUNK_SIZE + 1), b"tail" * 1000, b""]
    info = await seal_chunks(chunks_of(*pieces), storage, "b/stream", keys)
    data = b"".join(pieces)
    assert info.plain_size == len(data)
    assert await open_file(storage, "b/stream", keys, tmp_path / "o") == len(data)
    assert (tmp_path / "o").read_bytes() == data
    assert await check_file(storage, info, keys) == []
    empty = await seal_chunks(chunks_of(), storage, "b/empty", keys)
    assert await open_file(storage, "b/empty", keys, tmp_path / "e") == 0 == empty.plain_size


async def test_a_failing_stream_stores_nothing(storage: Storage, keys: BackupKeys) -> None:
    async def dies() -> AsyncIterator[bytes]:
        yield os.urandom(2 * CHUNK_SIZE)
        raise RuntimeError("pg_dump exited with 1")

    with pytest.raises(RuntimeError, match="pg_dump exited"):
        await seal_chunks(dies(), storage, "b/failed", keys)
    assert await storage.list("") == []


async def test_chunk_boundaries(
    local_storage: LocalStorage, keys: BackupKeys, tmp_path: Path
) -> None:
    """Sizes around a chunk multiple round-trip (the last chunk may be full)."""
    for size in (0, 1, CHUNK - 40, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 41):
        source = tmp_path / "s"
        source.write_bytes(incompressible(size))
        # zstd adds a frame header, so vary around the boundary in compressed size too.
        for chunk in (CHUNK - 64, CHUNK, CHUNK + 64):
            await seal_file(source, local_storage, "b/f", keys, chunk_size=chunk)
            assert await open_file(local_storage, "b/f", keys, tmp_path / "o") == size
            assert (tmp_path / "o").read_bytes() == source.read_bytes()


async def test_a_previous_key_still_opens_after_rotation(
    storage: Storage, source: Path, tmp_path: Path
) -> None:
    old, new = os.urandom(32), os.urandom(32)
    before = BackupKeys.from_bytes(old)
    info, _ = await sealed(source, storage, before)
    rotated = BackupKeys.from_bytes(new, (old,))
    size = (await asyncio.to_thread(source.stat)).st_size
    assert await open_file(storage, NAME, rotated, tmp_path / "o") == size
    assert await check_file(storage, info, rotated) == []
    # New files use the new key.
    again = await seal_file(source, storage, "b/again", rotated)
    assert again.key_id == rotated.current.key_id != info.key_id
    # Without the old key configured the file is sealed under an unknown key.
    assert await reason_of(storage, BackupKeys.from_bytes(new), tmp_path / "o") == (
        "BACKUP_KEY_UNKNOWN"
    )


async def test_wrong_key(storage: Storage, keys: BackupKeys, source: Path, tmp_path: Path) -> None:
    await sealed(source, storage, keys)
    other = BackupKeys.from_bytes(os.urandom(32))
    assert await reason_of(storage, other, tmp_path / "o") == "BACKUP_KEY_UNKNOWN"


async def test_missing_file(storage: Storage, keys: BackupKeys, tmp_path: Path) -> None:
    assert await reason_of(storage, keys, tmp_path / "o") == "BACKUP_FILE_MISSING"
    ghost = SealedFile(NAME, 10, "0" * 64, 10, keys.current.key_id)
    problems = await check_file(storage, ghost, keys)
    assert len(problems) == 1 and problems[0].startswith("BACKUP_FILE_MISSING:")


def flip(offset: int) -> Callable[[bytes], bytes]:
    def change(data: bytes) -> bytes:
        at = offset if offset >= 0 else len(data) + offset
        return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]

    return change


def chunk_at(index: int) -> slice:
    return slice(HEADER + index * WHOLE, HEADER + (index + 1) * WHOLE)


def swap(data: bytes) -> bytes:
    return data[:HEADER] + data[chunk_at(1)] + data[chunk_at(0)] + data[chunk_at(1).stop :]


def repeat(data: bytes) -> bytes:
    return data[: chunk_at(1).stop] + data[chunk_at(1)] + data[chunk_at(1).stop :]


def drop(data: bytes) -> bytes:
    return data[: chunk_at(1).start] + data[chunk_at(1).stop :]


def append_copy_of_last(data: bytes) -> bytes:
    return data + data[chunk_at(4).stop :]


def forge_chunk_size(data: bytes) -> bytes:
    body = data[:10] + struct.pack(">I", 2 * CHUNK) + data[14 : HEADER - 8]
    return body + hashlib.sha256(body).digest()[:8] + data[HEADER:]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (flip(0), "BACKUP_FILE_CORRUPT"),  # magic
        (flip(8), "BACKUP_FILE_CORRUPT"),  # version (header checksum)
        (flip(12), "BACKUP_FILE_CORRUPT"),  # chunk size
        (flip(16), "BACKUP_FILE_CORRUPT"),  # key id
        (flip(30), "BACKUP_FILE_CORRUPT"),  # salt
        (flip(40), "BACKUP_FILE_CORRUPT"),  # nonce prefix
        (flip(FIXED + 3), "BACKUP_FILE_CORRUPT"),  # name
        (flip(HEADER - 1), "BACKUP_FILE_CORRUPT"),  # header checksum
        (flip(HEADER), "BACKUP_FILE_CORRUPT"),  # first chunk's first byte
        (flip(HEADER + WHOLE + CHUNK // 2), "BACKUP_FILE_CORRUPT"),  # a middle chunk
        (flip(HEADER + WHOLE - 1), "BACKUP_FILE_CORRUPT"),  # first chunk's tag
        (flip(-1), "BACKUP_FILE_CORRUPT"),  # last chunk's tag
        (flip(-TAG_BYTES - 1), "BACKUP_FILE_CORRUPT"),  # trailer in the last chunk
        (lambda d: d[: chunk_at(2).stop], "BACKUP_FILE_TRUNCATED"),  # cut at a chunk boundary
        (lambda d: d[: chunk_at(0).stop], "BACKUP_FILE_TRUNCATED"),
        (lambda d: d[:HEADER], "BACKUP_FILE_TRUNCATED"),  # only the header
        (lambda d: d[: HEADER - 5], "BACKUP_FILE_TRUNCATED"),  # inside the header
        (lambda d: d[:3], "BACKUP_FILE_TRUNCATED"),
        (lambda d: d[: chunk_at(2).stop + 100], "BACKUP_FILE_CORRUPT"),  # inside a chunk
        (lambda d: d[:-1], "BACKUP_FILE_CORRUPT"),
        (lambda d: d + b"\x00", "BACKUP_FILE_CORRUPT"),
        (swap, "BACKUP_FILE_CORRUPT"),
        (repeat, "BACKUP_FILE_CORRUPT"),
        (drop, "BACKUP_FILE_CORRUPT"),
        (append_copy_of_last, "BACKUP_FILE_CORRUPT"),
        (forge_chunk_size, "BACKUP_FILE_CORRUPT"),
        (lambda d: b"PGDMP" + d[5:], "BACKUP_FILE_CORRUPT"),
        (lambda d: b"PGD", "BACKUP_FILE_CORRUPT"),
    ],
    ids=[
        "magic",
        "version",
        "chunk-size",
        "key-id",
        "salt",
        "nonce-prefix",
        "name",
        "header-checksum",
        "body-first-byte",
        "body-middle-chunk",
        "tag-first-chunk",
        "tag-last-chunk",
        "trailer",
        "cut-after-3-chunks",
        "cut-after-1-chunk",
        "cut-to-header",
        "cut-in-header",
        "cut-to-3-bytes",
        "cut-in-chunk",
        "cut-one-byte",
        "extra-byte",
        "chunks-swapped",
        "chunk-repeated",
        "chunk-dropped",
        "last-chunk-repeated",
        "forged-chunk-size",
        "not-a-backup-file",
        "three-bytes-of-something-else",
    ],
)
async def test_damage_is_detected(
    storage: Storage,
    keys: BackupKeys,
    source: Path,
    tmp_path: Path,
    change: Callable[[bytes], bytes],
    reason: str,
) -> None:
    info, data = await sealed(source, storage, keys)
    assert len(data) > HEADER + 5 * WHOLE  # five full chunks and a last one
    await storage.put(NAME, chunks_of(change(data)))
    assert await reason_of(storage, keys, tmp_path / "out") == reason
    problems = await check_file(storage, info, keys)
    assert any(p.startswith(f"{reason}:") for p in problems), problems


async def test_a_file_renamed_or_moved_is_refused(
    storage: Storage, keys: BackupKeys, source: Path, tmp_path: Path
) -> None:
    _, data = await sealed(source, storage, keys)
    other = "20261203T000000Z-def/postgres.dump"  # the same file name in another backup
    await storage.put(other, chunks_of(data))
    assert await reason_of(storage, keys, tmp_path / "o", other) == "BACKUP_FILE_MISPLACED"


async def test_a_rename_forged_into_the_header_is_refused(
    storage: Storage, keys: BackupKeys, source: Path, tmp_path: Path
) -> None:
    """An attacker renames the file and rewrites the name in its header (with a fresh
    header checksum): the chunks were sealed with the original header as associated
    data, so none authenticates."""
    _, data = await sealed(source, storage, keys)
    other = NAME.replace("postgres", "mongodbx")
    assert len(other) == len(NAME)
    body = data[:FIXED] + other.encode()
    await storage.put(other, chunks_of(body + hashlib.sha256(body).digest()[:8] + data[HEADER:]))
    assert await reason_of(storage, keys, tmp_path / "o", other) == "BACKUP_FILE_CORRUPT"


async def test_check_file_reports_a_manifest_that_disagrees(
    storage: Storage, keys: BackupKeys, source: Path
) -> None:
    info, _ = await sealed(source, storage, keys)
    wrong = SealedFile(info.name, info.size + 1, "ab" * 32, info.plain_size + 1, "0" * 16)
    problems = await check_file(storage, wrong, keys)
    reasons = sorted(p.split(":", 1)[0] for p in problems)
    assert reasons == [
        "BACKUP_FILE_CHECKSUM_MISMATCH",
        "BACKUP_FILE_KEY_MISMATCH",
        "BACKUP_FILE_SIZE_MISMATCH",
        "BACKUP_FILE_SIZE_MISMATCH",
    ], problems


async def test_random_damage_is_always_detected(
    local_storage: LocalStorage, keys: BackupKeys, source: Path, tmp_path: Path
) -> None:
    """Seeded: any single flipped bit, anywhere, never opens."""
    rng = random.Random(_seed())
    _, data = await sealed(source, local_storage, keys)
    for _ in range(60):
        at, bit = rng.randrange(len(data)), 1 << rng.randrange(8)
        damaged = data[:at] + bytes([data[at] ^ bit]) + data[at + 1 :]
        await local_storage.put(NAME, chunks_of(damaged))
        reason = await reason_of(local_storage, keys, tmp_path / "o")
        assert reason in ("BACKUP_FILE_CORRUPT", "BACKUP_FILE_MISPLACED"), (at, bit, reason)


async def test_unwritable_destination(
    local_storage: LocalStorage, keys: BackupKeys, source: Path, tmp_path: Path
) -> None:
    await sealed(source, local_storage, keys)
    with pytest.raises(BackupError) as caught:
        await open_file(local_storage, NAME, keys, tmp_path / "no-such-folder" / "out")
    assert caught.value.reason == "BACKUP_DEST_UNWRITABLE"


async def test_unreadable_source(
    local_storage: LocalStorage, keys: BackupKeys, tmp_path: Path
) -> None:
    with pytest.raises(BackupError) as caught:
        await seal_file(tmp_path / "absent", local_storage, NAME, keys)
    assert caught.value.reason == "BACKUP_SOURCE_UNREADABLE"
    assert await local_storage.list("") == []


async def test_memory_stays_bounded_for_a_large_file(
    local_storage: LocalStorage, keys: BackupKeys, tmp_path: Path
) -> None:
    """A 48 MiB file seals (from the file or a stream), opens and checks with a few MiB
    of traced memory: it is never held whole (tracemalloc traces every thread's Python
    allocations)."""
    size = 48 * 1024 * 1024
    source = tmp_path / "big.src"
    rng = random.Random(1)
    with source.open("wb") as out:
        for _ in range(size // CHUNK_SIZE):
            out.write(rng.randbytes(CHUNK_SIZE))
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        info = await seal_file(source, local_storage, "b/big", keys)
        seal_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        written = await open_file(local_storage, "b/big", keys, tmp_path / "big.out")
        open_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        assert await check_file(local_storage, info, keys) == []
        check_peak = tracemalloc.get_traced_memory()[1]

        async def blocks() -> AsyncIterator[bytes]:
            stream_rng = random.Random(2)
            for _ in range(size // CHUNK_SIZE):
                yield stream_rng.randbytes(CHUNK_SIZE)

        tracemalloc.reset_peak()
        streamed = await seal_chunks(blocks(), local_storage, "b/streamed", keys)
        stream_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert written == size and info.plain_size == size and info.size > size
    assert streamed.plain_size == size
    print(
        f"peak traced memory: seal {seal_peak}, open {open_peak}, check {check_peak}, "
        f"seal a stream {stream_peak} bytes"
    )
    for peak in (seal_peak, open_peak, check_peak, stream_peak):
        assert peak < size // 4, peak
