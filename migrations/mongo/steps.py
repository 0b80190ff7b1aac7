"""The versioned MongoDB migration steps.

Every step is an idempotent ``async def step(db) -> None``: running it again on a
database where it already ran is harmless (collections are created when missing and
``collMod``-ed otherwise, ``create_index`` with the same name/keys/options is a no-op,
views are created when missing and ``collMod``-ed otherwise). That is what makes the
lock-free runner in :mod:`migrations.mongo` safe when two processes start at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import CollectionInvalid, OperationFailure

from migrations.mongo.collections import (
    AUDIT_LOG,
    AUDIT_LOG_VALIDATOR,
    AUDIT_LOG_VALIDATOR_WITH_CUSTOMER,
    BACKUP_RESTORE_LOGS,
    CONTACT_FORM,
    CONTACT_FORM_VALIDATOR,
    CONTENT,
    CONTENT_SUMMARY_VIEW,
    CONTENT_TYPES,
    CONTENT_VALIDATOR,
    COUNTERS,
    RECENT_AUDIT_LOGS_VIEW,
    RECENT_REPORTS_VIEW,
    REPORT_TYPES,
    REPORTS_LOGS,
    SEQUENCES,
    VALIDATORS,
    Document,
)

Database = AsyncDatabase[Document]

# MongoDB error code of NamespaceExists (a concurrent create won the race).
_NAMESPACE_EXISTS: Final = 48


@dataclass(frozen=True)
class IndexSpec:
    """One index: collection, name, keys and extra ``createIndexes`` options."""

    collection: str
    name: str
    keys: list[tuple[str, int]]
    options: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- 0001


async def _ensure_collection(db: Database, name: str, validator: Document) -> None:
    """Create ``name`` with ``validator``, or ``collMod`` the validator onto it."""
    existing = await (await db.list_collections(filter={"name": name})).to_list()
    if not existing:
        try:
            await db.create_collection(
                name,
                validator=validator,
                validationLevel="strict",
                validationAction="error",
            )
            return
        except CollectionInvalid:
            pass  # created concurrently: fall through to collMod
        except OperationFailure as exc:
            if exc.code != _NAMESPACE_EXISTS:
                raise
    await db.command(
        "collMod",
        name,
        validator=validator,
        validationLevel="strict",
        validationAction="error",
    )


async def step_0001_collections_validators(db: Database) -> None:
    """DDS 5.2: the collections with their ``$jsonSchema`` validators (strict, error)."""
    for name, validator in VALIDATORS.items():
        await _ensure_collection(db, name, validator)


# --------------------------------------------------------------------------- 0002

#: DDS 9.2 indexes, plus unique indexes on the DDS "PK" fields and the lookup keys.
#: Deviation: DDS 9.2 makes ContactForm.email unique, which would let a person write
#: to us only once; it is a plain index here (see docs/mongodb.md).
INDEXES: Final[list[IndexSpec]] = [
    # AuditLog
    IndexSpec(AUDIT_LOG, "auditlog_user_id", [("user_id", ASCENDING)]),
    IndexSpec(AUDIT_LOG, "auditlog_created_at_desc", [("created_at", DESCENDING)]),
    IndexSpec(AUDIT_LOG, "auditlog_action_type", [("action_type", ASCENDING)]),
    # ContactForm
    IndexSpec(CONTACT_FORM, "contactform_email", [("email", ASCENDING)]),
    IndexSpec(CONTACT_FORM, "contactform_created_at_desc", [("created_at", DESCENDING)]),
    # BackupRestoreLogs
    IndexSpec(BACKUP_RESTORE_LOGS, "backuprestorelogs_job_id", [("job_id", ASCENDING)]),
    IndexSpec(
        BACKUP_RESTORE_LOGS, "backuprestorelogs_created_at_desc", [("created_at", DESCENDING)]
    ),
    IndexSpec(BACKUP_RESTORE_LOGS, "backuprestorelogs_job_type", [("job_type", ASCENDING)]),
    IndexSpec(BACKUP_RESTORE_LOGS, "backuprestorelogs_status", [("status", ASCENDING)]),
    # ReportsLogs
    IndexSpec(REPORTS_LOGS, "reportslogs_report_type_id", [("report_type_id", ASCENDING)]),
    IndexSpec(REPORTS_LOGS, "reportslogs_created_at_desc", [("created_at", DESCENDING)]),
    IndexSpec(REPORTS_LOGS, "reportslogs_format", [("format", ASCENDING)]),
    # Content
    IndexSpec(CONTENT, "content_content_type_id", [("content_type_id", ASCENDING)]),
    IndexSpec(CONTENT, "content_updated_at_desc", [("updated_at", DESCENDING)]),
    IndexSpec(CONTENT, "content_title", [("title", ASCENDING)]),
    # Lookup collections: one row per id.
    IndexSpec(
        CONTENT_TYPES,
        "contenttypes_content_type_id_unique",
        [("content_type_id", ASCENDING)],
        {"unique": True},
    ),
    IndexSpec(
        REPORT_TYPES,
        "reporttypes_report_type_id_unique",
        [("report_type_id", ASCENDING)],
        {"unique": True},
    ),
    # The DDS 4.2 "PK" fields are optional in the validators, so their unique indexes
    # are partial: documents without the field do not collide. AuditLog.audit_id lets
    # the outbox relay ship at-least-once and still store each event once.
    *(
        IndexSpec(
            coll,
            f"{coll.lower()}_{key}_unique",
            [(key, ASCENDING)],
            {
                "unique": True,
                "partialFilterExpression": {key: {"$exists": True}},
            },
        )
        for coll, key in (
            (AUDIT_LOG, "audit_id"),
            (CONTACT_FORM, "id"),
            (BACKUP_RESTORE_LOGS, "log_id"),
            (REPORTS_LOGS, "report_id"),
            (CONTENT, "content_id"),
        )
    ),
]


async def _ensure_indexes(db: Database, specs: list[IndexSpec]) -> None:
    for spec in specs:
        await db[spec.collection].create_index(spec.keys, name=spec.name, **spec.options)


async def step_0002_indexes(db: Database) -> None:
    """DDS 9.2 indexes (named), the unique lookup keys and the partial unique PKs."""
    await _ensure_indexes(db, INDEXES)


# --------------------------------------------------------------------------- 0003


def since_days_ago(field_name: str, days: int) -> Document:
    """``$match`` keeping documents whose ``field_name`` is within the last ``days`` days.

    The DDS computes the bound with ``new Date()`` when the view is created, which
    freezes the window; ``$$NOW`` is evaluated at every read, so the window moves.
    The ``$toDate``/``$toLong`` round trip is a no-op on MongoDB; SecantusDB 0.7
    needs it because there a date derived from ``$$NOW`` compares equal to every
    stored date (see docs/mongodb.md).
    """
    bound = {"$dateSubtract": {"startDate": "$$NOW", "unit": "day", "amount": days}}
    return {"$match": {"$expr": {"$gte": [f"${field_name}", {"$toDate": {"$toLong": bound}}]}}}


#: name -> (source collection, pipeline). DDS 6.2.
VIEWS: Final[dict[str, tuple[str, list[Document]]]] = {
    RECENT_AUDIT_LOGS_VIEW: (
        AUDIT_LOG,
        [
            since_days_ago("created_at", 30),
            {"$sort": {"created_at": -1}},
            {
                "$project": {
                    "_id": 0,
                    "audit_id": 1,
                    "user_id": 1,
                    "table_name": 1,
                    "action_type": 1,
                    "details": 1,
                    "created_at": 1,
                }
            },
        ],
    ),
    CONTENT_SUMMARY_VIEW: (
        CONTENT,
        [
            {
                "$lookup": {
                    "from": CONTENT_TYPES,
                    "localField": "content_type_id",
                    "foreignField": "content_type_id",
                    "as": "content_type_info",
                }
            },
            {"$unwind": "$content_type_info"},
            {
                "$project": {
                    "_id": 0,
                    "content_id": 1,
                    "title": 1,
                    "content_type_name": "$content_type_info.content_type_name",
                    "created_by": 1,
                    "updated_at": 1,
                }
            },
        ],
    ),
    # The DDS gives two versions of this view; this is the complete second one
    # (30-day window, newest first, with format and generated_by).
    RECENT_REPORTS_VIEW: (
        REPORTS_LOGS,
        [
            since_days_ago("created_at", 30),
            {
                "$lookup": {
                    "from": REPORT_TYPES,
                    "localField": "report_type_id",
                    "foreignField": "report_type_id",
                    "as": "report_type_info",
                }
            },
            {"$unwind": "$report_type_info"},
            {"$sort": {"created_at": -1}},
            {
                "$project": {
                    "_id": 0,
                    "report_id": 1,
                    "report_type_name": "$report_type_info.report_type_name",
                    "format": 1,
                    "generated_by": 1,
                    "created_at": 1,
                }
            },
        ],
    ),
}


async def _ensure_view(db: Database, name: str, source: str, pipeline: list[Document]) -> None:
    existing = await (await db.list_collections(filter={"name": name})).to_list()
    if not existing:
        try:
            await db.create_collection(name, viewOn=source, pipeline=pipeline)
            return
        except CollectionInvalid:
            pass
        except OperationFailure as exc:
            if exc.code != _NAMESPACE_EXISTS:
                raise
    await db.command("collMod", name, viewOn=source, pipeline=pipeline)


async def step_0003_views(db: Database) -> None:
    """DDS 6.2 views, with a moving 30-day window."""
    for name, (source, pipeline) in VIEWS.items():
        await _ensure_view(db, name, source, pipeline)


# --------------------------------------------------------------------------- 0004

#: DDS 2.4: temporary backup logs expire. Only documents written with ``expires_at``
#: (a date) expire, at that time; permanent logs carry no ``expires_at``. Sessions
#: live in PostgreSQL in this project, so they have no TTL index here.
TTL_INDEXES: Final[list[IndexSpec]] = [
    IndexSpec(
        BACKUP_RESTORE_LOGS,
        "backuprestorelogs_expires_at_ttl",
        [("expires_at", ASCENDING)],
        {"expireAfterSeconds": 0},
    ),
]


async def step_0004_ttl(db: Database) -> None:
    """DDS 2.4 TTL indexes."""
    await _ensure_indexes(db, TTL_INDEXES)


# --------------------------------------------------------------------------- 0005


async def step_0005_audit_security_events(db: Database) -> None:
    """AuditLog validator: action_type SECURITY, optional outcome/rpc/request_id/peer."""
    await _ensure_collection(db, AUDIT_LOG, AUDIT_LOG_VALIDATOR)


# --------------------------------------------------------------------------- 0006

#: The list orders of ContentService, each with its tie-breaker so keyset pages are
#: stable: content most recently updated first (all types, or one type), contact forms
#: newest first (all, or one status).
CONTENT_SERVICE_INDEXES: Final[list[IndexSpec]] = [
    IndexSpec(
        CONTENT,
        "content_updated_at_content_id_desc",
        [("updated_at", DESCENDING), ("content_id", DESCENDING)],
    ),
    IndexSpec(
        CONTENT,
        "content_type_updated_at_content_id_desc",
        [("content_type_id", ASCENDING), ("updated_at", DESCENDING), ("content_id", DESCENDING)],
    ),
    IndexSpec(
        CONTACT_FORM,
        "contactform_created_at_id_desc",
        [("created_at", DESCENDING), ("_id", DESCENDING)],
    ),
    IndexSpec(
        CONTACT_FORM,
        "contactform_status_created_at_id_desc",
        [("status", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)],
    ),
]


async def step_0006_content_contact_forms(db: Database) -> None:
    """ContentService: ContactForm status and Content field types, list-order indexes,
    the Counters collection (content ids)."""
    await _ensure_collection(db, CONTACT_FORM, CONTACT_FORM_VALIDATOR)
    await _ensure_collection(db, CONTENT, CONTENT_VALIDATOR)
    await _ensure_collection(
        db,
        COUNTERS,
        {
            "$jsonSchema": {
                "bsonType": "object",
                "required": ["seq"],
                "properties": {
                    "_id": {"bsonType": "string", "description": "must be a string"},
                    "seq": {"bsonType": ["int", "long"], "description": "must be an integer"},
                },
            }
        },
    )
    await _ensure_indexes(db, CONTENT_SERVICE_INDEXES)


#: The ``ListAuditLogs`` indexes (server/admin/insight/queries.py): each filter's
#: equality first, then the page order (``created_at`` descending, ``_id`` descending),
#: so a filtered page is one index range read in order, with no in-memory sort and no
#: documents of other filters examined. The time range narrows the same range.
AUDIT_QUERY_INDEXES: Final[list[IndexSpec]] = [
    IndexSpec(AUDIT_LOG, "auditlog_page", [("created_at", DESCENDING), ("_id", DESCENDING)]),
    *(
        IndexSpec(
            AUDIT_LOG,
            f"auditlog_{key}_page",
            [(key, ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)],
        )
        for key in ("user_id", "customer_id", "table_name", "action_type", "rpc")
    ),
]

#: Documents rewritten per round trip by the customer backfill.
_BACKFILL_BATCH: Final = 1000


def _customer_of(document: Document) -> int | None:
    """The customer an event stored before step 0007 is about (as
    server/audit/outbox.py ``customer_of`` decides for new events): the integer
    ``details.user_id``, else the acting customer ``user:<id>``."""
    details = document.get("details")
    named = details.get("user_id") if isinstance(details, dict) else None
    if isinstance(named, str) and named.isascii() and named.isdigit():
        named = int(named)
    if isinstance(named, int) and not isinstance(named, bool) and 0 < named < 2**63:
        return named
    kind, _, ident = str(document.get("user_id") or "").partition(":")
    if kind == "user" and ident.isascii() and ident.isdigit() and 0 < int(ident) < 2**63:
        return int(ident)
    return None


async def step_0007_audit_queries(db: Database) -> None:
    """AuditLog: optional customer_id (validator, backfilled), ListAuditLogs indexes."""
    await _ensure_collection(db, AUDIT_LOG, AUDIT_LOG_VALIDATOR_WITH_CUSTOMER)
    collection = db[AUDIT_LOG]
    batch: list[UpdateOne] = []
    cursor = collection.find(
        {"customer_id": {"$exists": False}}, {"_id": 1, "user_id": 1, "details.user_id": 1}
    )
    async for document in cursor:
        batch.append(
            UpdateOne({"_id": document["_id"]}, {"$set": {"customer_id": _customer_of(document)}})
        )
        if len(batch) >= _BACKFILL_BATCH:
            await collection.bulk_write(batch, ordered=False)
            batch = []
    if batch:
        await collection.bulk_write(batch, ordered=False)
    await _ensure_indexes(db, AUDIT_QUERY_INDEXES)


async def step_0008_seed_counters(db: Database) -> None:
    """Counters: one document per sequence, starting at the highest id already stored
    (0 when none), so ids are handed out by ``$inc`` on an existing document."""
    for counter, (collection, key) in SEQUENCES.items():
        top = await db[collection].find_one(
            {key: {"$type": ["int", "long"]}}, {"_id": 0, key: 1}, sort=[(key, DESCENDING)]
        )
        start = int(top[key]) if top is not None else 0
        await db[COUNTERS].update_one({"_id": counter}, {"$max": {"seq": start}}, upsert=True)
