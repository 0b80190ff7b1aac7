"""Audit outbox and relay against real PostgreSQL and SecantusDB (docs/audit.md)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import WriteError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from migrations import mongo as mongo_migrations
from server.audit import queries
from server.audit.outbox import AuditEvent, record, record_standalone
from server.audit.relay import AuditRelay, AuditShipError, to_document
from server.core import db, mongo
from server.core.schema import audit_outbox
from server.ops.embedded import EmbeddedMongo, EmbeddedPostgres
from tests.helpers.clock import HANG_SECONDS, eventually

Document = dict[str, Any]


@pytest.fixture
async def engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    eng = db.create_engine(pg_url, pool_size=5)
    yield eng
    await eng.dispose()


@pytest.fixture
async def mongo_db(mongo_url: str) -> AsyncIterator[AsyncDatabase[Document]]:
    client = mongo.create_client(mongo_url)
    yield mongo.get_database(client, mongo_url, "gencharge")
    await client.close()


def _event(n: int = 0, **changes: Any) -> AuditEvent:
    fields: dict[str, Any] = {
        "actor": "user:12",
        "table_name": "users",
        "action_type": "UPDATE",
        "details": {"user_id": 12, "n": n},
        "rpc": "/gencharge.v1.AuthService/UpdateMe",
        "request_id": f"req-{n}",
    }
    return AuditEvent(**(fields | changes))


async def _record_many(engine: AsyncEngine, count: int) -> None:
    async with db.Database(engine).transaction() as conn:
        for n in range(count):
            await record(conn, _event(n))


async def _audit_docs(mongo_db: AsyncDatabase[Document]) -> list[Document]:
    return await mongo_db.AuditLog.find({}, {"_id": 0}).sort("audit_id", 1).to_list()


async def _assert_each_event_once(mongo_db: AsyncDatabase[Document], count: int) -> None:
    docs = await _audit_docs(mongo_db)
    assert len(docs) == count
    assert len({d["audit_id"] for d in docs}) == count
    assert sorted(d["request_id"] for d in docs) == sorted(f"req-{n}" for n in range(count))


# ------------------------------------------------------------------- redaction


async def test_committed_event_ships_once_with_redacted_details(
    engine: AsyncEngine, mongo_db: AsyncDatabase[Document]
) -> None:
    occurred = datetime(2026, 11, 2, 8, 0, 0, 123000, tzinfo=UTC)
    async with db.Database(engine).transaction() as conn:
        await record(
            conn,
            AuditEvent(
                actor="user:12",
                table_name="users",
                action_type="UPDATE",
                details={
                    "fields": ["name"],
                    "password": "hunter2",
                    "nested": {"otp_code": "123456", "plan_id": 3},
                    "amount": Decimal("10.50"),
                    "raw": b"bytes",
                },
                rpc="/gencharge.v1.AuthService/UpdateMe",
                request_id="req-1",
                peer="ipv4:127.0.0.1:5555",
                occurred_at=occurred,
            ),
        )
    relay = AuditRelay(engine, mongo_db)
    assert await relay.backlog() == 1
    assert await relay.ship_once() == 1
    assert await relay.ship_once() == 0
    assert await relay.backlog() == 0
    docs = await _audit_docs(mongo_db)
    assert len(docs) == 1
    doc = docs[0]
    assert doc == {
        "audit_id": doc["audit_id"],
        "user_id": "user:12",
        "table_name": "users",
        "action_type": "UPDATE",
        "details": {
            "fields": ["name"],
            "password": "[REDACTED]",
            "nested": {"otp_code": "[REDACTED]", "plan_id": 3},
            "amount": "10.50",
        },
        "created_at": doc["created_at"],
        "rpc": "/gencharge.v1.AuthService/UpdateMe",
        "request_id": "req-1",
        "outcome": "ok",
        "peer": "ipv4:127.0.0.1:5555",
        "customer_id": 12,  # the acting customer (server/audit/outbox.py customer_of)
    }
    assert UUID(doc["audit_id"]).version == 4  # the event id PostgreSQL drew (migration 0010)
    assert doc["created_at"] == occurred  # BSON dates keep milliseconds


async def test_the_outbox_row_never_holds_a_secret(engine: AsyncEngine) -> None:
    async with db.Database(engine).transaction() as conn:
        await record(conn, _event(details={"password": "hunter2", "token": "t"}))
        row = (await conn.execute(select(audit_outbox.c.event))).scalar_one()
    assert "hunter2" not in str(row)
    assert row["details"] == {"password": "[REDACTED]", "token": "[REDACTED]"}


async def test_rolled_back_transaction_ships_nothing(
    engine: AsyncEngine, mongo_db: AsyncDatabase[Document]
) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with db.Database(engine).transaction() as conn:
            await record(conn, _event())
            raise Boom
    relay = AuditRelay(engine, mongo_db)
    assert await relay.backlog() == 0
    assert await relay.ship_once() == 0
    assert await mongo_db.AuditLog.count_documents({}) == 0


async def test_shipping_twice_stores_each_event_once(
    engine: AsyncEngine, mongo_db: AsyncDatabase[Document]
) -> None:
    """A crash after insert_many and before the DELETE: the retry stores nothing new."""
    await _record_many(engine, 5)
    # The first attempt got its documents into MongoDB, then died before the DELETE.
    async with engine.connect() as conn:
        rows = (await conn.execute(queries.claim_batch(10))).all()
        await conn.rollback()
    await mongo_db.AuditLog.insert_many([to_document(r[0], r[1], r[2]) for r in rows[:3]])
    relay = AuditRelay(engine, mongo_db, batch_size=2)
    assert await relay.ship_once() == 2  # both already there: duplicates ignored
    assert await relay.ship_once() == 2  # one already there, one new
    assert await relay.ship_once() == 1
    assert await relay.ship_once() == 0
    await _assert_each_event_once(mongo_db, 5)


async def test_failure_between_insert_and_delete_is_retried_once(
    engine: AsyncEngine, mongo_db: AsyncDatabase[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    await _record_many(engine, 4)

    async def crash(conn: AsyncConnection, ids: list[int]) -> None:
        raise ConnectionResetError("PostgreSQL went away after the MongoDB insert")

    relay = AuditRelay(engine, mongo_db)
    with monkeypatch.context() as patch:
        patch.setattr(queries, "delete_shipped", crash)
        with pytest.raises(ConnectionResetError):
            await relay.ship_once()
    assert await relay.backlog() == 4  # rolled back: still in the outbox
    assert await mongo_db.AuditLog.count_documents({}) == 4  # ...and already in MongoDB
    assert await relay.ship_once() == 4
    assert await relay.backlog() == 0
    await _assert_each_event_once(mongo_db, 4)


async def test_other_write_errors_keep_the_batch(
    engine: AsyncEngine, mongo_db: AsyncDatabase[Document]
) -> None:
    """Only "audit_id already stored" counts as shipped; anything else aborts the batch."""
    await _record_many(engine, 2)
    await mongo_db.command(  # a validator that refuses everything
        "collMod", "AuditLog", validator={"$jsonSchema": {"required": ["no_such_field"]}}
    )
    relay = AuditRelay(engine, mongo_db)
    with pytest.raises(AuditShipError, match="code 121"):
        await relay.ship_once()
    assert await relay.backlog() == 2
    await mongo_migrations.steps.step_0005_audit_security_events(mongo_db)
    assert await relay.ship_once() == 2
    await _assert_each_event_once(mongo_db, 2)


async def test_two_relays_ship_every_event_exactly_once(
    engine: AsyncEngine, mongo_db: AsyncDatabase[Document]
) -> None:
    total = 300
    await _record_many(engine, total)
    relays = [AuditRelay(engine, mongo_db, batch_size=20) for _ in range(2)]

    async def drain(relay: AuditRelay) -> None:
        shipped = 1
        while shipped:  # every await yields to the other relay
            shipped = await relay.ship_once()

    await asyncio.gather(*(drain(r) for r in relays))
    assert sum(r.shipped_total for r in relays) == total  # SKIP LOCKED: no batch twice
    assert all(r.shipped_total > 0 for r in relays)
    assert await relays[0].backlog() == 0
    await _assert_each_event_once(mongo_db, total)


async def test_two_running_relays_ship_new_events_once(
    engine: AsyncEngine, mongo_db: AsyncDatabase[Document]
) -> None:
    relays = [
        AuditRelay(engine, mongo_db, batch_size=7, interval=0.05, stop_timeout=HANG_SECONDS)
        for _ in range(2)
    ]
    for relay in relays:
        relay.start()
    try:
        for n in range(60):
            await record_standalone(engine, _event(n))
            relays[n % 2].wake()

        async def drained() -> bool:
            return await relays[0].backlog() == 0

        assert await eventually(drained)
    finally:
        for relay in relays:
            await relay.stop()
    assert sum(r.shipped_total for r in relays) == 60
    await _assert_each_event_once(mongo_db, 60)


async def test_stop_ships_what_is_left(
    engine: AsyncEngine, mongo_db: AsyncDatabase[Document]
) -> None:
    # The loop would not come back soon; the last shipment may take as long as it needs.
    relay = AuditRelay(engine, mongo_db, interval=60, stop_timeout=HANG_SECONDS)
    relay.start()
    await asyncio.sleep(0.1)
    await _record_many(engine, 3)
    await relay.stop()
    assert not relay.running
    assert await relay.backlog() == 0
    await _assert_each_event_once(mongo_db, 3)


# ------------------------------------------------------------------- restores and failovers
#
# The outbox sequence (outbox_id) can go back: a restore of an earlier dump, a failover to
# a replica that lags, a setval by hand. Events are identified by the event_id PostgreSQL
# draws when they are written, so new events are never taken for shipped ones, and a
# restored copy of a shipped event is still stored once.

_OUTBOX_SEQUENCE = "pg_get_serial_sequence('audit_outbox', 'outbox_id')"


async def _outbox_ids(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(audit_outbox.c.outbox_id).order_by("outbox_id"))
        return [int(r[0]) for r in rows]


async def _sequence_back_to(engine: AsyncEngine, next_value: int) -> None:
    async with engine.begin() as conn:
        await conn.exec_driver_sql(f"SELECT setval({_OUTBOX_SEQUENCE}, {next_value}, false)")


async def _record_range(engine: AsyncEngine, numbers: range) -> None:
    async with db.Database(engine).transaction() as conn:
        for n in numbers:
            await record(conn, _event(n))


async def _ship_all(relay: AuditRelay) -> int:
    total = 0
    while shipped := await relay.ship_once():
        total += shipped
    return total


async def _pg_tool(pg_server: EmbeddedPostgres, *args: str) -> None:
    await asyncio.to_thread(
        subprocess.run,
        [str(pg_server.bin / args[0]), *args[1:]],
        check=True,
        capture_output=True,
        timeout=HANG_SECONDS,
    )


async def test_new_events_ship_after_the_sequence_goes_back(
    engine: AsyncEngine, mongo_db: AsyncDatabase[Document]
) -> None:
    """A failover to a lagging replica: outbox_ids repeat; nothing new is dropped, and
    writes do not fail on ids that events still waiting in the outbox hold."""
    relay = AuditRelay(engine, mongo_db, batch_size=2)
    await _record_range(engine, range(3))
    assert await _ship_all(relay) == 3

    await _sequence_back_to(engine, 1)
    await _record_range(engine, range(3, 6))
    assert await _outbox_ids(engine) == [1, 2, 3]  # the ids of events already shipped
    await _sequence_back_to(engine, 1)  # again, while those three still wait
    await _record_range(engine, range(6, 8))
    assert await _outbox_ids(engine) == [1, 1, 2, 2, 3]

    assert await _ship_all(relay) == 5
    assert await relay.backlog() == 0
    await _assert_each_event_once(mongo_db, 8)


async def test_a_restored_outbox_stores_new_events_and_each_old_one_once(
    engine: AsyncEngine,
    mongo_db: AsyncDatabase[Document],
    pg_server: EmbeddedPostgres,
    pg_url: str,
    private_tmp: Path,
) -> None:
    """The outbox (and its sequence) restored from an earlier pg_dump: the restored rows
    were shipped since, so sending them again stores nothing; events written after the
    restore reuse the outbox_ids of shipped events and are all stored."""
    dump = private_tmp / "audit_outbox.sql"
    await _record_range(engine, range(3))
    await _pg_tool(
        pg_server, "pg_dump", "--data-only", "--table=audit_outbox", f"--file={dump}", pg_url
    )
    assert "setval" in dump.read_text()  # the dump carries the sequence, as a real one does

    relay = AuditRelay(engine, mongo_db)
    assert await _ship_all(relay) == 3
    await _record_range(engine, range(3, 5))
    assert await _outbox_ids(engine) == [4, 5]
    assert await _ship_all(relay) == 2
    shipped = {d["request_id"]: d["audit_id"] for d in await _audit_docs(mongo_db)}

    async with engine.begin() as conn:  # restore the earlier dump
        await conn.exec_driver_sql("TRUNCATE audit_outbox")
    await _pg_tool(pg_server, "psql", "--quiet", "-v", "ON_ERROR_STOP=1", f"--file={dump}", pg_url)
    assert await _outbox_ids(engine) == [1, 2, 3]
    await _record_range(engine, range(5, 8))
    assert await _outbox_ids(engine) == [1, 2, 3, 4, 5, 6]  # 4 and 5 were shipped already

    assert await _ship_all(relay) == 6  # 3 genuine re-sends (deduplicated), 3 new events
    assert await relay.backlog() == 0
    await _assert_each_event_once(mongo_db, 8)
    docs = {d["request_id"]: d["audit_id"] for d in await _audit_docs(mongo_db)}
    assert {k: docs[k] for k in shipped} == shipped  # the re-sent events kept their ids


# ------------------------------------------------------------------- security events


async def test_security_events_pass_the_validator(
    engine: AsyncEngine, mongo_db: AsyncDatabase[Document]
) -> None:
    await record_standalone(
        engine,
        AuditEvent(
            actor="anonymous",
            table_name="admins",
            action_type="SECURITY",
            details={"reason": "PERMISSION_DENIED", "authorization": "Bearer x"},
            rpc="/gencharge.v1.AdminService/BlockUser",
            request_id="req-denied",
            outcome="denied",
            peer=None,
        ),
    )
    relay = AuditRelay(engine, mongo_db)
    assert await relay.ship_once() == 1
    doc = await mongo_db.AuditLog.find_one({"request_id": "req-denied"})
    assert doc is not None
    assert (doc["action_type"], doc["outcome"], doc["peer"]) == ("SECURITY", "denied", None)
    assert doc["details"] == {"reason": "PERMISSION_DENIED", "authorization": "[REDACTED]"}


@pytest.mark.parametrize(
    ("change", "ok"),
    [
        ({"action_type": "SECURITY", "outcome": "failed"}, True),
        ({"action_type": "DELETE"}, True),
        ({"action_type": "TRUNCATE"}, False),
        ({"outcome": "maybe"}, False),
        ({"user_id": 12}, False),
        ({"peer": 5}, False),
        ({"details": "not an object"}, False),
    ],
)
async def test_auditlog_validator_after_step_0005(
    mongo_db: AsyncDatabase[Document], change: Document, ok: bool
) -> None:
    doc = {
        "audit_id": "x-1",
        "user_id": "admin:1",
        "table_name": "plans",
        "action_type": "INSERT",
        "details": {},
        "created_at": datetime.now(UTC),
        "outcome": "ok",
    } | change
    if ok:
        await mongo_db.AuditLog.insert_one(doc)
    else:
        with pytest.raises(WriteError) as caught:
            await mongo_db.AuditLog.insert_one(doc)
        assert caught.value.code == 121


# ------------------------------------------------------------------- outage


def _relay_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "server.audit.relay" and r.levelno >= logging.WARNING
    ]


@pytest.fixture
async def own_mongo(private_tmp: Path) -> AsyncIterator[EmbeddedMongo]:
    server = await asyncio.to_thread(EmbeddedMongo(private_tmp / "mongo").start)
    yield server
    await asyncio.to_thread(server.stop)


async def test_mongo_outage_builds_a_backlog_that_ships_on_return(
    engine: AsyncEngine, own_mongo: EmbeddedMongo, caplog: pytest.LogCaptureFixture
) -> None:
    url = own_mongo.url("gencharge")
    # A short server-selection timeout so attempts fail (and back off) within the test.
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        url, tz_aware=True, serverSelectionTimeoutMS=500
    )
    mongo_db = mongo.get_database(client, url, "gencharge")
    await mongo_migrations.upgrade(mongo_db)
    relay = AuditRelay(engine, mongo_db, batch_size=10, interval=0.05, max_backoff=0.5)
    total = 25
    try:
        await asyncio.to_thread(own_mongo.stop)
        caplog.set_level(logging.WARNING, logger="server.audit.relay")
        # Producers only touch PostgreSQL: recording works with MongoDB down.
        await _record_many(engine, total - 5)
        for n in range(total - 5, total):
            await record_standalone(engine, _event(n))
        relay.start()

        async def failed_a_few_times() -> bool:
            assert await relay.backlog() == total  # nothing lost, nothing shipped
            assert relay.running
            return bool(_relay_warnings(caplog)) and relay.failed_attempts >= 3

        assert await eventually(failed_a_few_times, every=0.1)
        assert relay.failed_attempts >= 3
        await asyncio.to_thread(own_mongo.start)  # same port, same data folder

        async def drained() -> bool:
            return await relay.backlog() == 0

        assert await eventually(drained, every=0.1)
        await _assert_each_event_once(mongo_db, total)
        assert len(_relay_warnings(caplog)) == 1, "one warning per outage"
        assert relay.failed_attempts == 0
    finally:
        await relay.stop()
        await client.close()
