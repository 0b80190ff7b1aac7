"""SQL (SQLAlchemy Core) of the audit outbox (``audit_outbox``, migrations 0004 and 0010).

Each row's ``event_id`` (a UUID) is drawn by PostgreSQL's column default when the row is
inserted, whatever statement inserts it; it identifies the event for good (MongoDB's
``AuditLog.audit_id``). ``outbox_id`` only orders the rows.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import ARRAY, Delete, Insert, Select, any_, bindparam, func, select
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core.schema import audit_outbox

#: ``INSERT INTO audit_outbox (event) VALUES (:event)``; the database draws ``event_id``.
INSERT_EVENT: Insert = audit_outbox.insert()


def claim_batch(limit: int) -> Select[Any]:
    """``(event_id, event, created_at)`` of the oldest ``limit`` rows no other
    transaction holds, locked until commit.

    ``FOR UPDATE SKIP LOCKED``: several relays (one per replica) each take a
    different batch and never wait for each other. Oldest is by ``outbox_id``; after a
    sequence went back new rows may come first, which changes the order, not the set.
    """
    return (
        select(audit_outbox.c.event_id, audit_outbox.c.event, audit_outbox.c.created_at)
        .order_by(audit_outbox.c.outbox_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


#: ``DELETE FROM audit_outbox WHERE event_id = ANY(:ids)``: one prepared statement
#: whatever the batch size.
DELETE_SHIPPED: Delete = audit_outbox.delete().where(
    audit_outbox.c.event_id == any_(bindparam("ids", type_=ARRAY(PG_UUID(as_uuid=True))))
)

#: ``SELECT count(*) FROM audit_outbox``.
COUNT = select(func.count()).select_from(audit_outbox)


async def insert_event(conn: AsyncConnection, event: dict[str, Any]) -> None:
    await conn.execute(INSERT_EVENT, {"event": event})


async def delete_shipped(conn: AsyncConnection, ids: list[UUID]) -> None:
    if ids:
        await conn.execute(DELETE_SHIPPED, {"ids": ids})


async def count(conn: AsyncConnection) -> int:
    value: int = (await conn.execute(COUNT)).scalar_one()
    return value
