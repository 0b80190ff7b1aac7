"""Sealed backup files: zstd-compressed, then encrypted with AES-256-GCM in chunks.

A sealed file is a header followed by encrypted chunks (docs/backups.md, "Archive
format, keys, storage")::

    header   magic "GCBACKUP" | version 1 | compression 1 (zstd) | chunk size (u32)
             | key id (8) | salt (16) | nonce prefix (7) | name length (u16) | name
             | checksum: the first 8 bytes of SHA-256 of everything before it
    chunks   AES-256-GCM(file key, nonce, compressed bytes, associated data = header)
             nonce = nonce prefix (7) | chunk number (u32) | 1 on the last chunk, else 0

Every chunk but the last holds exactly ``chunk size`` compressed bytes; the last holds
the rest followed by a trailer (the plain size, u64, and the SHA-256 of the plain
bytes). The file key is HKDF-SHA256 of the backup key with the header's random salt, so
no two files share a key. This is the STREAM construction (Hoang, Reyhanitabar, Rogaway
and Vizár, 2015): a flipped byte, a chunk moved, dropped or repeated, a file cut at a
chunk boundary, a header changed, a file renamed (its name is in the header, and the
header is every chunk's associated data) or a wrong key are each detected, each with
its own BackupError reason:

- ``BACKUP_FILE_MISSING``: no such file in storage;
- ``BACKUP_FILE_CORRUPT``: not a backup file, a damaged header, a chunk that fails
  authentication (altered, reordered, repeated, from another file), or contents that do
  not decompress to what was sealed;
- ``BACKUP_FILE_TRUNCATED``: the file ends before its last chunk;
- ``BACKUP_FILE_MISPLACED``: the file was sealed under another name;
- ``BACKUP_FILE_VERSION_UNSUPPORTED``: a format this server does not read;
- ``BACKUP_KEY_UNKNOWN``: sealed under a key that is neither current nor retired.

Everything streams: the source is read, compressed and encrypted about 1 MiB at a time,
in worker threads (``asyncio.to_thread``), so memory stays bounded by a few chunks
whatever the file's size.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from server.backup.errors import BackupError
from server.backup.keys import KEY_ID_BYTES, BackupKey, BackupKeys
from server.backup.storage import Storage, check_name

MAGIC = b"GCBACKUP"
FORMAT_VERSION = 1
COMPRESSION_ZSTD = 1
#: Compressed bytes per encrypted chunk.
CHUNK_SIZE = 1024 * 1024
#: Largest chunk size a header may declare (bounds what a reader buffers).
MAX_CHUNK_SIZE = 16 * 1024 * 1024
#: Bytes of the source read per step.
READ_BLOCK = 1024 * 1024
ZSTD_LEVEL = 3
SALT_BYTES = 16
NONCE_PREFIX_BYTES = 7
TAG_BYTES = 16
_FIXED = struct.Struct(f">8sBBI{KEY_ID_BYTES}s{SALT_BYTES}s{NONCE_PREFIX_BYTES}sH")
_CHECKSUM_BYTES = 8
_TRAILER = struct.Struct(">Q32s")
_MAX_COUNTER = 2**32 - 1
#: Reasons :func:`check_file` raises instead of reporting as the file's problems.
_NOT_THE_FILES_FAULT = frozenset({"BACKUP_STORAGE_UNAVAILABLE"})


@dataclass(frozen=True)
class SealedFile:
    """A file as stored: ``size`` and ``sha256`` (hex) of the stored bytes, ``plain_size``
    of what was sealed, and the id of the key it was sealed under."""

    name: str
    size: int
    sha256: str
    plain_size: int
    key_id: str


@dataclass(frozen=True)
class _Header:
    raw: bytes
    chunk_size: int
    key_id: str
    salt: bytes
    nonce_prefix: bytes
    name: str


def _build_header(name: str, key: BackupKey, chunk_size: int) -> _Header:
    encoded = name.encode("utf-8")
    salt = os.urandom(SALT_BYTES)
    prefix = os.urandom(NONCE_PREFIX_BYTES)
    body = (
        _FIXED.pack(
            MAGIC,
            FORMAT_VERSION,
            COMPRESSION_ZSTD,
            chunk_size,
            bytes.fromhex(key.key_id),
            salt,
            prefix,
            len(encoded),
        )
        + encoded
    )
    raw = body + hashlib.sha256(body).digest()[:_CHECKSUM_BYTES]
    return _Header(raw, chunk_size, key.key_id, salt, prefix, name)


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    if counter > _MAX_COUNTER:
        raise BackupError("BACKUP_FILE_TOO_LARGE", "a backup file may hold 2**32 chunks")
    return prefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


class _Sealer:
    """Compresses and encrypts one file's bytes as they come (each call in a thread)."""

    def __init__(self, key: BackupKey, header: _Header) -> None:
        self._header = header
        self._aead = AESGCM(key.file_key(header.salt))
        self._zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).compressobj()
        self._pending = bytearray()
        self._counter = 0
        self._plain_sha = hashlib.sha256()
        self.sha256 = hashlib.sha256(header.raw)
        self.size = len(header.raw)
        self.plain_size = 0
        self.done = False

    def _encrypt(self, data: bytes, *, last: bool) -> bytes:
        nonce = _nonce(self._header.nonce_prefix, self._counter, last)
        self._counter += 1
        return self._aead.encrypt(nonce, data, self._header.raw)

    def push(self, block: bytes) -> bytes:
        """Take ``block`` (at most about READ_BLOCK bytes); the sealed bytes ready."""
        self.plain_size += len(block)
        self._plain_sha.update(block)
        self._pending += self._zstd.compress(block)
        return self._emit(final=False)

    def finish(self) -> bytes:
        """The rest, ending with the last chunk."""
        self._pending += self._zstd.flush()
        return self._emit(final=True)

    def read_step(self, source: IO[bytes]) -> bytes | None:
        """Read a block of ``source`` and seal it; None once everything is out."""
        if self.done:
            return None
        block = source.read(READ_BLOCK)
        return self.push(block) if block else self.finish()

    def _emit(self, *, final: bool) -> bytes:
        size = self._header.chunk_size
        out = bytearray()
        # Keep at least one chunk back: the last chunk is only known at the end.
        while len(self._pending) > size:
            out += self._encrypt(bytes(self._pending[:size]), last=False)
            del self._pending[:size]
        if final:
            trailer = _TRAILER.pack(self.plain_size, self._plain_sha.digest())
            out += self._encrypt(bytes(self._pending) + trailer, last=True)
            self._pending.clear()
            self.done = True
        self.sha256.update(out)
        self.size += len(out)
        return bytes(out)


