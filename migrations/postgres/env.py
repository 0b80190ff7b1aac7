"""Alembic environment for GenCharge's PostgreSQL schema (async, asyncpg).

Driven by :mod:`server.ops.pgmigrate`, which puts the asyncpg URL in
``config.attributes["url"]``. ``asyncio.run`` is used here because callers run
Alembic commands in a worker thread (``asyncio.to_thread``), never on a running loop.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import Connection, MetaData, pool, text
from sqlalchemy.ext.asyncio import create_async_engine

from server.core.dburl import to_async_url

config = context.config

# Serialises concurrent upgrades (e.g. several replicas starting at once).
# Arbitrary constant: ASCII "GCMIGRAT" as a bigint.
MIGRATION_LOCK_KEY = 0x47434D4947524154


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        url = os.environ.get("GENCHARGE_DATABASE_URL")
    if not url:
        raise RuntimeError(
            "no database URL: set config.attributes['url'] or GENCHARGE_DATABASE_URL"
        )
    return to_async_url(str(url))


def _target_metadata() -> MetaData:
    # Only used by `alembic revision --autogenerate`; migrations never import it.
    from server.core.schema import metadata

    return metadata


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=_target_metadata(),
        literal_binds=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    connection.commit()
    try:
        context.configure(
            connection=connection,
            target_metadata=_target_metadata(),
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if connection.in_transaction():
            connection.rollback()
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()


async def run_async_migrations() -> None:
    engine = create_async_engine(_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_async_migrations())
