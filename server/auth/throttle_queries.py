"""SQL for the brute-force counters in ``auth_throttle`` (SQLAlchemy Core).

Every statement is a single atomic command, so concurrent server processes sharing the
database never lose an update: PostgreSQL serialises the row locks taken by
``INSERT ... ON CONFLICT DO UPDATE`` and each update reads the row's committed value.

Stored keys look like ``<action>:<scope>:<sha256 hex>``; ``split_part(key, ':', 2)`` is
the scope, which selects the limit that applies to the row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    Integer,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core.schema import TimestampTZ, auth_throttle

t = auth_throttle


@dataclass(frozen=True)
class ScopeLimit:
    """One scope's limit, resolved to absolute times for the current call."""

    max_failures: int
    #: Rows whose window started at or before this have an expired window.
    window_expired_at_or_before: datetime
    #: ``blocked_until`` for a key that reaches its limit now.
    blocked_until_if_tripped: datetime


@dataclass(frozen=True)
class NewRow:
    """The row inserted for a key that has no counter yet (its first failure)."""

    throttle_key: str
    window_start: datetime
    failures: int
    blocked_until: datetime | None


def _scope() -> ColumnElement[str]:
    return func.split_part(t.c.throttle_key, ":", 2)


def _per_scope_time(limits: Mapping[str, ScopeLimit], attribute: str) -> ColumnElement[datetime]:
    whens = {
        scope: literal(getattr(limit, attribute), TimestampTZ) for scope, limit in limits.items()
    }
    return case(whens, value=_scope())


def _per_scope_max(limits: Mapping[str, ScopeLimit]) -> ColumnElement[int]:
    whens = {scope: literal(limit.max_failures, Integer) for scope, limit in limits.items()}
    return case(whens, value=_scope())


async def record_failures(
    conn: AsyncConnection,
    rows: Sequence[NewRow],
    limits: Mapping[str, ScopeLimit],
    now: datetime,
) -> None:
    """Count one failure on every key, atomically, in one statement.

    A key without a row gets ``rows``' values. An existing row restarts its window when
    the old one expired, otherwise adds one; a row reaching its scope's limit is blocked
    until ``blocked_until_if_tripped`` and starts a fresh, empty window when the block
    ends (so each block is followed by the full allowance, never an instant re-block).
    Callers sort ``rows`` by key so concurrent statements lock rows in the same order
    (no deadlocks).
    """
    stmt = insert(t).values(
        [
            {
                "throttle_key": row.throttle_key,
                "window_start": row.window_start,
                "failures": row.failures,
                "blocked_until": row.blocked_until,
                "updated_at": now,
            }
            for row in rows
        ]
    )
    now_param = bindparam("throttle_now", now, type_=TimestampTZ)
    expired = t.c.window_start <= _per_scope_time(limits, "window_expired_at_or_before")
    counted = case((expired, 1), else_=t.c.failures + 1)
    tripped = counted >= _per_scope_max(limits)
    block_end = _per_scope_time(limits, "blocked_until_if_tripped")
    statement = stmt.on_conflict_do_update(
        index_elements=[t.c.throttle_key],
        set_={
            "failures": case((tripped, 0), else_=counted),
            "window_start": case(
                (tripped, block_end), (expired, now_param), else_=t.c.window_start
            ),
            "blocked_until": case((tripped, block_end), else_=t.c.blocked_until),
            "updated_at": now_param,
        },
    ).returning(t.c.throttle_key, t.c.failures, t.c.blocked_until)
    await conn.execute(statement)


async def blocked_until(
    conn: AsyncConnection, keys: Sequence[str], now: datetime
) -> list[datetime]:
    """The block ends of the keys among ``keys`` that are blocked at ``now``."""
    result = await conn.execute(
        select(t.c.blocked_until).where(t.c.throttle_key.in_(keys), t.c.blocked_until > now)
    )
    return [until for (until,) in result.all()]


async def clear(conn: AsyncConnection, keys: Sequence[str], now: datetime) -> None:
    """Forget the counters of ``keys``; a block in force is kept until it expires."""
    await conn.execute(
        delete(t).where(
            t.c.throttle_key.in_(keys),
            or_(t.c.blocked_until.is_(None), t.c.blocked_until <= now),
        )
    )


async def purge(conn: AsyncConnection, updated_before: datetime, now: datetime) -> int:
    """Delete rows idle since ``updated_before`` and not blocked at ``now``; how many."""
    result = await conn.execute(
        delete(t).where(
            and_(
                t.c.updated_at < updated_before,
                or_(t.c.blocked_until.is_(None), t.c.blocked_until <= now),
                t.c.window_start <= now,
            )
        )
    )
    return int(result.rowcount)
