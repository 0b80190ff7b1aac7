"""PostgreSQL access: the async engine and the unit of work (SQLAlchemy 2 + asyncpg).

Who opens a transaction: domain functions never do. They take the connection they work
on as the keyword argument ``conn``; the servicer (for one transaction) or a flow (for
work that spans several transactions or calls an outside system) opens it with
:class:`Database`, the one unit-of-work helper::

    async with resources.db.transaction() as conn:
        wallet = await domain.get_wallet(who, conn=conn)

``Database.transaction`` runs the ``before_commit`` hook it was built with just before
the commit: the application builds it with the audit scope's flush
(server/audit/scope.py ``unit_of_work``), so a call's audit event commits with its
change. This module imports nothing of the domains.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util import greenlet_spawn

from server.core.dburl import to_async_url

#: Seconds a caller waits for a pooled connection before the call fails (UNAVAILABLE).
DEFAULT_POOL_TIMEOUT_SECONDS = 10.0


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 10,
    pool_timeout: float = DEFAULT_POOL_TIMEOUT_SECONDS,
) -> AsyncEngine:
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
        # Errors and echo never carry bound parameters: e-mails, phone numbers, password
        # hashes and tokens are values of statements, and errors get logged.
        hide_parameters=True,
        # A busy pool answers UNAVAILABLE after this many seconds instead of queueing on.
        pool_timeout=pool_timeout,
        connect_args={
            "server_settings": {"application_name": "gencharge"},
            "timeout": 5,  # connecting
            "command_timeout": 60,  # any one statement
        },
    )


#: SQLSTATE classes of a connection that is gone or going (08: connection exception,
#: 57: operator intervention, such as a server shutting down).
_CONNECTION_LOST = ("08", "57")


@asynccontextmanager
async def _driver(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection's asyncpg connection, outside any transaction (each
    statement commits on its own). asyncpg prepares every statement once per connection
    and keeps it (its statement cache), so a hot statement is parsed and planned once.
    The pool's checkout without an ``AsyncConnection`` around it costs about 30 µs
    less per call (a micro-benchmark on the 2-core development machine). Errors are
    raised as SQLAlchemy's, as on every other path: a lost connection is an
    ``OperationalError`` (the caller answers UNAVAILABLE) and is not pooled again; a
    statement's error is a ``DBAPIError`` carrying asyncpg's (``.orig.sqlstate``)."""
    pooled = await engine.raw_connection()
    try:
        yield pooled.driver_connection
    except asyncpg.PostgresError as exc:
        if str(exc.sqlstate or "")[:2] in _CONNECTION_LOST:
            await greenlet_spawn(pooled.invalidate, exc)
            raise sa_exc.OperationalError(None, None, exc) from exc
        raise sa_exc.DBAPIError(None, None, exc) from exc
    except (asyncpg.InterfaceError, ConnectionError) as exc:
        await greenlet_spawn(pooled.invalidate, exc)
        raise sa_exc.OperationalError(None, None, exc) from exc
    finally:
        # Back to the pool (which may close it: async work, hence in a greenlet).
        await greenlet_spawn(pooled.close)


@asynccontextmanager
async def _read_only(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for reads; the implicit transaction is rolled back at the end."""
    async with engine.connect() as conn:
        yield conn


#: Runs on the transaction's connection just before it commits (e.g. the audit flush).
BeforeCommit = Callable[[AsyncConnection], Awaitable[None]]


@asynccontextmanager
async def _transaction(
    engine: AsyncEngine, before_commit: BeforeCommit | None
) -> AsyncIterator[AsyncConnection]:
    async with engine.begin() as conn:
        yield conn
        if before_commit is not None:
            await before_commit(conn)


@dataclass(frozen=True)
class Database:
    """The unit of work: the engine and what every transaction does before it commits."""

    engine: AsyncEngine
    before_commit: BeforeCommit | None = None

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """One transaction: ``before_commit`` then commit on success, rollback on any
        exception."""
        return _transaction(self.engine, self.before_commit)

    def side_transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A transaction for bookkeeping that is not the call's change (brute-force
        counters, claiming an idempotency key before a gateway call): no hook."""
        return _transaction(self.engine, None)

    def driver(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        """The driver's connection, in autocommit, for the hot paths that are one
        prepared statement (server/recharge/queries.py): no SQLAlchemy in between, no
        BEGIN/COMMIT round trips. ``before_commit`` does not run: such a statement
        writes its audit event itself."""
        return _driver(self.engine)

    def read_only(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection for reads; its implicit transaction is rolled back at the end."""
        return _read_only(self.engine)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
