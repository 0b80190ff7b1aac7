"""The DDS 7.2 MongoDB aggregation pipelines.

Each report has a pure builder (``*_pipeline``) returning the list of stages, and an
``async`` runner that executes it on a database and returns typed rows.

Differences from the DDS text:

* The time window is a ``since`` argument instead of ``new Date() - 30 days``
  evaluated in the shell; callers pass ``now - timedelta(days=30)`` for the DDS
  behaviour. The DDS user-activity pipeline starts with a broken draft
  (``$sum: '$count'`` over a missing field); the complete version that follows it
  in the DDS is the one implemented.
* The backup pipeline's ``$lookup`` from ``Backup`` cannot run: ``Backup`` is a
  PostgreSQL table in this project. The pipeline keeps ``job_id`` in its output and
  the runner takes an optional ``backup_id -> snapshot_name`` mapping from the
  caller (who reads PostgreSQL) to fill ``snapshot_name``, ``None`` when unknown,
  like the DDS's ``preserveNullAndEmptyArrays`` left join.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, TypedDict, cast

from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]
Stage = dict[str, Any]
Pipeline = list[Stage]

AUDIT_LOG: Final = "AuditLog"
CONTENT: Final = "Content"
CONTENT_TYPES: Final = "ContentTypes"
BACKUP_RESTORE_LOGS: Final = "BackupRestoreLogs"


class UserActivityRow(TypedDict):
    user_id: str
    action_type: str
    total_actions: int


class ContentUsageRow(TypedDict):
    content_type_name: str
    total_items: int


class BackupActivityRow(TypedDict, total=False):
    log_id: str
    job_id: str
    job_type: str
    status: str
    snapshot_name: str | None
    created_at: datetime
    action_by: int


# ------------------------------------------------------------------ user activity


def user_activity_summary_pipeline(since: datetime) -> Pipeline:
    """Actions per (user, action type) in ``AuditLog`` since ``since``."""
    return [
        {"$match": {"created_at": {"$gte": since}}},
        {
            "$group": {
                "_id": {"user_id": "$user_id", "action_type": "$action_type"},
                "total_actions": {"$sum": 1},
            }
        },
        {
            "$project": {
                "_id": 0,
                "user_id": "$_id.user_id",
                "action_type": "$_id.action_type",
                "total_actions": 1,
            }
        },
        {"$sort": {"user_id": 1, "action_type": 1}},
    ]


async def user_activity_summary(
    db: AsyncDatabase[Document], since: datetime
) -> list[UserActivityRow]:
    cursor = await db[AUDIT_LOG].aggregate(user_activity_summary_pipeline(since))
    return [
        UserActivityRow(
            user_id=row["user_id"],
            action_type=row["action_type"],
            total_actions=int(row["total_actions"]),
        )
        async for row in cursor
    ]


# ------------------------------------------------------------------ content usage


def content_usage_report_pipeline() -> Pipeline:
    """Number of ``Content`` items per content type name."""
    return [
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
            "$group": {
                "_id": "$content_type_info.content_type_name",
                "total_items": {"$sum": 1},
            }
        },
        {"$project": {"_id": 0, "content_type_name": "$_id", "total_items": 1}},
        {"$sort": {"content_type_name": 1}},
    ]


async def content_usage_report(db: AsyncDatabase[Document]) -> list[ContentUsageRow]:
    cursor = await db[CONTENT].aggregate(content_usage_report_pipeline())
    return [
        ContentUsageRow(
            content_type_name=row["content_type_name"], total_items=int(row["total_items"])
        )
        async for row in cursor
    ]


# ------------------------------------------------------------------ backup / restore


def recent_backup_restore_activity_pipeline(since: datetime) -> Pipeline:
    """``BackupRestoreLogs`` since ``since``, newest first (no ``$lookup``: see module)."""
    return [
        {"$match": {"created_at": {"$gte": since}}},
        {"$sort": {"created_at": -1}},
        {
            "$project": {
                "_id": 0,
                "log_id": 1,
                "job_id": 1,
                "job_type": 1,
                "status": 1,
                "created_at": 1,
                "action_by": 1,
            }
        },
    ]


async def recent_backup_restore_activity(
    db: AsyncDatabase[Document],
    since: datetime,
    snapshot_names: Mapping[str, str] | None = None,
) -> list[BackupActivityRow]:
    """Recent backup/restore logs; ``snapshot_names`` maps ``Backup.backup_id`` to
    ``Backup.snapshot_name`` (from PostgreSQL) and fills each row's ``snapshot_name``."""
    names = snapshot_names or {}
    cursor = await db[BACKUP_RESTORE_LOGS].aggregate(recent_backup_restore_activity_pipeline(since))
    rows: list[BackupActivityRow] = []
    async for doc in cursor:
        row = cast(BackupActivityRow, dict(doc))
        row["snapshot_name"] = names.get(str(doc.get("job_id")))
        rows.append(row)
    return rows
