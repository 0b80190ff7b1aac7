"""Running the PostgreSQL tools (pg_dump, pg_restore, pg_basebackup, ...) as asyncio
subprocesses, for the logical dumps (server/backup/dumps) and the physical backups
(server/backup/physical) alike: a connection's password in the environment, never on
the command line; a timeout that kills the tool; stderr's tail in errors, never the URL.
"""

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
TAIL_BYTES = 2000


@dataclass(frozen=True)
class Connection:
    """A libpq connection string without the password, and the environment with it."""

    conninfo: str
    env: dict[str, str]
    user: str | None
    database: str | None


def connection(url: str) -> Connection:
    """``url`` (``postgresql://user:pw@host:port/db?sslmode=...``, any driver suffix)
    split into a password-free libpq URI and an environment holding the password.

    The URL says everything: the environment keeps no other ``PG*`` variable, so a
    ``PGHOST`` or ``PGDATABASE`` of the server's own environment never redirects a
    tool. An empty URL is refused (``BACKUP_DATABASE_URL_MISSING``)."""
    if not url:
        raise BackupError(
            "BACKUP_DATABASE_URL_MISSING",
            "no database URL: pass settings whose database_url is the running database's",
        )
    raw = url.strip()
    if raw.startswith("postgres://"):
        raw = "postgresql://" + raw[len("postgres://") :]
    parsed = make_url(raw)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
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


def tail(data: bytes | str) -> str:
    """The end of a tool's output, for an error message."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return text.strip()[-TAIL_BYTES:]


async def kill(proc: asyncio.subprocess.Process) -> None:
    """Stop a tool that is still running and reap it."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(Exception):
            await proc.wait()


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
    check: bool = False,
) -> Ran:
    """Run the PostgreSQL tool ``name`` to its end; a timeout kills it and raises
    ``reason``, and so does an exit code other than 0 with ``check`` (else the caller
    judges it)."""
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
        await kill(proc)
        raise BackupError(
            reason, f"{name} took more than {timeout_seconds:g} s and was stopped"
        ) from None
    except BaseException:
        await kill(proc)
        raise
    assert proc.returncode is not None
    if check and proc.returncode != 0:
        raise BackupError(reason, f"{name} failed (exit {proc.returncode}): {tail(stderr)}")
    return Ran(proc.returncode, stdout, stderr)
