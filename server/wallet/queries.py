"""SQL for the wallet (SQLAlchemy Core): reading a customer's balance.

Nothing here writes: the balance moves only through ledger rows (server/ledger), whose
database trigger ``update_wallet_balance`` moves ``users.wallet_balance``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core.schema import users


async def get_wallet(conn: AsyncConnection, user_id: int) -> Row[Any] | None:
    columns: tuple[Any, ...] = (
        users.c.user_id,
        users.c.wallet_balance,
        users.c.updated_at,
        users.c.status,
    )
    result = await conn.execute(select(*columns).where(users.c.user_id == user_id))
    row: Row[Any] | None = result.one_or_none()
    return row
