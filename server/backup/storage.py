"""Where backup files live: a local folder or S3-compatible object storage.

Both speak the :class:`Storage` protocol over names: ``/``-separated relative paths
(``<backup_id>/postgres.dump``), each segment non-empty, not starting with ``.``, without
``\\``, NUL or control characters; a name that is absolute or would escape the root
(``..``) is refused with BackupError ``BACKUP_NAME_INVALID``. A reader never sees a half
written file under its final name: :class:`LocalStorage` writes a temporary file in the
same folder and renames it; :class:`S3Storage` uploads in parts (obstore's streaming
multipart put), and the object appears only when the upload completes.

Errors are BackupError: ``BACKUP_FILE_MISSING`` (no such file), ``BACKUP_NAME_INVALID``,
``BACKUP_STORAGE_UNAVAILABLE`` (the folder or the object store failed: permissions,
network, credentials).
"""

from __future__ import annotations

import asyncio
import builtins
import errno
import ipaddress
import os
import secrets
import shutil
import stat
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlsplit

import obstore
from obstore.exceptions import BaseError as ObjectStoreError
from obstore.store import S3Store

from server.backup.errors import BackupError
from server.core.config import ConfigurationError, Settings

if TYPE_CHECKING:
    from obstore.store import ClientConfig, S3Config

#: Bytes per chunk read from storage.
READ_CHUNK = 1024 * 1024
#: Part size of S3 multipart uploads (S3's minimum is 5 MiB) and parts in flight at once:
#: an upload holds at most about PART_SIZE * (PARTS_IN_FLIGHT + 1) bytes.
S3_PART_SIZE = 8 * 1024 * 1024
S3_PARTS_IN_FLIGHT = 2
MAX_NAME_LENGTH = 1024
_TMP_SUFFIX = ".tmp"
#: What obstore raises when a request fails (besides FileNotFoundError for a missing
#: object): its own errors, and built-in OSError/ValueError for some.
_STORE_FAILURES = (ObjectStoreError, OSError, ValueError)


class Storage(Protocol):
    """A flat namespace of files with ``/``-separated names."""

    def uri_for(self, prefix: str) -> str:
        """Where ``prefix`` lives, for people and the Backup row (``file:///...`` or
        ``s3://bucket/...``)."""
        ...

    async def put(self, name: str, chunks: AsyncIterator[bytes]) -> int:
        """Store the bytes of ``chunks`` under ``name`` (replacing any file there), all or
        nothing; the number of bytes stored."""
        ...

    def get(self, name: str) -> AsyncGenerator[bytes, None]:
        """The bytes of ``name`` in chunks (an async generator: ``BACKUP_FILE_MISSING`` is
        raised by the first step; close it early with ``contextlib.aclosing``)."""
        ...

    async def size(self, name: str) -> int | None:
        """The size of ``name`` in bytes, None when there is no such file."""
        ...

    async def list(self, prefix: str) -> builtins.list[str]:
        """Every name under the folder ``prefix`` (recursively; ``""``: everything),
        sorted."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every file under the folder ``prefix`` (not empty); how many."""
        ...


def _invalid(name: object, why: str) -> BackupError:
    return BackupError("BACKUP_NAME_INVALID", f"storage name {name!r} refused: {why}")


def check_name(name: str) -> str:
    """``name`` if it is a valid relative storage name, else BACKUP_NAME_INVALID."""
    if not isinstance(name, str) or not name:
        raise _invalid(name, "empty")
    if len(name) > MAX_NAME_LENGTH:
        raise _invalid(name[:64] + "...", f"longer than {MAX_NAME_LENGTH} characters")
    if name.startswith("/") or "\\" in name or (len(name) > 1 and name[1] == ":"):
        raise _invalid(name, "absolute names are not allowed")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise _invalid(name, "control characters are not allowed")
    for segment in name.split("/"):
        if not segment:
            raise _invalid(name, "empty path segment")
        if segment in (".", ".."):
            raise _invalid(name, "'.' and '..' segments would escape the storage root")
        if segment.startswith("."):
            raise _invalid(name, "segments may not start with '.'")
    return name


