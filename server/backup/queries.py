"""SQL of the backup domain (SQLAlchemy Core; owner of ``backup`` and ``schedule``) and
its MongoDB access (owner of ``BackupRestoreLogs``).

Everything here is one statement on the connection or database it is given; the rules
(what may change, what a run's next time is) are server/backup/domain.py's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from pymongo.asynchronous.database import AsyncDatabase
from sqlalchemy import Row, and_, column, delete, or_, select, table, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from migrations.mongo.collections import SCHEMA_MIGRATIONS
from server.core.pagination import keyset_query
from server.core.schema import backup, schedule

RowT = Row[Any]
Document = dict[str, Any]

BACKUP_RESTORE_LOGS: Final = "BackupRestoreLogs"


# --- backup -------------------------------------------------------------------------------


async def backup_by_id(conn: AsyncConnection, backup_id: str, *, lock: bool = False) -> RowT | None:
    statement = select(backup).where(backup.c.backup_id == backup_id)
    if lock:
        statement = statement.with_for_update()
    return (await conn.execute(statement)).one_or_none()


async def list_backups(
    conn: AsyncConnection,
    *,
    status: str | None,
    source_dbs: Sequence[str] | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> Sequence[RowT]:
    """Newest first (ties: backup_id descending), from just past ``after``."""
    statement = select(backup)
    if status is not None:
        statement = statement.where(backup.c.backup_status == status)
    if source_dbs is not None:
        statement = statement.where(backup.c.source_db.in_(source_dbs))
    statement = keyset_query(
        statement, backup.c.created_at, backup.c.backup_id, after, limit, newest_first=True
    )
    return (await conn.execute(statement)).all()


async def insert_backup(conn: AsyncConnection, values: Mapping[str, Any]) -> RowT:
    """Insert a backup row; ``created_at`` from ``values`` (the job's clock)."""
    result = await conn.execute(insert(backup).values(**values).returning(*backup.c))
    return result.one()


async def update_backup(conn: AsyncConnection, backup_id: str, values: Mapping[str, Any]) -> RowT:
    result = await conn.execute(
        update(backup).where(backup.c.backup_id == backup_id).values(**values).returning(*backup.c)
    )
    return result.one()


async def delete_backup(conn: AsyncConnection, backup_id: str) -> bool:
    result = await conn.execute(
        delete(backup).where(backup.c.backup_id == backup_id).returning(backup.c.backup_id)
    )
    return result.first() is not None


async def backups_with_status(conn: AsyncConnection, status: str) -> list[str]:
    result = await conn.execute(
        select(backup.c.backup_id).where(backup.c.backup_status == status).with_for_update()
    )
    return [str(r) for r in result.scalars()]


async def backup_lineage(conn: AsyncConnection) -> Sequence[Any]:
    """Every backup's id, status, source, time and parent (``details.parent_backup_id``):
    what retention decides on (a backup list is small: one row per job)."""
    result = await conn.execute(
        select(
            backup.c.backup_id,
            backup.c.backup_status,
            backup.c.source_db,
            backup.c.created_at,
            backup.c.details["parent_backup_id"].astext.label("parent_backup_id"),
        )
    )
    return result.all()


async def children_of(conn: AsyncConnection, backup_id: str) -> list[str]:
    """Backups whose ``details.parent_backup_id`` is ``backup_id`` (its incrementals)."""
    result = await conn.execute(
        select(backup.c.backup_id)
        .where(backup.c.details["parent_backup_id"].astext == backup_id)
        .order_by(backup.c.backup_id)
    )
    return [str(r) for r in result.scalars()]


# --- schedule -----------------------------------------------------------------------------


async def schedule_by_id(
    conn: AsyncConnection, schedule_id: str, *, lock: bool = False
) -> RowT | None:
    statement = select(schedule).where(schedule.c.schedule_id == schedule_id)
    if lock:
        statement = statement.with_for_update()
    return (await conn.execute(statement)).one_or_none()


async def task_name_taken(
    conn: AsyncConnection, task_name: str, *, except_id: str | None = None
) -> bool:
    condition = schedule.c.task_name == task_name
    if except_id is not None:
        condition = and_(condition, schedule.c.schedule_id != except_id)
    result = await conn.execute(select(schedule.c.schedule_id).where(condition).limit(1))
    return result.first() is not None


async def schedules_using(conn: AsyncConnection, backup_ids: Sequence[str]) -> Sequence[Any]:
    """Schedules naming one of ``backup_ids`` (their foreign key keeps those backups)."""
    result = await conn.execute(
        select(schedule.c.schedule_id, schedule.c.backup_id, schedule.c.isactive)
        .where(schedule.c.backup_id.in_(backup_ids))
        .order_by(schedule.c.schedule_id)
    )
    return result.all()


async def scheduled_backup_ids(conn: AsyncConnection) -> set[str]:
    result = await conn.execute(
        select(schedule.c.backup_id).where(schedule.c.backup_id.is_not(None)).distinct()
    )
    return {str(r) for r in result.scalars()}


async def insert_schedule(conn: AsyncConnection, values: Mapping[str, Any]) -> RowT | None:
    """Insert a schedule; None when its task name is taken (the unique index)."""
    result = await conn.execute(
        insert(schedule)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[schedule.c.task_name])
        .returning(*schedule.c)
    )
    return result.one_or_none()


