"""Starting the service: databases (embedded or configured), migrations, seed, serve."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from multiprocessing.queues import SimpleQueue
from typing import Any

import asyncpg
from pymongo import AsyncMongoClient

from migrations import mongo as mongo_migrations
from server.admin import flows as admin_flows
from server.audit.scope import unit_of_work
from server.core import db, logs, mongo
from server.core.config import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD, ConfigurationError, Settings
from server.core.db import Database
from server.core.resources import Resources
from server.ops import pgmigrate, seed, workers
from server.ops.embedded import EmbeddedMongo, EmbeddedPostgres
from server.ops.scheduler import Scheduler
from server.rpc.app import RunningServer, start_server

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "gencharge"


@dataclass
class Databases:
    """Where the databases are, and the embedded servers we started (if any)."""

    database_url: str
    mongo_url: str
    postgres: EmbeddedPostgres | None = None
    mongo_server: EmbeddedMongo | None = None

    def stop(self) -> None:
        if self.postgres is not None:
            self.postgres.stop()
        if self.mongo_server is not None:
            self.mongo_server.stop()


async def ensure_database(admin_url: str, name: str) -> None:
    """Create database ``name`` if it does not exist (embedded servers only)."""
    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def open_databases(settings: Settings) -> Databases:
    """The configured servers, or embedded ones under ``settings.data_dir``."""
    database_url, mongo_url = settings.database_url, settings.mongo_url
    if settings.production and settings.embedded:
        raise ConfigurationError(
            "production mode needs GENCHARGE_DATABASE_URL and GENCHARGE_MONGO_URL; "
            "the embedded servers are for development and tests only"
        )
    pg_server = mongo_server = None
    try:
        if not database_url:
            pg_server = await asyncio.to_thread(
                EmbeddedPostgres(
                    settings.data_dir / "postgres",
                    wal_archive_dir=settings.backup_wal_archive_dir,
                    summarize_wal=True,
                ).start
            )
            await ensure_database(pg_server.admin_url, EMBEDDED_DATABASE)
            database_url = pg_server.url(EMBEDDED_DATABASE)
        if not mongo_url:
            mongo_server = await asyncio.to_thread(EmbeddedMongo(settings.data_dir / "mongo").start)
            mongo_url = mongo_server.url(settings.mongo_database)
    except BaseException:
        if pg_server is not None:
            pg_server.stop()
        raise
    return Databases(database_url, mongo_url, pg_server, mongo_server)


@contextlib.asynccontextmanager
async def connected(settings: Settings, databases: Databases) -> AsyncIterator[Resources]:
    engine = db.create_engine(
        databases.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
    )
    client: AsyncMongoClient[dict[str, Any]] = mongo.create_client(databases.mongo_url)
    try:
        yield Resources(
            settings=settings,
            db=unit_of_work(engine),
            mongo_db=mongo.get_database(client, databases.mongo_url, settings.mongo_database),
        )
    finally:
        await client.close()
        await engine.dispose()


async def migrate(resources: Resources, database_url: str) -> None:
    await asyncio.to_thread(pgmigrate.upgrade, database_url)
    applied = await mongo_migrations.upgrade(resources.mongo_db)
    log.info("migrations applied", extra={"mongo_steps": applied})


async def load_seed(resources: Resources, *, demo: bool) -> None:
    await seed.load_reference(resources.engine, resources.mongo_db)
    if demo:
        if resources.settings.production:
            raise RuntimeError("demo data is never loaded in production mode")
        await seed.load_demo(resources.engine, resources.mongo_db)


def bootstrap_admin_credentials(settings: Settings, embedded: bool) -> tuple[str, str] | None:
    """The bootstrap admin to ensure, if any.

    Explicit settings win. Otherwise, in development on the embedded PostgreSQL, the
    documented development admin is used; never in production.
    """
    password = settings.bootstrap_admin_password.get_secret_value()
    if settings.bootstrap_admin_email and password:
        return settings.bootstrap_admin_email, password
    if embedded and not settings.production:
        return DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD
    return None


async def ensure_bootstrap_admin(database: Database, settings: Settings, embedded: bool) -> None:
    credentials = bootstrap_admin_credentials(settings, embedded)
    if credentials is None:
        return
    email, password = credentials
    created = await admin_flows.ensure_admin(
        database, email=email, name=settings.bootstrap_admin_name, password=password
    )
    log.info("bootstrap admin ready", extra={"email": email, "new_admin": created})


async def serve(settings: Settings, *, ready: asyncio.Event | None = None) -> None:
    """Run until SIGTERM or SIGINT; then drain and stop everything we started.

    With ``settings.workers`` > 1 this process prepares the databases and supervises
    that many worker processes (server/ops/workers.py) instead of serving itself."""
    workers.check_listen(settings)
    with workers.exclusive_listen(settings):
        await _serve(settings, ready)


async def _serve(settings: Settings, ready: asyncio.Event | None) -> None:
    databases = await open_databases(settings)
    try:
        async with connected(settings, databases) as resources:
            await migrate(resources, databases.database_url)
            await load_seed(resources, demo=settings.demo_data)
            await ensure_bootstrap_admin(resources.db, settings, settings.embedded_postgres)
            if settings.workers == 1:
                running = await serve_with_scheduler(resources, settings.listen)
                await _run_until_signalled(running, settings.shutdown_grace_seconds, ready)
                return
        shared = workers.worker_settings(settings, databases.database_url, databases.mongo_url)
        await workers.supervise(shared, run_worker, ready)
    finally:
        await asyncio.to_thread(databases.stop)
        log.info("stopped")


async def serve_worker(
    settings: Settings, listening: Callable[[], None], supervisor_pid: int
) -> None:
    """One of several workers (server/ops/workers.py): the databases are ready; serve on
    the shared port (calling ``listening`` once it listens) until SIGTERM or SIGINT,
    or until the supervisor is gone (a worker never outlives it)."""
    databases = Databases(settings.database_url, settings.mongo_url)
    async with connected(settings, databases) as resources:
        running = await serve_with_scheduler(resources, settings.listen, reuse_port=True)
        listening()
        stop = asyncio.Event()
        watch = asyncio.create_task(workers.watch_supervisor(supervisor_pid, stop))
        try:
            await _run_until_signalled(running, settings.shutdown_grace_seconds, None, stop)
        finally:
            watch.cancel()
    log.info("worker stopped")


async def serve_with_scheduler(
    resources: Resources, listen: str, *, reuse_port: bool = False
) -> RunningServer:
    """The gRPC server with the background scheduler ticking beside it (stopped with it)."""
    running = await start_server(resources, listen, reuse_port=reuse_port)
    assert running.app is not None
    scheduler = Scheduler(resources, running.app.recharger)
    scheduler.start()
    running.scheduler = scheduler
    return running


async def _run_until_signalled(
    running: RunningServer,
    grace: float,
    ready: asyncio.Event | None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or until ``stop`` is set by someone else)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
        log.info("shutdown requested; draining", extra={"grace_s": grace})
    finally:
        await running.stop(grace)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def run_worker(
    settings: Settings, index: int, serving: SimpleQueue[int], supervisor_pid: int
) -> None:
    """Entry point of a worker process (spawned: a fresh interpreter); puts ``index``
    on ``serving`` once the server listens."""
    logs.configure(settings.log_level, settings.log_format, worker=index)
    # The supervisor's terminal sends SIGINT to the whole process group; the worker's
    # own handler (runtime) drains on it, like on SIGTERM from the supervisor.
    try:
        asyncio.run(serve_worker(settings, lambda: serving.put(index), supervisor_pid))
    except KeyboardInterrupt:
        pass
    except ConfigurationError as exc:  # e.g. the port is taken: say so, no traceback
        log.error("worker cannot start: %s", exc)
        raise SystemExit(2) from None
