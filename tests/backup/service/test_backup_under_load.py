"""Backup under load, restore, and compare (issue #10), through the real server.

While several callers recharge wallets (a service account, RechargeService/Recharge)
and customers top up (WalletService/TopUp), an admin takes a backup with CreateBackup.
The backup's PostgreSQL snapshot must fall strictly inside the load: the test parks
the job right after it exported its snapshot (it holds an ACCESS EXCLUSIVE lock on
``usersarchive``, a table the load never touches, so the job's per-table scan waits
there) and lets more recharges commit before letting it go. Counters and events, no
sleeps:

- ledger rows before the call < the manifest's ``transactions`` rows < ledger rows
  after the backup (a consistent snapshot, neither before the load nor torn);
- the restore drill (scratch databases) passes: every count and hash equals the
  manifest, each wallet equals its ledger;
- RestoreBackup into the live databases after the load: the ledger invariant holds and
  ``transactions`` is exactly the manifest's rows (count and hash).

Randomized (which customer each call serves): the seed is printed; replay with
``GENCHARGE_TEST_SEED=<seed>``.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from typing import Any

import grpc
from sqlalchemy import text

from gencharge.v1 import backup_service_pb2 as pb
from gencharge.v1 import common_pb2, recharge_service_pb2_grpc, wallet_service_pb2_grpc
from gencharge.v1 import recharge_service_pb2 as recharge_pb
from gencharge.v1 import transaction_pb2 as txn_pb
from gencharge.v1 import wallet_service_pb2 as wallet_pb
from server.auth.scopes import RECHARGES_WRITE
from server.backup.context import JobContext, ignore
from server.backup.drill_job import run_drill
from server.backup.dumps import checks
from server.backup.manifest import read_manifest
from tests.backup.service.helpers import Stub
from tests.helpers.auth import Actor, create_service, register_user
from tests.helpers.clock import HANG_SECONDS, eventually
from tests.helpers.money import assert_ledger_balances, fund, make_plan

CUSTOMERS = 6
RECHARGE_CALLERS = 4
TOP_UP_CALLERS = 2
#: Ledger-writing calls that must complete before the snapshot, and after it while the
#: job is parked. Of the calls completing after a point, at most one per caller started
#: before it, so at least ``MARGIN`` ledger rows were committed after it.
CALLS_EACH_SIDE = 20
MARGIN = CALLS_EACH_SIDE - RECHARGE_CALLERS - TOP_UP_CALLERS
#: The table the test locks to park the backup after its snapshot (never written by
#: recharges or top-ups; only the admin's account deletion archives into it).
PARKING_TABLE = "usersarchive"


class Load:
    """Ledger-writing calls in the background, counted as they complete."""

    def __init__(
        self, channel: grpc.aio.Channel, service: Actor, customers: list[Actor], plan_id: int
    ) -> None:
        self.seed = int(os.environ.get("GENCHARGE_TEST_SEED", random.randrange(2**32)))
        print(f"seed={self.seed}")
        self.rng = random.Random(self.seed)
        self.recharge = recharge_service_pb2_grpc.RechargeServiceStub(channel)
        self.wallet = wallet_service_pb2_grpc.WalletServiceStub(channel)
        self.service, self.customers, self.plan_id = service, customers, plan_id
        self.done = {"recharge": 0, "top_up": 0}
        self.errors: list[BaseException] = []
        self._changed = asyncio.Condition()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def calls(self) -> int:
        return sum(self.done.values())

    async def _one_recharge(self) -> None:
        customer = self.rng.choice(self.customers)
        reply = await self.recharge.Recharge(
            recharge_pb.RechargeRequest(
                request_id=uuid.uuid4().hex, plan_id=self.plan_id, user_id=customer.user_id
            ),
            metadata=self.service.metadata,
        )
        assert reply.transaction.status == txn_pb.TRANSACTION_STATUS_SUCCESS, reply

    async def _one_top_up(self) -> None:
        customer = self.rng.choice(self.customers)
        reply = await self.wallet.TopUp(
            wallet_pb.TopUpRequest(
                request_id=uuid.uuid4().hex,
                amount=common_pb2.Money(
                    units_minor=self.rng.randint(100, 5_000), currency_code="INR"
                ),
                payment_method=common_pb2.PAYMENT_METHOD_UPI,
                payment_details=common_pb2.PaymentDetails(
                    upi=common_pb2.UpiPayment(vpa="customer@okbank")
                ),
            ),
            metadata=customer.metadata,
        )
        assert reply.transaction.status == txn_pb.TRANSACTION_STATUS_SUCCESS, reply

    async def _caller(self, kind: str) -> None:
        call = self._one_recharge if kind == "recharge" else self._one_top_up
        while not self._stop.is_set():
            try:
                await call()
            except BaseException as exc:
                self.errors.append(exc)
                async with self._changed:
                    self._changed.notify_all()
                raise
            async with self._changed:
                self.done[kind] += 1
                self._changed.notify_all()

    def start(self) -> None:
        kinds = ["recharge"] * RECHARGE_CALLERS + ["top_up"] * TOP_UP_CALLERS
        self._tasks = [asyncio.create_task(self._caller(kind)) for kind in kinds]

    async def advance(self, calls: int) -> None:
        """Wait until ``calls`` more calls have completed (committed) from now."""
        target = self.calls + calls
        async with asyncio.timeout(HANG_SECONDS), self._changed:
            await self._changed.wait_for(lambda: self.calls >= target or bool(self.errors))
        assert not self.errors, self.errors

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        assert not self.errors, self.errors


async def _count(resources: Any, table: str) -> int:
    async with resources.db.read_only() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


async def _parked(resources: Any) -> bool:
    """The backup job's stats scan is waiting for the parking table (its snapshot is
    exported by then: the scan runs inside it)."""
    async with resources.db.read_only() as conn:
        waiting = await conn.execute(
            text(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE NOT l.granted AND l.relation = CAST(:t AS regclass) "
                "AND a.query LIKE '%hashtextextended%'"
            ),
            {"t": PARKING_TABLE},
        )
        return int(waiting.scalar_one()) > 0


async def test_backup_under_load_restores_to_its_manifest(
    stub: Stub, admin: Actor, channel: grpc.aio.Channel, resources: Any
) -> None:
    customers = [await register_user(channel) for _ in range(CUSTOMERS)]
    for customer in customers:
        await fund(resources, customer.user_id, "1000.00")
    plan_id = await make_plan(resources, price="1.00", validity=1)
    service = await create_service(channel, resources, [RECHARGES_WRITE])
    load = Load(channel, service, customers, plan_id)
    load.start()
    try:
        await load.advance(CALLS_EACH_SIDE)
        before = await _count(resources, "transactions")
        await load.advance(CALLS_EACH_SIDE)  # committed before the call: in the snapshot

        # Park the job after its snapshot; more calls commit; let it go.
        async with resources.engine.connect() as parking:
            await parking.begin()
            await parking.execute(text(f"LOCK TABLE {PARKING_TABLE} IN ACCESS EXCLUSIVE MODE"))

            async def backup() -> list[pb.BackupProgress]:
                stream = stub.CreateBackup(
                    pb.CreateBackupRequest(description="under load"), metadata=admin.metadata
                )
                return [message async for message in stream]

            job = asyncio.create_task(backup())
            parked = await eventually(lambda: _parked(resources), every=0.05)
            assert parked, "the backup job never reached its per-table scan"
            assert not job.done()
            during_from = load.calls
            await load.advance(CALLS_EACH_SIDE)  # committed after the snapshot
            while_parked = load.calls - during_from
            await parking.rollback()
        async with asyncio.timeout(10 * HANG_SECONDS):
            progress = await job
        after = await _count(resources, "transactions")
    finally:
        await load.stop()
    assert progress[-1].status == pb.JOB_STATUS_COMPLETED, progress[-1]
    backup = progress[-1].backup
    assert backup.backup_status == pb.BACKUP_STATUS_SUCCESS
    assert load.done["recharge"] > 0 and load.done["top_up"] > 0

    # The manifest: a consistent snapshot strictly inside the load.
    ctx = JobContext.build(resources)
    manifest = await read_manifest(ctx.storage, backup.backup_id, ctx.keys)
    pg_file = next(f for f in manifest.files if f.database == "postgres")
    in_backup = pg_file.rows["transactions"]
    print(
        f"load: {load.done} calls, {while_parked} while the job was parked; ledger rows: "
        f"{before} before the backup, {in_backup} in it, {after} after it"
    )
    assert before < in_backup < after, (before, in_backup, after)
    assert before + MARGIN <= in_backup <= after - MARGIN

    # The drill restores it into scratch databases and finds it equal to the manifest.
    result = await run_drill(ctx, ignore, backup_id=backup.backup_id)
    assert result.ok, result.problems
    assert result.backup.backup_id == backup.backup_id
    assert result.tables == len(pg_file.rows) and result.collections > 0
    assert result.wallets >= CUSTOMERS

    # Restore into the live databases (the load has stopped): the data is the backup's.
    restored = [
        message
        async for message in stub.RestoreBackup(
            pb.RestoreBackupRequest(backup_id=backup.backup_id), metadata=admin.metadata
        )
    ]
    assert restored[-1].status == pb.JOB_STATUS_COMPLETED, restored[-1]
    await assert_ledger_balances(resources)
    assert await _count(resources, "transactions") == in_backup < after
    async with resources.db.read_only() as conn:
        live = await checks.postgres_stats(conn, ["transactions", "users", "recharges"])
    for table in live.rows:
        assert live.rows[table] == pg_file.rows[table], table
        assert live.hashes[table] == pg_file.hashes[table], table
