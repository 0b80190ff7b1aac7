"""MongoDB schema: validators, indexes, views, TTL, the versioned steps (DDS 2.4, 5.2,
6.2, 7.2, 9.2), and the report pipelines, against the real embedded server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, WriteError

from migrations import mongo as mongo_migrations
from migrations.mongo.collections import SCHEMA_MIGRATIONS
from server.reports import pipelines

Document = dict[str, Any]
NOW = datetime.now(UTC)
DOCUMENT_VALIDATION_FAILURE = 121


async def _open(url: str) -> tuple[AsyncMongoClient[Document], AsyncDatabase[Document]]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(url, tz_aware=True)
    return client, client.get_default_database()


@pytest.fixture
async def db(mongo_url: str) -> AsyncIterator[AsyncDatabase[Document]]:
    client, database = await _open(mongo_url)
    try:
        yield database
    finally:
        await client.close()


@pytest.fixture
async def empty_db(mongo_empty_url: str) -> AsyncIterator[AsyncDatabase[Document]]:
    client, database = await _open(mongo_empty_url)
    try:
        yield database
    finally:
        await client.close()


# ------------------------------------------------------------------- validators

GOOD: dict[str, Document] = {
    "AuditLog": {
        "audit_id": "evt-1",
        "user_id": "user:1",
        "table_name": "users",
        "action_type": "UPDATE",
        "details": {"field": "name"},
        "created_at": NOW,
    },
    "ContactForm": {
        "id": "cf-1",
        "name": "Asha",
        "email": "asha.k+help@example.co.in",
        "description": "My recharge failed",
        "created_at": NOW,
    },
    "BackupRestoreLogs": {
        "log_id": "log-1",
        "job_type": "backup",
        "job_id": "backup_2025_10_10_0200",
        "status": "completed",
        "details": {"tables": ["Users"]},
        "created_at": NOW,
        "expires_at": NOW + timedelta(days=7),
        "action_by": 1,
    },
    "ReportsLogs": {
        "report_id": 1,
        "report_type_id": 1,
        "generated_by": 1,
        "format": "csv",
        "details": {"rows": 10},
        "created_at": NOW,
    },
    "Content": {
        "content_id": 10,
        "content_type_id": 1,
        "title": "FAQ",
        "body": {"content": "..."},
        "created_by": 1,
        "updated_at": NOW,
    },
    "ContentTypes": {"content_type_id": 99, "content_type_name": "news"},
    "ReportTypes": {"report_type_id": 99, "report_type_name": "churn"},
}


def _without(doc: Document, key: str) -> Document:
    return {k: v for k, v in doc.items() if k != key}


def _with(doc: Document, **changes: Any) -> Document:
    return {**doc, **changes}


# (collection, kind of mistake, bad document)
BAD: list[tuple[str, str, Document]] = [
    ("AuditLog", "missing user_id", _without(GOOD["AuditLog"], "user_id")),
    ("AuditLog", "missing table_name", _without(GOOD["AuditLog"], "table_name")),
    ("AuditLog", "missing action_type", _without(GOOD["AuditLog"], "action_type")),
    ("AuditLog", "user_id not a string", _with(GOOD["AuditLog"], user_id=1)),
    ("AuditLog", "bad action_type enum", _with(GOOD["AuditLog"], action_type="TRUNCATE")),
    ("AuditLog", "created_at not a date", _with(GOOD["AuditLog"], created_at="yesterday")),
    ("ContactForm", "missing id", _without(GOOD["ContactForm"], "id")),
    ("ContactForm", "missing email", _without(GOOD["ContactForm"], "email")),
    ("ContactForm", "id not a string", _with(GOOD["ContactForm"], id=7)),
    ("ContactForm", "bad email", _with(GOOD["ContactForm"], email="not-an-email")),
    ("ContactForm", "email without tld", _with(GOOD["ContactForm"], email="a@localhost")),
    ("ContactForm", "email not a string", _with(GOOD["ContactForm"], email=["a@b.co"])),
    ("BackupRestoreLogs", "missing job_id", _without(GOOD["BackupRestoreLogs"], "job_id")),
    ("BackupRestoreLogs", "missing job_type", _without(GOOD["BackupRestoreLogs"], "job_type")),
    ("BackupRestoreLogs", "missing status", _without(GOOD["BackupRestoreLogs"], "status")),
    ("BackupRestoreLogs", "job_id not a string", _with(GOOD["BackupRestoreLogs"], job_id=3)),
    ("BackupRestoreLogs", "bad job_type", _with(GOOD["BackupRestoreLogs"], job_type="copy")),
    ("BackupRestoreLogs", "bad status", _with(GOOD["BackupRestoreLogs"], status="done")),
    (
        "BackupRestoreLogs",
        "expires_at not a date",
        _with(GOOD["BackupRestoreLogs"], expires_at="tomorrow"),
    ),
    ("ReportsLogs", "missing report_type_id", _without(GOOD["ReportsLogs"], "report_type_id")),
    ("ReportsLogs", "missing format", _without(GOOD["ReportsLogs"], "format")),
    ("ReportsLogs", "report_type_id string", _with(GOOD["ReportsLogs"], report_type_id="1")),
    ("ReportsLogs", "report_id not an int", _with(GOOD["ReportsLogs"], report_id=1.5)),
    ("ReportsLogs", "bad format enum", _with(GOOD["ReportsLogs"], format="docx")),
    ("Content", "missing content_type_id", _without(GOOD["Content"], "content_type_id")),
    ("Content", "missing title", _without(GOOD["Content"], "title")),
    ("Content", "content_type_id string", _with(GOOD["Content"], content_type_id="1")),
    ("Content", "content_id not an int", _with(GOOD["Content"], content_id="10")),
    ("Content", "title not a string", _with(GOOD["Content"], title=5)),
    ("Content", "updated_at not a date", _with(GOOD["Content"], updated_at=20251010)),
    # Step 0006 (ContentService).
    ("ContactForm", "bad status", _with(GOOD["ContactForm"], status="closed")),
    ("ContactForm", "name not a string", _with(GOOD["ContactForm"], name=5)),
    ("ContactForm", "updated_at not a date", _with(GOOD["ContactForm"], updated_at="now")),
    ("Content", "body not an object", _with(GOOD["Content"], body="text")),
    ("Content", "created_by not an int", _with(GOOD["Content"], created_by="admin")),
    ("ContentTypes", "missing name", _without(GOOD["ContentTypes"], "content_type_name")),
    ("ContentTypes", "id not an int", _with(GOOD["ContentTypes"], content_type_id="x")),
    ("ReportTypes", "missing name", _without(GOOD["ReportTypes"], "report_type_name")),
    ("ReportTypes", "id not an int", _with(GOOD["ReportTypes"], report_type_id=1.25)),
]


@pytest.mark.parametrize("collection", sorted(GOOD))
async def test_validator_accepts_a_good_document(
    db: AsyncDatabase[Document], collection: str
) -> None:
    await db[collection].insert_one(dict(GOOD[collection]))
    assert await db[collection].count_documents({"_id": {"$exists": True}}) >= 1


@pytest.mark.parametrize(
    ("collection", "mistake", "document"), BAD, ids=[f"{c}: {m}" for c, m, _ in BAD]
)
async def test_validator_rejects_a_bad_document(
    db: AsyncDatabase[Document], collection: str, mistake: str, document: Document
) -> None:
    with pytest.raises(WriteError) as caught:
        await db[collection].insert_one(dict(document))
    assert caught.value.code == DOCUMENT_VALIDATION_FAILURE, mistake


async def test_validator_checks_updates_too(db: AsyncDatabase[Document]) -> None:
    await db.AuditLog.insert_one(dict(GOOD["AuditLog"]))
    with pytest.raises(WriteError) as caught:
        await db.AuditLog.update_one({"audit_id": "evt-1"}, {"$set": {"action_type": "DROP"}})
    assert caught.value.code == DOCUMENT_VALIDATION_FAILURE


async def test_validators_are_strict_and_raise_errors(db: AsyncDatabase[Document]) -> None:
    cursor = await db.list_collections(filter={"type": "collection"})
    infos = {info["name"]: info async for info in cursor}
    for name in GOOD:
        options = infos[name]["options"]
        assert options["validationLevel"] == "strict", name
        assert options["validationAction"] == "error", name
        assert "$jsonSchema" in options["validator"], name


async def test_partial_unique_ids(db: AsyncDatabase[Document]) -> None:
    """DDS "PK" fields are unique when present; documents without them never collide."""
    await db.AuditLog.insert_one(dict(GOOD["AuditLog"]))
    with pytest.raises(DuplicateKeyError):
        await db.AuditLog.insert_one(dict(GOOD["AuditLog"]))
    await db.AuditLog.insert_one(_without(GOOD["AuditLog"], "audit_id"))
    await db.AuditLog.insert_one(_without(GOOD["AuditLog"], "audit_id"))
    # ContactForm: the same person may write twice (email is not unique).
    await db.ContactForm.insert_one(dict(GOOD["ContactForm"]))
    await db.ContactForm.insert_one(_with(GOOD["ContactForm"], id="cf-2"))
    assert await db.ContactForm.count_documents({"email": GOOD["ContactForm"]["email"]}) == 2


# ------------------------------------------------------------------- indexes

#: DDS 9.2, verbatim (collection, keys).
DDS_INDEXES: list[tuple[str, list[tuple[str, int]]]] = [
    ("AuditLog", [("user_id", 1)]),
    ("AuditLog", [("created_at", -1)]),
    ("AuditLog", [("action_type", 1)]),
    ("ContactForm", [("email", 1)]),
    ("ContactForm", [("created_at", -1)]),
    ("BackupRestoreLogs", [("job_id", 1)]),
    ("BackupRestoreLogs", [("created_at", -1)]),
    ("BackupRestoreLogs", [("job_type", 1)]),
    ("BackupRestoreLogs", [("status", 1)]),
    ("ReportsLogs", [("report_type_id", 1)]),
    ("ReportsLogs", [("created_at", -1)]),
    ("ReportsLogs", [("format", 1)]),
    ("Content", [("content_type_id", 1)]),
    ("Content", [("updated_at", -1)]),
    ("Content", [("title", 1)]),
]


async def _indexes_by_key(
    db: AsyncDatabase[Document], collection: str
) -> dict[tuple[tuple[str, int], ...], Document]:
    info = await db[collection].index_information()
    return {
        tuple((k, int(d)) for k, d in spec["key"]): spec | {"name": n} for n, spec in info.items()
    }


@pytest.mark.parametrize(("collection", "keys"), DDS_INDEXES)
async def test_dds_index_exists(
    db: AsyncDatabase[Document], collection: str, keys: list[tuple[str, int]]
) -> None:
    indexes = await _indexes_by_key(db, collection)
    assert tuple(keys) in indexes, f"{collection} lacks index {keys}"
    spec = indexes[tuple(keys)]
    assert not spec.get("unique"), "DDS 9.2 indexes are plain (ContactForm.email: see docs)"
    assert "expireAfterSeconds" not in spec


@pytest.mark.parametrize(
    ("collection", "keys"),
    [
        ("Content", [("updated_at", -1), ("content_id", -1)]),
        ("Content", [("content_type_id", 1), ("updated_at", -1), ("content_id", -1)]),
        ("ContactForm", [("created_at", -1), ("_id", -1)]),
        ("ContactForm", [("status", 1), ("created_at", -1), ("_id", -1)]),
    ],
)
async def test_content_service_list_indexes(
    db: AsyncDatabase[Document], collection: str, keys: list[tuple[str, int]]
) -> None:
    """Step 0006: the list orders of ContentService, each with its tie-breaker."""
    assert tuple(keys) in await _indexes_by_key(db, collection)


async def test_contact_form_statuses_and_counters(db: AsyncDatabase[Document]) -> None:
    for status in ("new", "in_progress", "resolved"):
        await db["ContactForm"].insert_one(_with(GOOD["ContactForm"], id=status, status=status))
    await db["Counters"].insert_one({"_id": "Example.example_id", "seq": 7})
    with pytest.raises(WriteError) as info:
        await db["Counters"].insert_one({"_id": "x", "seq": "eight"})
    assert info.value.code == DOCUMENT_VALIDATION_FAILURE


async def test_lookup_keys_are_unique(db: AsyncDatabase[Document]) -> None:
    for collection, key, name in (
        ("ContentTypes", "content_type_id", "content_type_name"),
        ("ReportTypes", "report_type_id", "report_type_name"),
    ):
        spec = (await _indexes_by_key(db, collection))[((key, 1),)]
        assert spec["unique"] is True
        with pytest.raises(DuplicateKeyError):
            await db[collection].insert_one({key: 1, name: "duplicate"})


async def test_ttl_index_on_backup_logs(db: AsyncDatabase[Document]) -> None:
    spec = (await _indexes_by_key(db, "BackupRestoreLogs"))[(("expires_at", 1),)]
    assert spec["expireAfterSeconds"] == 0


# ------------------------------------------------------------------- views


async def test_views_exist(db: AsyncDatabase[Document]) -> None:
    views = {
        info["name"]: info["options"]
        async for info in await db.list_collections(filter={"type": "view"})
    }
    assert views.keys() == {"recent_audit_logs_v", "content_summary_v", "recent_reports_v"}
    assert views["recent_audit_logs_v"]["viewOn"] == "AuditLog"
    assert views["content_summary_v"]["viewOn"] == "Content"
    assert views["recent_reports_v"]["viewOn"] == "ReportsLogs"


async def test_recent_audit_logs_view_has_a_moving_30_day_window(
    db: AsyncDatabase[Document],
) -> None:
    now = datetime.now(UTC)
    base = _without(GOOD["AuditLog"], "audit_id")
    await db.AuditLog.insert_many(
        [
            base | {"audit_id": "old", "created_at": now - timedelta(days=31)},
            base | {"audit_id": "new", "created_at": now - timedelta(minutes=1)},
            base | {"audit_id": "mid", "created_at": now - timedelta(days=29)},
        ]
    )
    rows = await db.recent_audit_logs_v.find().to_list()
    assert [r["audit_id"] for r in rows] == ["new", "mid"]
    assert set(rows[0]) == {
        "audit_id",
        "user_id",
        "table_name",
        "action_type",
        "details",
        "created_at",
    }


async def test_content_summary_view_joins_content_types(db: AsyncDatabase[Document]) -> None:
    await db.Content.insert_many(
        [
            _with(GOOD["Content"], content_id=1, content_type_id=1, title="How to recharge"),
            _with(GOOD["Content"], content_id=2, content_type_id=3, title="Terms of Service"),
            _with(GOOD["Content"], content_id=3, content_type_id=404, title="Orphan"),
        ]
    )
    rows = await db.content_summary_v.find().sort("content_id", 1).to_list()
    assert [(r["content_id"], r["content_type_name"]) for r in rows] == [
        (1, "faq"),
        (2, "terms_of_service"),
    ]
    assert set(rows[0]) == {"content_id", "title", "content_type_name", "created_by", "updated_at"}


async def test_recent_reports_view(db: AsyncDatabase[Document]) -> None:
    now = datetime.now(UTC)
    await db.ReportsLogs.insert_many(
        [
            _with(GOOD["ReportsLogs"], report_id=1, created_at=now - timedelta(days=40)),
            _with(GOOD["ReportsLogs"], report_id=2, report_type_id=2, created_at=now),
            _with(GOOD["ReportsLogs"], report_id=3, created_at=now - timedelta(days=1)),
        ]
    )
    rows = await db.recent_reports_v.find().to_list()
    assert [(r["report_id"], r["report_type_name"]) for r in rows] == [
        (2, "transactions"),
        (3, "user_activity"),
    ]
    assert set(rows[0]) == {"report_id", "report_type_name", "format", "generated_by", "created_at"}


# ------------------------------------------------------------------- steps


async def test_upgrade_records_every_step_once(empty_db: AsyncDatabase[Document]) -> None:
    all_ids = [step.id for step in mongo_migrations.STEPS]
    assert all_ids == sorted(all_ids)
    assert await mongo_migrations.pending_steps(empty_db) == all_ids
    assert await mongo_migrations.upgrade(empty_db) == all_ids
    records = await empty_db[SCHEMA_MIGRATIONS].find().sort("_id", 1).to_list()
    assert [r["_id"] for r in records] == all_ids
    assert all(isinstance(r["applied_at"], datetime) for r in records)
    assert await mongo_migrations.upgrade(empty_db) == []
    assert await mongo_migrations.pending_steps(empty_db) == []


async def test_steps_are_idempotent(empty_db: AsyncDatabase[Document]) -> None:
    await mongo_migrations.upgrade(empty_db)

    async def snapshot() -> tuple[list[Document], dict[str, Any]]:
        collections = sorted(
            [
                {"name": c["name"], "options": c["options"]}
                async for c in await empty_db.list_collections()
            ],
            key=lambda c: str(c["name"]),
        )
        indexes = {
            c["name"]: await empty_db[c["name"]].index_information()
            for c in collections
            if "viewOn" not in c["options"]
        }
        return collections, indexes

    before = await snapshot()
    for step in mongo_migrations.STEPS:  # re-run every step by hand
        await step.apply(empty_db)
    assert await snapshot() == before


async def test_concurrent_upgrades_are_safe(empty_db: AsyncDatabase[Document]) -> None:
    first, second = await asyncio.gather(
        mongo_migrations.upgrade(empty_db), mongo_migrations.upgrade(empty_db)
    )
    all_ids = [step.id for step in mongo_migrations.STEPS]
    assert sorted(set(first) | set(second)) == all_ids
    assert await empty_db[SCHEMA_MIGRATIONS].count_documents({}) == len(all_ids)
    await empty_db.AuditLog.insert_one(dict(GOOD["AuditLog"]))


async def test_counters_start_past_the_ids_already_stored(
    empty_db: AsyncDatabase[Document],
) -> None:
    """Step 0008 creates every counter (so no first use races an upsert), at 0 on a new
    database and at the highest id stored on an old one; a rerun never lowers one."""
    await mongo_migrations.upgrade(empty_db)
    counters = {c["_id"]: c["seq"] async for c in empty_db["Counters"].find()}
    assert counters == {"Content.content_id": 0, "ReportsLogs.report_id": 0}

    await empty_db["Counters"].delete_many({})
    await empty_db["Content"].insert_many(
        [_with(GOOD["Content"], content_id=i) for i in (3, 41, 12)]
    )
    await empty_db["ReportsLogs"].insert_one(_with(GOOD["ReportsLogs"], report_id=9))
    step = next(s for s in mongo_migrations.STEPS if s.id == "0008_seed_counters")
    await step.apply(empty_db)
    counters = {c["_id"]: c["seq"] async for c in empty_db["Counters"].find()}
    assert counters == {"Content.content_id": 41, "ReportsLogs.report_id": 9}

    await empty_db["Counters"].update_one({"_id": "Content.content_id"}, {"$set": {"seq": 50}})
    await step.apply(empty_db)
    assert (await empty_db["Counters"].find_one({"_id": "Content.content_id"}))["seq"] == 50


# ------------------------------------------------------------------- pipelines


async def test_user_activity_summary(db: AsyncDatabase[Document]) -> None:
    now = datetime.now(UTC)
    base = _without(GOOD["AuditLog"], "audit_id")
    await db.AuditLog.insert_many(
        [
            base | {"user_id": "user:2", "action_type": "INSERT", "created_at": now},
            base | {"user_id": "user:1", "action_type": "UPDATE", "created_at": now},
            base | {"user_id": "user:1", "action_type": "UPDATE", "created_at": now},
            base | {"user_id": "user:1", "action_type": "DELETE", "created_at": now},
            base
            | {
                "user_id": "user:1",
                "action_type": "DELETE",
                "created_at": now - timedelta(days=45),
            },
        ]
    )
    rows = await pipelines.user_activity_summary(db, since=now - timedelta(days=30))
    assert rows == [
        {"user_id": "user:1", "action_type": "DELETE", "total_actions": 1},
        {"user_id": "user:1", "action_type": "UPDATE", "total_actions": 2},
        {"user_id": "user:2", "action_type": "INSERT", "total_actions": 1},
    ]


async def test_content_usage_report(db: AsyncDatabase[Document]) -> None:
    await db.Content.insert_many(
        [
            _with(GOOD["Content"], content_id=1, content_type_id=1),
            _with(GOOD["Content"], content_id=2, content_type_id=1),
            _with(GOOD["Content"], content_id=3, content_type_id=3),
        ]
    )
    assert await pipelines.content_usage_report(db) == [
        {"content_type_name": "faq", "total_items": 2},
        {"content_type_name": "terms_of_service", "total_items": 1},
    ]


async def test_recent_backup_restore_activity(db: AsyncDatabase[Document]) -> None:
    now = datetime.now(UTC)
    base = _without(GOOD["BackupRestoreLogs"], "expires_at")
    await db.BackupRestoreLogs.insert_many(
        [
            base | {"log_id": "l1", "job_id": "b1", "created_at": now - timedelta(days=2)},
            base
            | {
                "log_id": "l2",
                "job_id": "b2",
                "job_type": "restore",
                "status": "failed",
                "created_at": now - timedelta(hours=1),
            },
            base | {"log_id": "l0", "job_id": "b1", "created_at": now - timedelta(days=60)},
        ]
    )
    rows = await pipelines.recent_backup_restore_activity(
        db, since=now - timedelta(days=30), snapshot_names={"b1": "snap_b1"}
    )
    assert [(r["log_id"], r["job_type"], r["status"], r["snapshot_name"]) for r in rows] == [
        ("l2", "restore", "failed", None),
        ("l1", "backup", "completed", "snap_b1"),
    ]
    assert rows[0]["action_by"] == 1
    assert "_id" not in rows[0]
