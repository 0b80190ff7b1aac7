"""`gencharge backup` as an operator runs it: a real subprocess over this test's fresh
databases (GENCHARGE_DATABASE_URL / GENCHARGE_MONGO_URL), a backup folder of its own
(GENCHARGE_BACKUP_STORAGE_URL) and an explicit backup key.

create (prints the id), list (shows it), verify (valid), drill (passed), restore
without --yes (refused, exit 2, nothing changed), --validate-only (exit 0, nothing
changed), --yes (exit 0, the data is the backup's), verify of an unknown id (exit 1)
and of a damaged backup (exit 2, the problem listed). ``--point-in-time`` takes an ISO
time with its offset, else a usage error (no subprocess: the parser alone).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from server.auth.keys import generate_private_key_pem
from server.core.crypto import generate_data_key
from server.ops.cli import build_parser
from tests.helpers.clock import HANG_SECONDS
from tests.helpers.money import make_plan
from tests.ops.test_cli import GENCHARGE


def _env(private_tmp: Path, pg_url: str, mongo_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENCHARGE_")}
    env.update(
        GENCHARGE_DATABASE_URL=pg_url,
        GENCHARGE_MONGO_URL=mongo_url,
        GENCHARGE_DATA_DIR=str(private_tmp / "data"),
        GENCHARGE_LOG_FORMAT="json",
        GENCHARGE_JWT_PRIVATE_KEY=generate_private_key_pem(),
        GENCHARGE_DATA_ENCRYPTION_KEY=generate_data_key(),
        GENCHARGE_BACKUP_ENCRYPTION_KEY=generate_data_key(),
        GENCHARGE_BACKUP_STORAGE_URL=(private_tmp / "backups").as_uri(),
    )
    return env


async def _plans(resources: Any) -> int:
    async with resources.db.read_only() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM plans"))).scalar_one())


async def test_backup_commands(
    private_tmp: Path, pg_url: str, mongo_url: str, resources: Any
) -> None:
    env = _env(private_tmp, pg_url, mongo_url)

    async def gencharge(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run,
            [GENCHARGE, "backup", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=2 * HANG_SECONDS,  # a bound on a hang only
        )

    created = await gencharge("create", "--description", "from the command line")
    assert created.returncode == 0, created.stderr
    match = re.fullmatch(r"backup (\S+): [\d,]+ bytes at file://\S+\n", created.stdout)
    assert match, created.stdout
    backup_id = match.group(1)
    assert "100% backup completed" in created.stderr  # one progress line per step
    folder = private_tmp / "backups" / backup_id
    assert sorted(p.name for p in folder.iterdir()) == [
        "manifest.json",
        "mongo.bson",
        "postgres.dump",
    ]
    plans_then = await _plans(resources)
    await make_plan(resources, name="added after the backup")

    # Three runs that change nothing, side by side (each start costs a few seconds).
    listed, refused, unknown = await asyncio.gather(
        gencharge("list"), gencharge("restore", backup_id), gencharge("verify", "nope")
    )
    assert listed.returncode == 0, listed.stderr
    line = next(x for x in listed.stdout.splitlines() if x.startswith(backup_id))
    assert "success" in line and "from the command line" in line
    assert refused.returncode == 2  # no --yes
    assert refused.stderr.startswith("refusing: ") and "--yes" in refused.stderr
    assert unknown.returncode == 1
    assert unknown.stderr == "refusing: backup nope not found [BACKUP_NOT_FOUND]\n"

    verified = await gencharge("verify", backup_id)
    assert (verified.returncode, verified.stdout) == (0, f"backup {backup_id}: valid\n")

    drilled = await gencharge("drill")
    assert drilled.returncode == 0, drilled.stderr
    assert drilled.stdout.startswith(f"drill of {backup_id} passed: ")
    assert "drill passed: counts, hashes and ledger match" in drilled.stderr

    checked = await gencharge("restore", backup_id, "--validate-only")
    assert checked.returncode == 0, checked.stderr
    assert await _plans(resources) == plans_then + 1  # nothing changed

    restored = await gencharge("restore", backup_id, "--yes")
    assert restored.returncode == 0, restored.stderr
    assert await _plans(resources) == plans_then  # the backup's data

    dump = folder / "postgres.dump"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0x01
    dump.write_bytes(bytes(data))
    damaged = await gencharge("verify", backup_id)
    assert damaged.returncode == 2
    assert f"backup {backup_id}: INVALID" in damaged.stderr
    problems = [x.strip() for x in damaged.stderr.splitlines() if x.startswith("  ")]
    assert problems and all(f"'{backup_id}/postgres.dump'" in p for p in problems), problems
    assert any(p.startswith("BACKUP_FILE_CORRUPT: ") for p in problems), problems


def test_point_in_time_must_be_an_iso_time_with_an_offset(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["backup", "restore", "b1", "--point-in-time", "2026-12-02T19:30:00+05:30", "--yes"]
    )
    assert args.point_in_time == datetime(2026, 12, 2, 14, 0, tzinfo=UTC)
    for value, says in (("yesterday", "not an ISO 8601 time"), ("2026-12-02T14:00", "no offset")):
        with pytest.raises(SystemExit) as exited:
            parser.parse_args(["backup", "restore", "b1", "--point-in-time", value, "--yes"])
        assert exited.value.code == 2  # a usage error, not a traceback
        assert says in capsys.readouterr().err
