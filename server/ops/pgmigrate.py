"""Programmatic Alembic driver for the PostgreSQL schema.

No ``alembic.ini`` is needed: the script folder is located next to the installed
``migrations`` package, so this works from a source checkout and from a wheel.

All functions are synchronous (Alembic is); from async code call them through
``asyncio.to_thread(...)``. ``url`` is a plain ``postgresql://user:pw@host:port/db`` URL.
Concurrent ``upgrade()`` calls from several processes (replicas starting at once)
serialise on a PostgreSQL advisory lock taken in ``env.py``; within one process a
lock serialises them too, because Alembic's ``context`` proxy is process-global.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, pool
from sqlalchemy.ext.asyncio import create_async_engine

import migrations
from server.core.dburl import to_async_url

__all__ = ["current", "downgrade", "head", "make_config", "script_location", "upgrade"]

# alembic.context is a module-level proxy: two commands may not run at once in a process.
_command_lock = threading.Lock()


def script_location() -> Path:
    """The Alembic script folder (``migrations/postgres``)."""
    return Path(migrations.__file__).resolve().parent / "postgres"


def make_config(url: str | None = None) -> Config:
    """An Alembic ``Config`` for ``url`` (read by ``env.py`` from ``config.attributes``)."""
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    if url is not None:
        # Passed through attributes, not the ini option: a '%' in a password would be
        # taken for configparser interpolation.
        config.attributes["url"] = to_async_url(url)
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision``."""
    with _command_lock:
        command.upgrade(make_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` (``"base"`` empties it)."""
    with _command_lock:
        command.downgrade(make_config(url), revision)


def head() -> str:
    """The head revision id of the script folder."""
    revision = ScriptDirectory.from_config(make_config()).get_current_head()
    if revision is None:  # pragma: no cover - the folder always has revisions
        raise RuntimeError("no Alembic revisions found")
    return revision


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def _current_async(url: str) -> str | None:
    engine = create_async_engine(to_async_url(url), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_current_revision)
    finally:
        await engine.dispose()


def current(url: str) -> str | None:
    """The revision the database at ``url`` is at, or ``None`` if unmigrated."""
    return asyncio.run(_current_async(url))
