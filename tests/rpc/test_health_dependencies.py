"""Health follows what each service needs (server/rpc/health.py, docs/operations.md).

The overall status and the money path follow PostgreSQL only: a MongoDB outage leaves
them SERVING (audit events wait in the outbox), marks ``gencharge.dependency.mongodb``
and the services that need MongoDB NOT_SERVING, and is logged once. Waits are on the
monitor's probe counts, never on time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from pymongo import AsyncMongoClient
from sqlalchemy import func, select

from server.audit.scope import unit_of_work
from server.auth.keys import generate_private_key_pem
from server.core import db, mongo
from server.core.config import Settings
from server.core.crypto import generate_data_key
from server.core.resources import Resources
from server.core.schema import audit_outbox
from server.ops.embedded import EmbeddedMongo, free_port
from server.rpc.app import RunningServer, start_server
from server.rpc.health import HealthMonitor
from tests.helpers.auth import register_user
from tests.helpers.clock import HANG_SECONDS, eventually

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

OVERALL = ""
LIVENESS = "gencharge.liveness"
PG = "gencharge.dependency.postgresql"
MONGO = "gencharge.dependency.mongodb"
#: Services that need only PostgreSQL (the money path among them).
POSTGRES_ONLY = [
    "gencharge.v1.AuthService",
    "gencharge.v1.WalletService",
    "gencharge.v1.PlanService",
    "gencharge.v1.RechargeService",
    "gencharge.v1.NotificationService",
    "gencharge.v1.AdminService",
]
#: Services whose own data lives in MongoDB.
NEED_MONGO = ["gencharge.v1.ContentService", "gencharge.v1.BackupService"]


@pytest.fixture
async def own_mongo(private_tmp: Path) -> AsyncIterator[EmbeddedMongo]:
    server = await asyncio.to_thread(EmbeddedMongo(private_tmp / "mongo").start)
    yield server
    await asyncio.to_thread(server.stop)


@pytest.fixture
def health_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="server.rpc.health")
    return caplog


def _lines(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "server.rpc.health" and r.getMessage() == message
    ]


class Server:
    """A real server over ``pg_url`` and ``mongo_url``; MongoDB server selection gives up
    after half a second, so a probe of a stopped MongoDB fails promptly (it is refused
    either way: the bound decides only how soon the test sees it)."""

    def __init__(self, pg_url: str, mongo_url: str, data_dir: Path) -> None:
        self.settings = Settings(
            database_url=pg_url,
            mongo_url=mongo_url,
            listen="127.0.0.1:0",
            load_demo_data=False,
            data_dir=data_dir,
            jwt_private_key=generate_private_key_pem(),
            data_encryption_key=generate_data_key(),
        )
        self.engine = db.create_engine(pg_url, pool_size=2)
        self.client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            mongo_url, tz_aware=True, serverSelectionTimeoutMS=500
        )
        self.resources = Resources(
            self.settings,
            unit_of_work(self.engine),
            mongo.get_database(self.client, mongo_url, "gencharge"),
        )
        self.running: RunningServer | None = None
        self.channel: grpc.aio.Channel | None = None

    async def __aenter__(self) -> Server:
        # A generous probe bound: a slow ping on a busy machine is not an outage.
        self.running = await start_server(
            self.resources, "127.0.0.1:0", health_interval=0.1, health_timeout=HANG_SECONDS
        )
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.running.port}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self.running is not None:
            await self.running.stop(0)
        await self.client.close()
        await self.engine.dispose()

    @property
    def monitor(self) -> HealthMonitor:
        assert self.running is not None and self.running.health_monitor is not None
        return self.running.health_monitor

    async def status(self, name: str) -> int:
        assert self.channel is not None
        stub = health_pb2_grpc.HealthStub(self.channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=name))
        return int(reply.status)

    async def statuses(self) -> dict[str, int]:
        names = [LIVENESS, OVERALL, PG, MONGO, *POSTGRES_ONLY, *NEED_MONGO]
        return {name: await self.status(name) for name in names}

    async def wait_for(self, name: str, wanted: int) -> None:
        async def reached() -> bool:
            return await self.status(name) == wanted

        assert await eventually(reached, every=0.05), f"{name!r} never became {wanted}"

    async def wait_for_probes(self, dependency: str, more: int) -> None:
        """Until ``more`` further probes of ``dependency`` have completed."""
        target = self.monitor.probes[dependency] + more

        async def probed() -> bool:
            return self.monitor.probes[dependency] >= target

        assert await eventually(probed, every=0.02), f"{dependency} was not probed"


def _expect(serving: list[str], not_serving: list[str]) -> dict[str, int]:
    return {**dict.fromkeys(serving, SERVING), **dict.fromkeys(not_serving, NOT_SERVING)}


async def test_mongo_outage_keeps_the_money_path_serving(
    pg_url: str, own_mongo: EmbeddedMongo, private_tmp: Path, health_logs: Any
) -> None:
    async with Server(pg_url, own_mongo.url("gencharge"), private_tmp) as server:
        await server.wait_for(OVERALL, SERVING)
        await server.wait_for(MONGO, SERVING)
        assert await server.statuses() == _expect(
            [LIVENESS, OVERALL, PG, MONGO, *POSTGRES_ONLY, *NEED_MONGO], []
        )

        await asyncio.to_thread(own_mongo.stop)
        await server.wait_for(MONGO, NOT_SERVING)
        await server.wait_for_probes("mongodb", 3)  # several failed probes, one log line
        assert await server.statuses() == _expect(
            [LIVENESS, OVERALL, PG, *POSTGRES_ONLY], [MONGO, *NEED_MONGO]
        )
        # The money path works: a registration commits, its audit event waits.
        assert server.channel is not None
        await register_user(server.channel)
        async with server.engine.connect() as conn:
            waiting = (await conn.execute(select(func.count()).select_from(audit_outbox))).scalar()
        assert waiting

        await asyncio.to_thread(own_mongo.start)  # same port, same data folder
        await server.wait_for(MONGO, SERVING)
        assert await server.statuses() == _expect(
            [LIVENESS, OVERALL, PG, MONGO, *POSTGRES_ONLY, *NEED_MONGO], []
        )

    down = _lines(health_logs, "dependency unavailable")
    assert [r.__dict__["dependency"] for r in down] == ["mongodb"], "one line per outage"
    up = _lines(health_logs, "dependency available")
    assert sorted((r.__dict__["dependency"], r.__dict__["after_outage"]) for r in up) == [
        ("mongodb", False),
        ("mongodb", True),
        ("postgresql", False),
    ]
    changes = _lines(health_logs, "health changed")
    assert not any('""' in r.__dict__["not_serving"] for r in changes), "never pulled out"


async def test_postgresql_down_means_not_serving(
    mongo_url: str, private_tmp: Path, health_logs: Any
) -> None:
    """Nothing works without PostgreSQL: everything but the MongoDB dependency stays
    NOT_SERVING, however many probes run."""
    pg_url = f"postgresql://postgres@127.0.0.1:{free_port()}/gencharge"
    async with Server(pg_url, mongo_url, private_tmp) as server:
        await server.wait_for(MONGO, SERVING)
        await server.wait_for_probes("postgresql", 3)
        assert await server.statuses() == _expect(
            [LIVENESS, MONGO], [OVERALL, PG, *POSTGRES_ONLY, *NEED_MONGO]
        )
    down = _lines(health_logs, "dependency unavailable")
    assert [r.__dict__["dependency"] for r in down] == ["postgresql"]


async def test_mongo_unreachable_from_the_start(pg_url: str, private_tmp: Path) -> None:
    """MongoDB never answered: the server still serves what needs only PostgreSQL."""
    mongo_url = f"mongodb://127.0.0.1:{free_port()}/gencharge?directConnection=true"
    async with Server(pg_url, mongo_url, private_tmp) as server:
        await server.wait_for(OVERALL, SERVING)
        await server.wait_for_probes("mongodb", 2)
        assert await server.statuses() == _expect(
            [LIVENESS, OVERALL, PG, *POSTGRES_ONLY], [MONGO, *NEED_MONGO]
        )


async def test_everything_not_serving_before_the_first_probe(
    pg_url: str, mongo_url: str, private_tmp: Path
) -> None:
    server = Server(pg_url, mongo_url, private_tmp)
    stopping = asyncio.Event()
    stopping.set()  # a monitor that never probes on its own
    health = health_aio.HealthServicer()
    monitor = HealthMonitor(
        health,
        pings={"postgresql": lambda: db.ping(server.engine), "mongodb": _never_answers},
        services={
            "a.Pg": frozenset({"postgresql"}),
            "a.Both": frozenset({"postgresql", "mongodb"}),
        },
        interval=HANG_SECONDS,
        probe_limit=HANG_SECONDS,
        stopping=stopping,
    )
    try:
        await monitor.initialise()
        assert {n: monitor.status_of(n) for n in monitor.names} == _expect(
            [LIVENESS], ["", "a.Pg", "a.Both", PG, MONGO]
        )
        assert await monitor.probe("postgresql")
        assert {n: monitor.status_of(n) for n in monitor.names} == _expect(
            [LIVENESS, "", "a.Pg", PG], ["a.Both", MONGO]
        )
        await monitor.run()  # stopping is set: returns at once, probes nothing
        assert monitor.probes == {"postgresql": 1, "mongodb": 0}
    finally:
        await server.client.close()
        await server.engine.dispose()


async def _never_answers() -> None:
    raise ConnectionRefusedError("not probed in this test")


async def test_a_service_needing_an_unknown_dependency_is_refused() -> None:
    with pytest.raises(ValueError, match="redis"):
        HealthMonitor(
            health_aio.HealthServicer(),
            pings={"postgresql": _never_answers},
            services={"a.B": frozenset({"redis"})},
            interval=1,
            probe_limit=1,
            stopping=asyncio.Event(),
        )