async def update_schedule(
    conn: AsyncConnection, schedule_id: str, values: Mapping[str, Any]
) -> RowT:
    result = await conn.execute(
        update(schedule)
        .where(schedule.c.schedule_id == schedule_id)
        .values(**values)
        .returning(*schedule.c)
    )
    return result.one()


async def delete_schedule(conn: AsyncConnection, schedule_id: str) -> RowT | None:
    result = await conn.execute(
        delete(schedule).where(schedule.c.schedule_id == schedule_id).returning(*schedule.c)
    )
    return result.one_or_none()


async def list_schedules(
    conn: AsyncConnection, *, after: tuple[datetime | None, str] | None, limit: int
) -> Sequence[RowT]:
    """By next_run, soonest first (ties: schedule_id), schedules without one last."""
    statement = select(schedule)
    if after is not None:
        at, key = after
        if at is None:
            statement = statement.where(
                and_(schedule.c.next_run.is_(None), schedule.c.schedule_id > key)
            )
        else:
            statement = statement.where(
                or_(
                    schedule.c.next_run > at,
                    and_(schedule.c.next_run == at, schedule.c.schedule_id > key),
                    schedule.c.next_run.is_(None),
                )
            )
    statement = statement.order_by(
        schedule.c.next_run.asc().nulls_last(), schedule.c.schedule_id
    ).limit(limit)
    return (await conn.execute(statement)).all()


async def lock_due_schedules(conn: AsyncConnection, now: datetime, limit: int) -> Sequence[RowT]:
    """Active schedules due at ``now``, row-locked; rows another transaction holds are
    skipped (``FOR UPDATE SKIP LOCKED``): that replica is claiming them."""
    result = await conn.execute(
        select(schedule)
        .where(
            schedule.c.isactive == "active",
            schedule.c.next_run.is_not(None),
            schedule.c.next_run <= now,
        )
        .order_by(schedule.c.next_run, schedule.c.schedule_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return result.all()


# --- BackupRestoreLogs (MongoDB) ----------------------------------------------------------


async def insert_log(mongo: AsyncDatabase[Document], document: Document) -> None:
    await mongo[BACKUP_RESTORE_LOGS].insert_one(dict(document))


async def aggregate_logs(
    mongo: AsyncDatabase[Document], pipeline: list[Document]
) -> list[Document]:
    cursor = await mongo[BACKUP_RESTORE_LOGS].aggregate(pipeline)
    return [document async for document in cursor]


async def newest_successful_backup(
    conn: AsyncConnection, source_dbs: Sequence[str], *, physical: bool = False
) -> RowT | None:
    """The newest ``success`` backup whose source_db is one of ``source_dbs`` (with
    ``physical``: one whose details say it has a physical part)."""
    statement = select(backup).where(
        backup.c.backup_status == "success", backup.c.source_db.in_(source_dbs)
    )
    if physical:
        statement = statement.where(backup.c.details["physical"].as_boolean().is_(True))
    statement = statement.order_by(backup.c.created_at.desc(), backup.c.backup_id.desc()).limit(1)
    return (await conn.execute(statement)).one_or_none()


async def physical_start_lsns(conn: AsyncConnection) -> list[str]:
    """``details.physical_start_lsn`` of every successful backup that has one."""
    lsn = backup.c.details["physical_start_lsn"].astext
    result = await conn.execute(
        select(lsn).where(backup.c.backup_status == "success", lsn.is_not(None))
    )
    return [str(value) for value in result.scalars()]


# --- schema revisions ---------------------------------------------------------------------

#: Alembic's own table (not in server/core/schema.py: the service never writes it).
_alembic_version = table("alembic_version", column("version_num"))


async def postgres_revision(conn: AsyncConnection) -> str:
    """The Alembic revision the database is at (``""`` if never migrated)."""
    result = await conn.execute(select(_alembic_version.c.version_num))
    return str(result.scalar_one_or_none() or "")


async def mongo_revision(db: AsyncDatabase[Document]) -> str:
    """The last versioned MongoDB step applied (step ids sort in order)."""
    ids = [str(doc["_id"]) async for doc in db[SCHEMA_MIGRATIONS].find({}, {"_id": 1})]
    return max(ids, default="")
