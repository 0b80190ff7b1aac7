"""``gencharge generate-report``: the same generation as GenerateReport, from the shell."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import text

from server.ops.cli import _ProgressBar
from tests.helpers.money import fund

GENCHARGE = str(Path(sys.executable).parent / "gencharge")


async def _run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        GENCHARGE,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_generate_report_command(channel, resources, pg_url, mongo_url, private_tmp) -> None:
    from tests.helpers.auth import register_user

    user = await register_user(channel)
    await fund(resources, user.user_id, "250")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENCHARGE_")}
    env.update(
        GENCHARGE_DATABASE_URL=pg_url,
        GENCHARGE_MONGO_URL=mongo_url,
        GENCHARGE_DATA_DIR=str(private_tmp / "data"),
        GENCHARGE_REPORTS_DIR=str(private_tmp / "reports"),
        GENCHARGE_LOG_FORMAT="text",
    )
    output = private_tmp / "out.xlsx"
    code, out, err = await _run(
        env,
        "generate-report",
        "--type",
        "transactions",
        "--format",
        "xlsx",
        "--output",
        str(output),
    )
    assert code == 0, err
    assert "1/1 rows (100%)" in err  # not a terminal: the final line only
    document = await resources.mongo_db["ReportsLogs"].find_one({})
    assert document["format"] == "excel" and "generated_by" not in document
    assert document["details"]["generated_by"] == "system:cli"
    assert document["details"]["row_count"] == 1
    data = output.read_bytes()
    assert hashlib.sha256(data).hexdigest() == document["details"]["sha256"]
    assert f"sha256 {document['details']['sha256']}" in out
    async with resources.db.read_only() as conn:
        rpc = (
            await conn.execute(
                text(
                    "SELECT event->>'rpc' FROM audit_outbox"
                    " WHERE event->>'table_name' = 'ReportsLogs'"
                )
            )
        ).scalar_one_or_none()
    shipped = await resources.mongo_db["AuditLog"].find_one({"table_name": "ReportsLogs"})
    assert (rpc or (shipped or {}).get("rpc")) == "cli/generate-report"

    code, _, err = await _run(
        env, "generate-report", "--type", "nope", "--format", "csv", "--output", str(output)
    )
    assert code == 2 and "unknown report type" in err
    code, _, err = await _run(
        env,
        "generate-report",
        "--type",
        "2",
        "--format",
        "csv",
        "--from",
        "2025-02-01",
        "--to",
        "2025-01-01",
        "--output",
        str(output),
    )
    assert code == 2 and "parameters.from" in err


def test_progress_bar_lines() -> None:
    class Tty:
        def __init__(self) -> None:
            self.text = ""

        def isatty(self) -> bool:
            return True

        def write(self, value: str) -> int:
            self.text += value
            return len(value)

        def flush(self) -> None:
            pass

    stream: Any = Tty()
    bar = _ProgressBar(200, stream)
    bar(50)
    assert "[#######-----------------------] 50/200 rows (25%)" in stream.text
    bar.done(200)
    assert stream.text.endswith("[##############################] 200/200 rows (100%)\n")
    assert _ProgressBar(None, stream).line(1234) == "1,234 rows written"