class _Sink:
    """Counts and hashes the plain bytes, and writes them on (or drops them)."""

    def __init__(self, out: IO[bytes] | None) -> None:
        self._out = out
        self.sha = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.count += len(data)
        if self._out is not None:
            self._out.write(data)
        return len(data)


class _Opener:
    """Authenticates, decrypts and decompresses a sealed file fed to it in pieces."""

    def __init__(self, name: str, keys: BackupKeys, out: IO[bytes] | None) -> None:
        self._name = name
        self._keys = keys
        self._buffer = bytearray()
        self._header: _Header | None = None
        self._aead: AESGCM | None = None
        self._counter = 0
        self._sink = _Sink(out)
        self._zstd = zstandard.ZstdDecompressor().stream_writer(
            cast("IO[bytes]", self._sink), write_size=READ_BLOCK, closefd=False
        )
        self.stored_sha = hashlib.sha256()
        self.stored_size = 0

    @property
    def key_id(self) -> str | None:
        return self._header.key_id if self._header else None

    @property
    def plain_size(self) -> int:
        return self._sink.count

    def _corrupt(self, why: str) -> BackupError:
        return BackupError("BACKUP_FILE_CORRUPT", f"backup file {self._name!r}: {why}")

    def _parse_header(self) -> bool:
        buf = self._buffer
        if len(buf) < len(MAGIC):
            return False
        if bytes(buf[: len(MAGIC)]) != MAGIC:
            raise self._corrupt("not a sealed backup file (unknown magic)")
        if len(buf) < _FIXED.size:
            return False
        _magic, version, compression, chunk_size, key_id, salt, prefix, name_len = (
            _FIXED.unpack_from(buf)
        )
        end = _FIXED.size + name_len
        if len(buf) < end + _CHECKSUM_BYTES:
            return False
        body = bytes(buf[:end])
        if hashlib.sha256(body).digest()[:_CHECKSUM_BYTES] != bytes(buf[end : end + 8]):
            raise self._corrupt("the header is damaged (checksum mismatch)")
        if version != FORMAT_VERSION or compression != COMPRESSION_ZSTD:
            raise BackupError(
                "BACKUP_FILE_VERSION_UNSUPPORTED",
                f"backup file {self._name!r}: format {version}/{compression} is not "
                f"readable by this server (it reads {FORMAT_VERSION}/{COMPRESSION_ZSTD})",
            )
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise self._corrupt(f"chunk size {chunk_size} out of range")
        try:
            sealed_name = body[_FIXED.size :].decode("utf-8")
        except UnicodeDecodeError:
            raise self._corrupt("the name in the header is not UTF-8") from None
        if sealed_name != self._name:
            raise BackupError(
                "BACKUP_FILE_MISPLACED",
                f"backup file {self._name!r} was sealed as {sealed_name!r} (renamed or moved)",
            )
        raw = body + bytes(buf[end : end + _CHECKSUM_BYTES])
        header = _Header(raw, chunk_size, key_id.hex(), salt, prefix, sealed_name)
        key = self._keys.get(header.key_id)
        self._header = header
        self._aead = AESGCM(key.file_key(salt))
        del self._buffer[: len(raw)]
        return True

    def _decrypt(self, data: bytes, *, last: bool) -> bytes:
        assert self._header is not None and self._aead is not None
        header = self._header
        try:
            plain = self._aead.decrypt(
                _nonce(header.nonce_prefix, self._counter, last), data, header.raw
            )
        except InvalidTag:
            if last:
                with contextlib.suppress(InvalidTag):
                    self._aead.decrypt(
                        _nonce(header.nonce_prefix, self._counter, False), data, header.raw
                    )
                    raise BackupError(
                        "BACKUP_FILE_TRUNCATED",
                        f"backup file {self._name!r} ends after chunk {self._counter} "
                        "without its final chunk",
                    ) from None
            raise self._corrupt(
                f"chunk {self._counter} fails authentication (altered, reordered, repeated, "
                "cut short or from another file)"
            ) from None
        self._counter += 1
        return plain

    def _decompress(self, data: bytes) -> None:
        try:
            self._zstd.write(data)
        except zstandard.ZstdError as exc:
            raise self._corrupt(f"the contents do not decompress ({exc})") from None

    def feed(self, data: bytes) -> None:
        self.stored_sha.update(data)
        self.stored_size += len(data)
        self._buffer += data
        if self._header is None and not self._parse_header():
            return
        assert self._header is not None
        whole = self._header.chunk_size + TAG_BYTES
        shortest_last = TAG_BYTES + _TRAILER.size
        # A chunk is known not to be the last when a last chunk still fits after it.
        while len(self._buffer) >= whole + shortest_last:
            chunk = bytes(self._buffer[:whole])
            del self._buffer[:whole]
            self._decompress(self._decrypt(chunk, last=False))

    def finish(self) -> None:
        if self._header is None:
            if not MAGIC.startswith(bytes(self._buffer[: len(MAGIC)])):
                raise self._corrupt("not a sealed backup file (unknown magic)")
            raise BackupError(
                "BACKUP_FILE_TRUNCATED", f"backup file {self._name!r} ends inside its header"
            )
        rest = bytes(self._buffer)
        self._buffer.clear()
        if len(rest) < TAG_BYTES + _TRAILER.size:
            if not rest:
                raise BackupError(
                    "BACKUP_FILE_TRUNCATED",
                    f"backup file {self._name!r} ends after chunk {self._counter} "
                    "without its final chunk",
                )
            raise self._corrupt(f"chunk {self._counter} is cut short")
        if len(rest) > self._header.chunk_size + TAG_BYTES + _TRAILER.size:
            raise self._corrupt(f"chunk {self._counter} has the wrong length")
        plain = self._decrypt(rest, last=True)
        data, trailer = plain[: -_TRAILER.size], plain[-_TRAILER.size :]
        self._decompress(data)
        try:
            self._zstd.flush()  # type: ignore[no-untyped-call]
        except zstandard.ZstdError as exc:
            raise self._corrupt(f"the contents do not decompress ({exc})") from None
        plain_size, plain_sha = _TRAILER.unpack(trailer)
        if self._sink.count != plain_size or self._sink.sha.digest() != plain_sha:
            raise self._corrupt("the contents do not decompress to what was sealed")


