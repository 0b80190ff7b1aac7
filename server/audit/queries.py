"""SQL (SQLAlchemy Core) of the audit outbox (``audit_outbox``, migration 0004)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ARRAY, BigInteger, Delete, Insert, Select, any_, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core.schema import audit_outbox

#: ``INSERT INTO audit_outbox (event) VALUES (:event)``.
INSERT_EVENT: Insert = audit_outbox.insert()


def insert_event_sql(event: str, *, source: str, when: str) -> str:
    """The outbox insert as a fragment for a statement built from the parts of several
    owners (the one-statement recharge): one event, the JSON expression ``event``, per
    row of ``source`` for which ``when`` holds."""
    return f"INSERT INTO audit_outbox (event) SELECT {event} FROM {source} WHERE {when}"


def claim_batch(limit: int) -> Select[Any]:
    """The oldest ``limit`` rows no other transaction holds, locked until commit.

    ``FOR UPDATE SKIP LOCKED``: several relays (one per replica) each take a
    different batch and never wait for each other.
    """
    return (
        select(audit_outbox.c.outbox_id, audit_outbox.c.event, audit_outbox.c.created_at)
        .order_by(audit_outbox.c.outbox_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


#: ``DELETE FROM audit_outbox WHERE outbox_id = ANY(:ids)``: one prepared statement
#: whatever the batch size.
DELETE_SHIPPED: Delete = audit_outbox.delete().where(
    audit_outbox.c.outbox_id == any_(bindparam("ids", type_=ARRAY(BigInteger)))
)

#: ``SELECT count(*) FROM audit_outbox``.
COUNT = select(func.count()).select_from(audit_outbox)


async def insert_event(conn: AsyncConnection, event: dict[str, Any]) -> None:
    await conn.execute(INSERT_EVENT, {"event": event})


async def delete_shipped(conn: AsyncConnection, ids: list[int]) -> None:
    if ids:
        await conn.execute(DELETE_SHIPPED, {"ids": ids})


async def count(conn: AsyncConnection) -> int:
    value: int = (await conn.execute(COUNT)).scalar_one()
    return value
