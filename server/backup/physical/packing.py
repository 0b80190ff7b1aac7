"""A backup folder as one tar stream and back, for sealing (server/backup/archive.py).

:func:`pack` yields an uncompressed POSIX tar of a folder (or of some of its files) in
chunks, written by a worker thread while the caller consumes it: memory stays at a few
chunks whatever the folder's size, so ``seal_chunks(pack(folder), storage, name, keys)``
stores a base backup with no second copy on disk. :func:`unpack` extracts such a tar
safely: only regular files and folders, no absolute names, no ``..``, no links or
devices; anything else refuses the whole archive (``BACKUP_PACK_UNSAFE``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import shutil
import tarfile
import threading
from collections.abc import AsyncIterator, Iterable
from pathlib import Path, PurePosixPath

from server.backup.errors import BackupError

CHUNK_SIZE = 1024 * 1024
_QUEUE_CHUNKS = 4
_DONE = object()


class _Cancelled(Exception):
    pass


class _QueueWriter:
    """A write-only file object handing fixed-size chunks to a bounded queue."""

    def __init__(self, out: queue.Queue[object], cancelled: threading.Event) -> None:
        self._out = out
        self._cancelled = cancelled
        self._buffer = bytearray()

    def _put(self, item: object) -> None:
        while True:
            if self._cancelled.is_set():
                raise _Cancelled
            try:
                self._out.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def write(self, data: bytes) -> int:
        self._buffer += data
        while len(self._buffer) >= CHUNK_SIZE:
            self._put(bytes(self._buffer[:CHUNK_SIZE]))
            del self._buffer[:CHUNK_SIZE]
        return len(data)

    def flush(self) -> None:
        if self._buffer:
            self._put(bytes(self._buffer))
            self._buffer.clear()


def _members(source: Path, names: Iterable[str] | None) -> list[Path]:
    if names is None:
        return sorted(source.iterdir())
    return [source / name for name in names]


def _write_tar(source: Path, names: Iterable[str] | None, writer: _QueueWriter) -> None:
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for path in _members(source, names):
            tar.add(path, arcname=path.relative_to(source).as_posix(), recursive=True)
    writer.flush()


async def pack(source: Path, *, names: Iterable[str] | None = None) -> AsyncIterator[bytes]:
    """The tar of folder ``source`` (or only of ``names``, relative to it) in chunks of
    about 1 MiB. Closing the iterator early stops the worker thread."""
    out: queue.Queue[object] = queue.Queue(maxsize=_QUEUE_CHUNKS)
    cancelled = threading.Event()
    failure: list[BaseException] = []
    writer = _QueueWriter(out, cancelled)

    def work() -> None:
        try:
            _write_tar(source, list(names) if names is not None else None, writer)
        except _Cancelled:
            return
        except BaseException as exc:  # handed to the consumer
            failure.append(exc)
        with contextlib.suppress(_Cancelled):
            writer._put(_DONE)

    thread = threading.Thread(target=work, name="pack", daemon=True)
    thread.start()
    try:
        while True:
            item = await asyncio.to_thread(out.get)
            if item is _DONE:
                break
            assert isinstance(item, bytes)
            yield item
        if failure:
            exc = failure[0]
            if isinstance(exc, OSError):
                raise BackupError("BACKUP_SOURCE_UNREADABLE", f"cannot pack {source}: {exc}")
            raise exc
    finally:
        cancelled.set()
        await asyncio.to_thread(thread.join)


async def pack_to_file(source: Path, out: Path, *, names: Iterable[str] | None = None) -> int:
    """Write the tar of ``source`` to the file ``out``; returns its size."""
    size = 0
    with out.open("wb") as handle:
        async for chunk in pack(source, names=names):
            await asyncio.to_thread(handle.write, chunk)
            size += len(chunk)
    return size


def _safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if (
        not name
        or path.is_absolute()
        or any(part in ("", "..") for part in path.parts)
        or "\\" in name
        or "\x00" in name
    ):
        raise BackupError("BACKUP_PACK_UNSAFE", f"unsafe name in the archive: {name!r}")
    return path


def _extract(tar_file: Path, dest: Path) -> list[str]:
    dest.mkdir(parents=True, exist_ok=True)
    names = []
    with tarfile.open(tar_file, mode="r:") as tar:
        for member in tar:
            path = _safe_name(member.name)
            target = dest.joinpath(*path.parts)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                target.chmod(0o700)
            elif member.isreg():
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_symlink() or target.exists():
                    raise BackupError(
                        "BACKUP_PACK_UNSAFE", f"the archive holds {member.name!r} twice"
                    )
                source = tar.extractfile(member)
                assert source is not None
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with source, os.fdopen(fd, "wb") as handle:
                    shutil.copyfileobj(source, handle, CHUNK_SIZE)
                names.append(path.as_posix())
            else:
                raise BackupError(
                    "BACKUP_PACK_UNSAFE",
                    f"the archive holds {member.name!r}, which is not a file or a folder",
                )
    return names


async def unpack(tar_file: Path, dest: Path) -> list[str]:
    """Extract the tar ``tar_file`` (made by :func:`pack`) into the folder ``dest``
    (made if missing, and removed again on failure; it should be empty); returns the
    files' names. Folders come out mode 700 and files 600 (what a PostgreSQL data
    folder wants). An unsafe member (absolute, ``..``, a link, a device, a name twice)
    stops it with ``BACKUP_PACK_UNSAFE``; a damaged tar with ``BACKUP_FILE_CORRUPT``."""
    created = not await asyncio.to_thread(dest.exists)
    try:
        try:
            return await asyncio.to_thread(_extract, tar_file, dest)
        except tarfile.TarError as exc:
            raise BackupError(
                "BACKUP_FILE_CORRUPT", f"{tar_file.name} is not a whole tar: {exc}"
            ) from None
    except BaseException:
        if created:
            await asyncio.to_thread(shutil.rmtree, dest, True)
        raise