async def seal_file(
    source: Path,
    storage: Storage,
    name: str,
    keys: BackupKeys,
    *,
    chunk_size: int = CHUNK_SIZE,
) -> SealedFile:
    """Compress and encrypt ``source`` under the current key into ``storage`` as
    ``name`` (replacing a file there; all or nothing). ``BACKUP_SOURCE_UNREADABLE`` when
    ``source`` cannot be read; storage errors as in :mod:`server.backup.storage`."""
    check_name(name)
    _check_chunk_size(chunk_size)
    try:
        handle = await asyncio.to_thread(source.open, "rb")
    except OSError as exc:
        raise BackupError(
            "BACKUP_SOURCE_UNREADABLE", f"cannot read {source}: {exc.strerror or exc}"
        ) from None

    async def sealed(sealer: _Sealer) -> AsyncIterator[bytes]:
        while (out := await asyncio.to_thread(sealer.read_step, handle)) is not None:
            if out:
                yield out

    try:
        return await _seal(storage, name, keys, chunk_size, sealed)
    finally:
        await asyncio.to_thread(handle.close)


async def seal_chunks(
    chunks: AsyncIterator[bytes],
    storage: Storage,
    name: str,
    keys: BackupKeys,
    *,
    chunk_size: int = CHUNK_SIZE,
) -> SealedFile:
    """Like :func:`seal_file`, from bytes as they come (e.g. a dump tool's stdout): no
    file on disk first. An error raised by ``chunks`` propagates, and nothing is stored
    under ``name``."""
    check_name(name)
    _check_chunk_size(chunk_size)

    async def sealed(sealer: _Sealer) -> AsyncIterator[bytes]:
        async for block in chunks:
            view = memoryview(block)
            for start in range(0, len(view), READ_BLOCK):
                out = await asyncio.to_thread(sealer.push, bytes(view[start : start + READ_BLOCK]))
                if out:
                    yield out
        yield await asyncio.to_thread(sealer.finish)

    return await _seal(storage, name, keys, chunk_size, sealed)


