"""The SQL of point-in-time recovery: asking a recovered server where it stands."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection


async def recovery_state(conn: AsyncConnection) -> tuple[bool, datetime | None]:
    """Whether the server is still in recovery, and the commit time of the last
    transaction its recovery replayed (kept after promotion; None if none)."""
    row = (
        await conn.execute(select(func.pg_is_in_recovery(), func.pg_last_xact_replay_timestamp()))
    ).one()
    return bool(row[0]), row[1]
