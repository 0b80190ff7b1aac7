"""Running the PostgreSQL tools as asyncio subprocesses (a connection's password in
the environment, never on the command line; a timeout; stderr's tail in errors)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.engine import make_url

from server.backup.errors import BackupError
from server.backup.pgtools import pg_tool
from server.core.config import Settings

#: Bytes of a tool's output kept for an error message.
TAIL_BYTES = 4000


@dataclass(frozen=True)
class Connection:
    """A libpq connection string without the password, and the environment with it."""

    conninfo: str
    env: dict[str, str]
    user: str | None
    database: str | None


def connection(url: str) -> Connection:
    """``url`` (``postgresql://user:pw@host:port/db?sslmode=...``, any driver suffix)
    split into a password-free libpq URI and ``PGPASSWORD``."""
    raw = url.strip()
    if raw.startswith("postgres://"):
        raw = "postgresql://" + raw[len("postgres://") :]
    parsed = make_url(raw)
    env = dict(os.environ)
    env.pop("PGPASSWORD", None)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    libpq = parsed.set(drivername="postgresql", password=None)
    return Connection(
        conninfo=libpq.render_as_string(hide_password=False),
        env=env,
        user=parsed.username,
        database=parsed.database,
    )


def database_url(settings: Settings, url: str | None) -> str:
    chosen = url or settings.database_url
    if not chosen:
        raise BackupError(
            "BACKUP_SOURCE_UNSET",
            "no PostgreSQL URL: pass the embedded server's URL or set GENCHARGE_DATABASE_URL",
        )
    return chosen


def tail(data: bytes) -> str:
    text = data[-TAIL_BYTES:].decode("utf-8", "replace").strip()
    return text


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: bytes
    stderr: bytes


async def run_tool(
    settings: Settings,
    name: str,
    args: Sequence[str],
    *,
    timeout_seconds: float,
    env: dict[str, str] | None = None,
    reason: str,
) -> Ran:
    """Run the PostgreSQL tool ``name``; a timeout kills it and raises ``reason``."""
    proc = await asyncio.create_subprocess_exec(
        str(pg_tool(name, settings)),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout_seconds)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise BackupError(reason, f"{name} did not finish within {timeout_seconds:.0f} s") from None
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Ran(proc.returncode, stdout, stderr)