def check_prefix(prefix: str, *, allow_empty: bool = True) -> str:
    """A folder prefix without trailing ``/`` (``""`` for the root when allowed)."""
    stripped = prefix.rstrip("/") if isinstance(prefix, str) else prefix
    if stripped == "":
        if allow_empty:
            return ""
        raise _invalid(prefix, "an empty prefix would name everything")
    return check_name(stripped)


def _unavailable(action: str, name: str, exc: BaseException) -> BackupError:
    detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return BackupError(
        "BACKUP_STORAGE_UNAVAILABLE",
        f"backup storage could not {action} {name!r}: {type(exc).__name__}"
        + (f" ({detail})" if detail else ""),
    )


def _missing(name: str) -> BackupError:
    return BackupError("BACKUP_FILE_MISSING", f"backup file {name!r} is not in storage")


# --- local folder --------------------------------------------------------------------


class LocalStorage:
    """Files under ``root`` (created on first write)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.abspath(root))

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def _path(self, name: str) -> Path:
        path = self.root / check_name(name)
        # A symlink inside the root could still lead out of it.
        real_root = os.path.realpath(self.root)
        real = os.path.realpath(path)
        if os.path.commonpath([real_root, real]) != real_root:
            raise _invalid(name, "it resolves outside the storage root")
        return path

    def uri_for(self, prefix: str) -> str:
        clean = check_prefix(prefix)
        return (self.root / clean).as_uri() if clean else self.root.as_uri()

    async def put(self, name: str, chunks: AsyncIterator[bytes]) -> int:
        path = await asyncio.to_thread(self._path, name)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}{_TMP_SUFFIX}")
        try:
            handle = await asyncio.to_thread(_open_tmp, tmp)
        except OSError as exc:
            raise _unavailable("write", name, exc) from exc
        total = 0
        try:
            async for chunk in chunks:
                await asyncio.to_thread(handle.write, chunk)
                total += len(chunk)
            await asyncio.to_thread(_commit, handle, tmp, path)
        except OSError as exc:
            _discard(handle, tmp)
            raise _unavailable("write", name, exc) from exc
        except BaseException:
            _discard(handle, tmp)
            raise
        return total

    async def get(self, name: str) -> AsyncGenerator[bytes, None]:
        path = await asyncio.to_thread(self._path, name)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise _missing(name) from None
        except IsADirectoryError:
            raise _missing(name) from None
        except OSError as exc:
            raise _unavailable("read", name, exc) from exc
        try:
            while True:
                try:
                    chunk = await asyncio.to_thread(handle.read, READ_CHUNK)
                except OSError as exc:
                    raise _unavailable("read", name, exc) from exc
                if not chunk:
                    return
                yield chunk
        finally:
            handle.close()

    async def size(self, name: str) -> int | None:
        path = await asyncio.to_thread(self._path, name)
        try:
            return await asyncio.to_thread(_file_size, path)
        except OSError as exc:
            raise _unavailable("inspect", name, exc) from exc

    async def list(self, prefix: str) -> builtins.list[str]:
        clean = check_prefix(prefix)
        try:
            return await asyncio.to_thread(self._list, clean)
        except OSError as exc:
            raise _unavailable("list", clean, exc) from exc

    def _list(self, prefix: str) -> builtins.list[str]:
        base = self.root / prefix if prefix else self.root
        names: builtins.list[str] = []
        if not base.is_dir():
            # Nothing stored yet is an empty list; a root that cannot be a folder is not.
            try:
                if not stat.S_ISDIR(os.stat(self.root).st_mode):
                    raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(self.root))
            except FileNotFoundError:
                pass
            return names
        for folder, dirs, files in os.walk(base, onerror=_raise):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            rel = Path(folder).relative_to(self.root)
            for file in files:
                if not file.startswith("."):
                    names.append((rel / file).as_posix())
        return sorted(names)

    async def delete_prefix(self, prefix: str) -> int:
        clean = check_prefix(prefix, allow_empty=False)
        await asyncio.to_thread(self._path, clean)
        try:
            return await asyncio.to_thread(self._delete, clean)
        except OSError as exc:
            raise _unavailable("delete", clean, exc) from exc

    def _delete(self, prefix: str) -> int:
        # A prefix is a folder, as on S3: one naming a file deletes nothing. The folder's
        # hidden temporary files (a write killed midway) go with it.
        count = len(self._list(prefix))
        target = self.root / prefix
        if target.is_dir():
            shutil.rmtree(target)
        return count


def _raise(exc: OSError) -> None:
    raise exc


def _open_tmp(tmp: Path) -> IO[bytes]:
    tmp.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "wb")


def _commit(handle: IO[bytes], tmp: Path, path: Path) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    os.replace(tmp, path)
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass  # some filesystems refuse fsync on folders; the rename is done
    finally:
        os.close(dir_fd)


def _discard(handle: IO[bytes], tmp: Path) -> None:
    try:
        handle.close()
    finally:
        tmp.unlink(missing_ok=True)


def _file_size(path: Path) -> int | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_size if path.is_file() else None


# --- S3-compatible object storage ---------------------------------------------------


class S3Storage:
    """Objects in an S3 bucket under a prefix, through obstore."""

    def __init__(self, store: S3Store, *, bucket: str, prefix: str = "") -> None:
        self._store = store
        self.bucket = bucket
        self.prefix = check_prefix(prefix)

    def __repr__(self) -> str:
        return f"S3Storage({self.uri_for('')!r})"

    @classmethod
    def create(
        cls,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str = "",
        region: str = "",
        access_key_id: str = "",
        secret_access_key: str = "",
    ) -> S3Storage:
        """A store for ``s3://bucket/prefix``; credentials and region not given here come
        from the standard ``AWS_*`` environment variables."""
        if not bucket:
            raise ConfigurationError("GENCHARGE_BACKUP_STORAGE_URL: s3:// needs a bucket")
        config: S3Config = {}
        client: ClientConfig = {
            "connect_timeout": timedelta(seconds=10),
            # A multi-GB transfer is one request: bound stalls, not the whole transfer.
            "timeout": timedelta(hours=24),
            "read_timeout": timedelta(seconds=120),
        }
        if endpoint:
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigurationError("GENCHARGE_BACKUP_S3_ENDPOINT must be an http(s):// URL")
            if parts.scheme == "http":
                if not _is_loopback(parts.hostname):
                    raise ConfigurationError(
                        "GENCHARGE_BACKUP_S3_ENDPOINT: plain http:// is allowed to a loopback "
                        "address only; use https://"
                    )
                client["allow_http"] = True
            config["endpoint"] = endpoint
        if region:
            config["region"] = region
        if access_key_id or secret_access_key:
            if not (access_key_id and secret_access_key):
                raise ConfigurationError(
                    "GENCHARGE_BACKUP_S3_ACCESS_KEY_ID and GENCHARGE_BACKUP_S3_SECRET_ACCESS_KEY "
                    "go together"
                )
            config["access_key_id"] = access_key_id
            config["secret_access_key"] = secret_access_key
        clean = check_prefix(prefix)
        try:
            store = S3Store(bucket, prefix=clean or None, config=config, client_options=client)
        except _STORE_FAILURES as exc:
            raise ConfigurationError(f"backup S3 storage: {type(exc).__name__}") from None
        return cls(store, bucket=bucket, prefix=clean)

    def uri_for(self, prefix: str) -> str:
        clean = check_prefix(prefix)
        path = "/".join(p for p in (self.prefix, clean) if p)
        return f"s3://{self.bucket}/{path}" if path else f"s3://{self.bucket}"

    async def put(self, name: str, chunks: AsyncIterator[bytes]) -> int:
        check_name(name)
        total = 0

        async def counted() -> AsyncIterator[bytes]:
            nonlocal total
            async for chunk in chunks:
                total += len(chunk)
                yield chunk

        try:
            await obstore.put_async(
                self._store,
                name,
                counted(),
                chunk_size=S3_PART_SIZE,
                max_concurrency=S3_PARTS_IN_FLIGHT,
            )
        except _STORE_FAILURES as exc:
            raise _unavailable("write", name, exc) from exc
        return total

    async def get(self, name: str) -> AsyncGenerator[bytes, None]:
        check_name(name)
        try:
            result = await obstore.get_async(self._store, name)
        except FileNotFoundError:  # obstore's not-found
            raise _missing(name) from None
        except _STORE_FAILURES as exc:
            raise _unavailable("read", name, exc) from exc
        stream = result.stream(min_chunk_size=READ_CHUNK)
        while True:
            try:
                chunk = await anext(stream)
            except StopAsyncIteration:
                return
            except _STORE_FAILURES as exc:
                raise _unavailable("read", name, exc) from exc
            yield chunk

    async def size(self, name: str) -> int | None:
        check_name(name)
        try:
            meta = await obstore.head_async(self._store, name)
        except FileNotFoundError:  # obstore's not-found
            return None
        except _STORE_FAILURES as exc:
            raise _unavailable("inspect", name, exc) from exc
        return int(meta["size"])

    async def list(self, prefix: str) -> builtins.list[str]:
        clean = check_prefix(prefix)
        names: builtins.list[str] = []
        try:
            async for batch in obstore.list(self._store, clean or None, chunk_size=1000):
                names.extend(str(meta["path"]) for meta in batch)
        except _STORE_FAILURES as exc:
            raise _unavailable("list", clean, exc) from exc
        return sorted(names)

    async def delete_prefix(self, prefix: str) -> int:
        clean = check_prefix(prefix, allow_empty=False)
        names = await self.list(clean)
        try:
            for start in range(0, len(names), 1000):
                await obstore.delete_async(self._store, names[start : start + 1000])
        except _STORE_FAILURES as exc:
            raise _unavailable("delete", clean, exc) from exc
        return len(names)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def storage_from_settings(settings: Settings) -> Storage:
    """The storage ``backup_storage_url`` names (see the setting);
    ConfigurationError when it cannot work."""
    url = settings.backup_storage_url.strip()
    if not url:
        return LocalStorage(settings.data_dir / "backups")
    parts = urlsplit(url)
    if parts.scheme == "file":
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost") or not path.startswith("/"):
            raise ConfigurationError(
                "GENCHARGE_BACKUP_STORAGE_URL: a file:// URL needs an absolute path "
                "(file:///srv/backups)"
            )
        return LocalStorage(Path(path))
    if parts.scheme == "s3":
        if parts.query or parts.fragment:
            raise ConfigurationError(
                "GENCHARGE_BACKUP_STORAGE_URL: s3://bucket/prefix takes no query or fragment"
            )
        try:
            prefix = check_prefix(unquote(parts.path.lstrip("/")))
        except BackupError as exc:
            raise ConfigurationError(f"GENCHARGE_BACKUP_STORAGE_URL: {exc}") from None
        return S3Storage.create(
            parts.netloc,
            prefix,
            endpoint=settings.backup_s3_endpoint.strip(),
            region=settings.backup_s3_region.strip(),
            access_key_id=settings.backup_s3_access_key_id.strip(),
            secret_access_key=settings.backup_s3_secret_access_key.get_secret_value().strip(),
        )
    raise ConfigurationError(
        "GENCHARGE_BACKUP_STORAGE_URL must be empty (the data folder), file:///path or "
        "s3://bucket/prefix"
    )