def _check_chunk_size(chunk_size: int) -> None:
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be 1..{MAX_CHUNK_SIZE}")


async def _seal(
    storage: Storage,
    name: str,
    keys: BackupKeys,
    chunk_size: int,
    body: Callable[[_Sealer], AsyncIterator[bytes]],
) -> SealedFile:
    key = keys.current
    header = _build_header(name, key, chunk_size)
    sealer = _Sealer(key, header)

    async def stream() -> AsyncIterator[bytes]:
        yield header.raw
        async for out in body(sealer):
            yield out

    stored = await storage.put(name, stream())
    if not sealer.done or stored != sealer.size:
        raise BackupError(
            "BACKUP_STORAGE_UNAVAILABLE", f"storage kept {stored} of {sealer.size} bytes"
        )
    return SealedFile(name, sealer.size, sealer.sha256.hexdigest(), sealer.plain_size, key.key_id)


async def _run(storage: Storage, name: str, opener: _Opener) -> None:
    async with contextlib.aclosing(storage.get(name)) as stream:
        async for data in stream:
            await asyncio.to_thread(opener.feed, data)
    await asyncio.to_thread(opener.finish)


async def open_file(storage: Storage, name: str, keys: BackupKeys, dest: Path) -> int:
    """Authenticate, decrypt and decompress ``name`` into ``dest`` (created or replaced);
    the number of plain bytes written. On any error ``dest`` is removed, and the
    BackupError says why (see the module docstring); ``BACKUP_DEST_UNWRITABLE`` when
    ``dest`` cannot be written (a missing folder, a full disk)."""
    check_name(name)
    try:
        handle = await asyncio.to_thread(dest.open, "wb")
    except OSError as exc:
        raise _unwritable(dest, exc) from None
    opener = _Opener(name, keys, handle)
    try:
        await _run(storage, name, opener)
        await asyncio.to_thread(_close_synced, handle)
    except OSError as exc:  # the storages raise BackupError: this is writing ``dest``
        _discard(handle, dest)
        raise _unwritable(dest, exc) from None
    except BaseException:
        _discard(handle, dest)
        raise
    return opener.plain_size


