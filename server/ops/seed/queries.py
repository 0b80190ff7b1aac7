"""SQL of the seed loaders (SQLAlchemy Core on the tables of :mod:`server.core.schema`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, Table, cast, func, literal, select
from sqlalchemy.dialects.postgresql import REGCLASS, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core.schema import admins, users


def _present(row: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` without its ``None`` values, so the column default (or SQL NULL) applies.

    Leaving a JSONB key out matters: SQLAlchemy would store Python ``None`` as the
    JSON value ``null`` rather than SQL NULL.
    """
    return {key: value for key, value in row.items() if value is not None}


async def insert_if_absent(conn: AsyncConnection, table: Table, row: Mapping[str, Any]) -> bool:
    """Insert ``row`` unless it conflicts with an existing one; True when inserted.

    Only for tables without a BEFORE INSERT trigger that has side effects: such a
    trigger runs even when ON CONFLICT DO NOTHING then skips the row.
    """
    pk = list(table.primary_key.columns)
    result = await conn.execute(
        insert(table).values(**_present(row)).on_conflict_do_nothing().returning(*pk)
    )
    return result.first() is not None


async def insert_all_if_absent(
    conn: AsyncConnection, table: Table, rows: Iterable[Mapping[str, Any]]
) -> int:
    """:func:`insert_if_absent` for each row; the number inserted."""
    inserted = 0
    for row in rows:
        inserted += await insert_if_absent(conn, table, row)
    return inserted


async def advance_identity(conn: AsyncConnection, column: Column[Any]) -> None:
    """Move ``column``'s identity sequence up to the column's maximum.

    Rows inserted with explicit ids do not move the sequence; without this, the next
    insert without an id would collide with them. The sequence never moves down.
    """
    table = column.table
    assert isinstance(table, Table)
    sequence = func.pg_get_serial_sequence(literal(table.name), literal(column.name))
    max_id = select(func.max(column)).scalar_subquery()
    last = func.coalesce(func.pg_sequence_last_value(cast(sequence, REGCLASS)), 0)
    await conn.execute(select(func.setval(sequence, max_id)).where(max_id > last))


# --------------------------------------------------------------------- accounts


async def admin_id_by_email(conn: AsyncConnection, email: str) -> int | None:
    result = await conn.execute(select(admins.c.admin_id).where(admins.c.email == email))
    return result.scalar_one_or_none()


async def user_id_by_email(conn: AsyncConnection, email: str) -> int | None:
    result = await conn.execute(select(users.c.user_id).where(users.c.email == email))
    return result.scalar_one_or_none()


async def insert_account(
    conn: AsyncConnection, table: Table, id_column: Column[int], row: Mapping[str, Any]
) -> int | None:
    """Insert an account with its DDS id, or with a generated id when that id is taken
    (say, by a bootstrap admin created first); None when the email or phone is taken."""
    result = await conn.execute(
        insert(table).values(**_present(row)).on_conflict_do_nothing().returning(id_column)
    )
    inserted = result.scalar_one_or_none()
    if inserted is not None:
        return int(inserted)
    await advance_identity(conn, id_column)
    without_id = {key: value for key, value in row.items() if key != id_column.name}
    result = await conn.execute(
        insert(table).values(**_present(without_id)).on_conflict_do_nothing().returning(id_column)
    )
    inserted = result.scalar_one_or_none()
    return None if inserted is None else int(inserted)


# --------------------------------------------------------------------- ledger


async def lock_user(conn: AsyncConnection, user_id: int) -> None:
    """Row-lock the user so concurrent seeders serialise on its ledger."""
    await conn.execute(select(users.c.user_id).where(users.c.user_id == user_id).with_for_update())


async def wallet_balance(conn: AsyncConnection, user_id: int) -> Decimal:
    result = await conn.execute(select(users.c.wallet_balance).where(users.c.user_id == user_id))
    return Decimal(result.scalar_one())
