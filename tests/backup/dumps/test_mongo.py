"""MongoDB exports: full and incremental, live and scratch restores, the file format.

SecantusDB inserts about 700 documents a second: the data sets stay small."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from server.backup.dumps.checks import compare_stats, mongo_stats
from server.backup.dumps.mongo import (
    KNOWN_COLLECTIONS,
    NEVER_RESTORED_COLLECTIONS,
    backup_collections,
    dump_mongo,
    dump_mongo_since,
    restore_mongo,
)
from server.backup.dumps.scratch import scratch_databases
from server.backup.errors import BackupError
from server.core.config import Settings
from server.core.errors import InvalidArgument

T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


def oid(at: datetime) -> ObjectId:
    """A unique ObjectId generated at ``at`` (the test's clock, not the machine's)."""
    return ObjectId(int(at.timestamp()).to_bytes(4, "big") + os.urandom(8))


async def seed(db: AsyncDatabase[Any], *, start: int, count: int, at: datetime) -> None:
    """``count`` Content pages (ids from ``start``, counted in Counters as the service
    does), contact forms and audit events."""
    await db["Counters"].update_one(
        {"_id": "Content.content_id"}, {"$max": {"seq": start + count - 1}}, upsert=True
    )
    await db["Content"].insert_many(
        [
            {
                "_id": oid(at),
                "content_id": start + i,
                "content_type_id": 1,
                "title": f"Page {start + i}",
                "body": {"text": "x" * (i % 7), "tags": ["a", i]},
                "updated_at": at,
            }
            for i in range(count)
        ]
    )
    await db["ContactForm"].insert_many(
        [
            {
                "_id": oid(at),
                "id": f"form-{start + i}",
                "email": f"c{start + i}@example.com",
                "created_at": at,
            }
            for i in range(count)
        ]
    )
    await db["AuditLog"].insert_many(
        [
            {
                "_id": oid(at),
                "user_id": "user:1",
                "table_name": "users",
                "action_type": "UPDATE",
                "created_at": at,
            }
            for _ in range(count)
        ]
    )


def test_backup_collections() -> None:
    assert backup_collections() == list(KNOWN_COLLECTIONS)
    assert {"AuditLog", "Content", "Counters", "ContactForm"} <= set(KNOWN_COLLECTIONS)
    assert backup_collections(["Content", "Content", "Counters"]) == ["Content", "Counters"]
    with pytest.raises(InvalidArgument) as caught:
        backup_collections(["Content", "DevOutbox"])
    assert [(v.field, v.description) for v in caught.value.violations] == [
        ("tables", "unknown collection 'DevOutbox'")
    ]
    assert {"AuditLog", "BackupRestoreLogs"} <= NEVER_RESTORED_COLLECTIONS


async def test_full_dump_restores_into_scratch_with_equal_stats(
    settings: Settings,
    mongo_db: AsyncDatabase[Any],
    mongo_client: AsyncMongoClient[Any],
    private_tmp: Path,
) -> None:
    await seed(mongo_db, start=100, count=12, at=T0)
    dumped = await dump_mongo(mongo_db, private_tmp / "mongo.bin")
    assert dumped.stats == await mongo_stats(mongo_db, backup_collections())
    assert dumped.stats.rows["Content"] == 12 and dumped.stats.rows["AuditLog"] == 12
    async with scratch_databases(settings, mongo_client) as scratch:
        restored = await restore_mongo(scratch.mongo_db, [dumped.path], scratch=True)
        assert set(restored) == set(KNOWN_COLLECTIONS)
        assert compare_stats(dumped.stats, await mongo_stats(scratch.mongo_db, restored)) == []
        # The versioned steps made its indexes.
        indexes = await scratch.mongo_db["Content"].index_information()
        assert len(indexes) > 1
        name = scratch.mongo_db.name
    assert name not in await mongo_client.list_database_names()


async def test_full_and_incremental_restore_into_the_live_database(
    mongo_db: AsyncDatabase[Any], private_tmp: Path
) -> None:
    await seed(mongo_db, start=1, count=5, at=T0)
    full = await dump_mongo(mongo_db, private_tmp / "full.bin")
    # After the full export: new pages and forms, and one page edited.
    later = T0 + timedelta(hours=1)
    await seed(mongo_db, start=6, count=3, at=later)
    await mongo_db["Content"].update_one(
        {"content_id": 2}, {"$set": {"title": "Edited", "updated_at": later}}
    )
    incremental = await dump_mongo_since(
        mongo_db, private_tmp / "inc.bin", T0 + timedelta(minutes=1)
    )
    assert incremental.stats.rows["Content"] == 4  # 3 new + 1 edited
    assert incremental.stats.rows["ContactForm"] == 3
    target = await mongo_stats(mongo_db, ["Content", "ContactForm"])

    # Disaster: pages lost, a stray form; audit events keep arriving.
    await mongo_db["Content"].delete_many({"content_id": {"$gt": 3}})
    await mongo_db["ContactForm"].insert_one(
        {"_id": oid(T0), "id": "stray", "email": "s@example.com"}
    )
    await mongo_db["Counters"].update_one({"_id": "Content.content_id"}, {"$set": {"seq": 1}})
    await seed_audit(mongo_db)
    audit = await mongo_stats(mongo_db, ["AuditLog", "BackupRestoreLogs"])

    restored = await restore_mongo(mongo_db, [full.path, incremental.path])
    assert set(restored) == set(KNOWN_COLLECTIONS) - NEVER_RESTORED_COLLECTIONS
    assert compare_stats(target, await mongo_stats(mongo_db, ["Content", "ContactForm"])) == []
    assert await mongo_stats(mongo_db, ["AuditLog", "BackupRestoreLogs"]) == audit
    counter = await mongo_db["Counters"].find_one({"_id": "Content.content_id"})
    assert counter is not None and counter["seq"] >= 8


async def seed_audit(db: AsyncDatabase[Any]) -> None:
    await db["AuditLog"].insert_one(
        {"_id": oid(T0), "user_id": "admin:1", "table_name": "backup", "action_type": "INSERT"}
    )


async def test_an_incremental_applies_onto_the_live_data(
    mongo_db: AsyncDatabase[Any], private_tmp: Path
) -> None:
    await seed(mongo_db, start=1, count=3, at=T0)
    incremental = await dump_mongo_since(
        mongo_db, private_tmp / "inc.bin", T0, collections=["Content"]
    )
    await mongo_db["Content"].update_many({}, {"$set": {"title": "changed"}})
    with pytest.raises(BackupError) as caught:
        await restore_mongo(mongo_db, [incremental.path])
    assert caught.value.reason == "BACKUP_MONGO_FILE_KIND"
    assert await restore_mongo(mongo_db, [incremental.path], incremental=True) == ["Content"]
    titles = sorted(
        [d["title"] async for d in mongo_db["Content"].find({"content_id": {"$lte": 3}})]
    )
    assert titles == ["Page 1", "Page 2", "Page 3"]


async def test_restore_refuses_never_restored_and_missing_collections(
    mongo_db: AsyncDatabase[Any], private_tmp: Path
) -> None:
    dumped = await dump_mongo(mongo_db, private_tmp / "m.bin", collections=["Content", "AuditLog"])
    with pytest.raises(InvalidArgument) as caught:
        await restore_mongo(mongo_db, [dumped.path], collections=["AuditLog", "ContactForm"])
    assert [v.description for v in caught.value.violations] == [
        "collection 'AuditLog' is never restored",
        "collection 'ContactForm' is not in the backup",
    ]


async def test_a_damaged_file_is_refused(mongo_db: AsyncDatabase[Any], private_tmp: Path) -> None:
    await seed(mongo_db, start=1, count=3, at=T0)
    dumped = await dump_mongo(mongo_db, private_tmp / "m.bin", collections=["Content"])
    data = dumped.path.read_bytes()
    for damaged in (data[:-3], data[: len(data) // 2], b"GCMONGO\x02" + data[8:], data + b"\x01"):
        dumped.path.write_bytes(damaged)
        with pytest.raises(BackupError) as caught:
            await restore_mongo(mongo_db, [dumped.path], collections=["Content"])
        assert caught.value.reason == "BACKUP_MONGO_FILE_CORRUPT"