def _unwritable(dest: Path, exc: OSError) -> BackupError:
    return BackupError(
        "BACKUP_DEST_UNWRITABLE", f"cannot write {dest}: {exc.strerror or type(exc).__name__}"
    )


def _discard(handle: IO[bytes], dest: Path) -> None:
    try:
        handle.close()
    finally:
        dest.unlink(missing_ok=True)


def _close_synced(handle: IO[bytes]) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


async def check_file(storage: Storage, sealed: SealedFile, keys: BackupKeys) -> list[str]:
    """What is wrong with a stored file, as ``"<REASON>: <message>"`` lines (empty when
    good): it must be present, have the recorded size and SHA-256, be sealed under the
    recorded key, and decrypt and decompress to the end to ``plain_size`` bytes.

    A storage that cannot be reached says nothing about the file: its
    ``BACKUP_STORAGE_UNAVAILABLE`` is raised, not reported."""
    size = await storage.size(sealed.name)
    if size is None:
        return [f"BACKUP_FILE_MISSING: backup file {sealed.name!r} is not in storage"]
    problems: list[str] = []
    if size != sealed.size:
        problems.append(
            f"BACKUP_FILE_SIZE_MISMATCH: backup file {sealed.name!r} has {size} bytes, "
            f"the manifest says {sealed.size}"
        )
    opener = _Opener(sealed.name, keys, None)
    try:
        await _run(storage, sealed.name, opener)
    except BackupError as exc:
        if exc.reason in _NOT_THE_FILES_FAULT:
            raise
        problems.append(f"{exc.reason}: {exc}")
    else:
        if opener.plain_size != sealed.plain_size:
            problems.append(
                f"BACKUP_FILE_SIZE_MISMATCH: backup file {sealed.name!r} opens to "
                f"{opener.plain_size} bytes, the manifest says {sealed.plain_size}"
            )
        if opener.key_id != sealed.key_id:
            problems.append(
                f"BACKUP_FILE_KEY_MISMATCH: backup file {sealed.name!r} is sealed under key "
                f"{opener.key_id!r}, the manifest says {sealed.key_id!r}"
            )
    if opener.stored_size == size and opener.stored_sha.hexdigest() != sealed.sha256:
        problems.append(
            f"BACKUP_FILE_CHECKSUM_MISMATCH: backup file {sealed.name!r} does not have the "
            "recorded SHA-256"
        )
    return problems
