"""PostgreSQL access: the async engine and transactions (SQLAlchemy 2 + asyncpg)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from server.audit import scope as audit_scope
from server.dburl import to_async_url


def create_engine(url: str, *, pool_size: int = 10, max_overflow: int = 10) -> AsyncEngine:
    """An async engine for a ``postgresql://`` URL, with a connection pool.

    asyncpg prepares every statement and SQLAlchemy caches the prepared statements per
    connection, so repeated Core statements skip parsing and planning.
    """
    return create_async_engine(
        to_async_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=False,
        pool_recycle=1800,
        # A busy pool answers UNAVAILABLE after this many seconds instead of queueing on.
        pool_timeout=10,
        connect_args={
            "server_settings": {"application_name": "gencharge"},
            "timeout": 5,  # connecting
            "command_timeout": 60,  # any one statement
        },
    )


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One database transaction: commits on success, rolls back on any exception.

    Inside an RPC, the audit event the call named (server.audit.scope) is written to
    the outbox in this transaction, just before the commit.
    """
    async with engine.begin() as conn:
        yield conn
        await audit_scope.flush(conn)


@asynccontextmanager
async def side_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction for bookkeeping that is not the call's change (e.g. brute-force
    counters): it never carries the call's audit event."""
    async with engine.begin() as conn:
        yield conn


@asynccontextmanager
async def read_only(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for reads; the implicit transaction is rolled back at the end."""
    async with engine.connect() as conn:
        yield conn


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
