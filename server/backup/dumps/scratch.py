"""Scratch databases for restore drills and verification: an empty PostgreSQL database
and a MongoDB database on the live servers, dropped afterwards (even on error).

Both are named ``gencharge_scratch_<16 hex>``; nothing here ever creates, changes or
drops a database of another name, so the live databases are never touched. The
PostgreSQL one is created through a connection with ``settings.database_url`` (its
role needs ``CREATEDB``; with the embedded server it is the superuser) and starts as
a copy of ``template1``.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from sqlalchemy.engine import make_url

from server.backup.dumps import queries
from server.backup.errors import BackupError
from server.backup.tools import connection
from server.core.config import Settings

log = logging.getLogger(__name__)

SCRATCH_PREFIX: Final = "gencharge_scratch_"


@dataclass
class ScratchDatabases:
    """The scratch PostgreSQL database (its URL and name) and MongoDB database."""

    pg_url: str
    pg_name: str
    mongo_db: AsyncDatabase[Any]


def scratch_name() -> str:
    return SCRATCH_PREFIX + secrets.token_hex(8)


def _url_for(url: str, database: str) -> str:
    raw = url.strip()
    if raw.startswith("postgres://"):
        raw = "postgresql://" + raw[len("postgres://") :]
    return make_url(raw).set(database=database).render_as_string(hide_password=False)


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def scratch_databases(
    settings: Settings, mongo_client: AsyncMongoClient[Any]
) -> AsyncIterator[ScratchDatabases]:
    """``async with scratch_databases(settings, client) as s:`` an empty PostgreSQL
    database ``s.pg_url`` and a MongoDB database ``s.mongo_db``, both dropped at the end."""
    connection(settings.database_url)  # refuses an empty URL before anything is created
    name = scratch_name()
    assert name.startswith(SCRATCH_PREFIX)
    admin_url = settings.database_url
    try:
        await _admin(admin_url, queries.create_database_sql(name))
    except (asyncpg.PostgresError, OSError) as exc:
        raise BackupError(
            "BACKUP_SCRATCH_FAILED", f"cannot create a scratch PostgreSQL database: {exc}"
        ) from exc
    try:
        yield ScratchDatabases(_url_for(settings.database_url, name), name, mongo_client[name])
    finally:
        try:
            await mongo_client.drop_database(name)
        finally:
            try:
                await _admin(admin_url, queries.drop_database_sql(name))
            except (asyncpg.PostgresError, OSError):
                log.warning("scratch database not dropped", extra={"database": name}, exc_info=True)
