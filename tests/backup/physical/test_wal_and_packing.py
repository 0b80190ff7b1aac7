"""The WAL archive helpers and the tar packing, without a server."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from server.backup.errors import BackupError
from server.backup.physical.packing import pack, pack_to_file, unpack
from server.backup.physical.wal import (
    archive_command,
    lay_out,
    list_segments,
    lsn_to_int,
    restore_command,
    segment_name,
)

SEG = 16 * 1024 * 1024


def _archive(command: str, data_dir: Path, name: str) -> int:
    """Run ``command`` as PostgreSQL would for the segment pg_wal/<name>."""
    shell = command.replace("%p", f"pg_wal/{name}").replace("%f", name).replace("%%", "%")
    return subprocess.run(["/bin/sh", "-c", shell], cwd=data_dir, check=False).returncode


def test_the_archive_command_copies_once_and_never_overwrites_a_different_file(
    tmp_path: Path,
) -> None:
    data_dir, archive = tmp_path / "data", tmp_path / "arch 'quoted' 100%"
    (data_dir / "pg_wal").mkdir(parents=True)
    archive.mkdir()
    name = "000000010000000000000003"
    (data_dir / "pg_wal" / name).write_bytes(b"segment one")
    command = archive_command(archive)

    assert _archive(command, data_dir, name) == 0
    assert (archive / name).read_bytes() == b"segment one"
    assert [p.name for p in archive.iterdir()] == [name]  # no temporary file left
    assert _archive(command, data_dir, name) == 0  # the same file again: fine

    (data_dir / "pg_wal" / name).write_bytes(b"another cluster's segment")
    assert _archive(command, data_dir, name) != 0
    assert (archive / name).read_bytes() == b"segment one"

    restore = restore_command(archive).replace("%f", name).replace("%p", "out").replace("%%", "%")
    subprocess.run(["/bin/sh", "-c", restore], cwd=tmp_path, check=True)
    assert (tmp_path / "out").read_bytes() == b"segment one"


def test_segments_are_listed_in_order_from_an_lsn_and_after_a_copied_one(tmp_path: Path) -> None:
    names = [segment_name(1, n) for n in (1, 2, 3, 0x100, 0x101)] + [segment_name(2, 0x101)]
    for name in [*names, "00000002.history", ".000000010000000000000004.tmp", "junk"]:
        (tmp_path / name).write_bytes(b"\0" * 16)
    (tmp_path / f"{names[0]}.00000028.backup").write_text("x")
    # Size is read off a segment: make the segments 16 MiB long (sparse).
    for name in names:
        with (tmp_path / name).open("r+b") as handle:
            handle.truncate(SEG)

    assert segment_name(1, 0x100) == "000000010000000100000000"
    everything = [p.name for p in list_segments(tmp_path)]
    assert everything == ["00000002.history", *names]
    from_lsn = [p.name for p in list_segments(tmp_path, from_lsn="0/3000028")]
    assert from_lsn == ["00000002.history", *names[2:]]
    assert lsn_to_int("1/0") // SEG == 0x100
    after = [p.name for p in list_segments(tmp_path, after=names[3])]
    assert after == ["00000002.history", names[4], names[5]]

    laid = lay_out(list_segments(tmp_path, after=names[3]), tmp_path / "wal")
    assert sorted(p.name for p in laid) == sorted(["00000002.history", names[4], names[5]])
    with pytest.raises(ValueError, match="not a WAL file"):
        lay_out([tmp_path / "junk"], tmp_path / "wal")


async def test_pack_streams_a_folder_and_unpack_restores_it(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "base" / "1").mkdir(parents=True)
    (source / "base" / "1" / "1234").write_bytes(bytes(range(256)) * 9000)  # > 2 chunks
    (source / "PG_VERSION").write_text("18\n")
    (source / "empty").mkdir()
    chunks = [chunk async for chunk in pack(source)]
    assert len(chunks) >= 2
    tar = tmp_path / "b.tar"
    tar.write_bytes(b"".join(chunks))
    names = await unpack(tar, tmp_path / "out")
    assert sorted(names) == ["PG_VERSION", "base/1/1234"]
    assert (tmp_path / "out" / "base" / "1" / "1234").read_bytes() == bytes(range(256)) * 9000
    assert (tmp_path / "out" / "empty").is_dir()

    only = tmp_path / "only.tar"
    await pack_to_file(source, only, names=["PG_VERSION"])
    assert await unpack(only, tmp_path / "only") == ["PG_VERSION"]


async def test_closing_pack_early_stops_its_worker(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"\1" * (12 * 1024 * 1024))
    stream = pack(tmp_path)
    first = await anext(stream)
    assert first
    await stream.aclose()  # the worker thread is joined, not left blocked


def _tar_with(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        member.size = len(data) if member.isreg() else 0
        tar.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "member",
    [
        tarfile.TarInfo("../escape"),
        tarfile.TarInfo("/etc/absolute"),
        tarfile.TarInfo("a/../../escape"),
    ],
    ids=["dotdot", "absolute", "nested-dotdot"],
)
async def test_unpack_refuses_names_outside_the_folder(
    tmp_path: Path, member: tarfile.TarInfo
) -> None:
    tar = tmp_path / "evil.tar"
    tar.write_bytes(_tar_with(member, b"x"))
    with pytest.raises(BackupError) as refused:
        await unpack(tar, tmp_path / "out")
    assert refused.value.reason == "BACKUP_PACK_UNSAFE"
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE])
async def test_unpack_refuses_links_and_devices(tmp_path: Path, kind: bytes) -> None:
    member = tarfile.TarInfo("pg_wal")
    member.type = kind
    member.linkname = "/etc"
    tar = tmp_path / "evil.tar"
    tar.write_bytes(_tar_with(member))
    with pytest.raises(BackupError) as refused:
        await unpack(tar, tmp_path / "out")
    assert refused.value.reason == "BACKUP_PACK_UNSAFE"


async def test_unpack_of_a_cut_tar_is_corrupt(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(b"y" * 100_000)
    tar = tmp_path / "cut.tar"
    await pack_to_file(tmp_path / "src", tar)
    tar.write_bytes(tar.read_bytes()[:50_000])
    with pytest.raises(BackupError) as cut:
        await unpack(tar, tmp_path / "out")
    assert cut.value.reason == "BACKUP_FILE_CORRUPT"
    assert not (tmp_path / "out").exists()
