"""Where report files are kept: a small interface and its local-directory implementation.

A report is written to a scratch file first (:meth:`ReportStorage.scratch`), then
handed to the storage under its key with :meth:`ReportStorage.put`; a file that failed
half-way never gets a key. ``download_uri`` is :meth:`ReportStorage.uri` of the key:
for the local storage a ``file://`` URI on the server's host (GENCHARGE_REPORTS_DIR);
callers elsewhere use the DownloadReport stream, which reads :meth:`chunks`. An object
store (S3) implements the same four methods.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

#: Bytes per chunk read back (and per DownloadReport message).
CHUNK_BYTES = 64 * 1024


class ReportStorage(Protocol):
    def scratch(self, suffix: str) -> Path:
        """A new empty file to write a report into before :meth:`put`."""
        ...

    async def put(self, key: str, source: Path) -> None:
        """Store ``source`` (a scratch file, consumed) under ``key``."""
        ...

    def uri(self, key: str) -> str:
        """Where the stored file can be fetched from (``download_uri``)."""
        ...

    def chunks(self, key: str) -> AsyncIterator[bytes]:
        """The stored file's bytes in order; FileNotFoundError if it is gone."""
        ...

    async def delete(self, key: str) -> None:
        """Forget ``key`` (nothing if it is not there)."""
        ...


class LocalReportStorage:
    """Files under one directory (created on first use, mode 0700); keys are file names."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"bad report key {key!r}")
        return self.root / key

    def _ensure(self) -> Path:
        scratch = self.root / ".scratch"
        scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
        return scratch

    def scratch(self, suffix: str) -> Path:
        handle, name = tempfile.mkstemp(suffix=suffix, dir=self._ensure())
        os.close(handle)
        return Path(name)

    async def put(self, key: str, source: Path) -> None:
        await asyncio.to_thread(os.replace, source, self._path(key))

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    async def chunks(self, key: str) -> AsyncIterator[bytes]:
        path = self._path(key)
        handle = await asyncio.to_thread(path.open, "rb")
        try:
            while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
                yield chunk
        finally:
            handle.close()

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)
