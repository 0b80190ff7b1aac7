"""The large-database phase of `make bench`: grow the database while the server runs,
then measure again.

:func:`grow` adds ``n_users`` customers (phone numbers ``PHONE_BASE + user_id``, each
funded through a ledger credit) and fills ``transactions`` up to ``ledger_rows`` more
rows (top-ups and wallet-paid recharges of the bench plan, through the same wallet
trigger as every ledger row), set-based, 10,000 rows a statement; :func:`settle` then
vacuums, analyzes and checkpoints. The
recharges measured afterwards pick their payers among the new customers, so every
lookup, lock and insert meets the large tables.

:func:`seq_scans` reads PostgreSQL's per-table sequential-scan counters: the
difference across a phase shows whether the hot path scans a table instead of using an
index (a few scans from the server's background jobs are expected; scans in proportion
to the calls are not).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import asyncpg

#: The tables a wallet recharge reads or writes.
HOT_TABLES = (
    "users",
    "wallets",
    "transactions",
    "currentactiveplans",
    "recharges",
    "idempotency_keys",
    "plans",
    "offers",
    "referral_rewards",
    "audit_outbox",
)
CHUNK = 10_000


async def grow(
    database_url: str,
    n_users: int,
    *,
    phone_base: int,
    funds: Decimal,
) -> tuple[int, ...]:
    """Add ``n_users`` funded customers; their ids."""
    conn = await asyncpg.connect(_dsn(database_url))
    ids: list[int] = []
    try:
        for first in range(0, n_users, CHUNK):
            count = min(CHUNK, n_users - first)
            async with conn.transaction():
                rows = await conn.fetch(
                    "INSERT INTO users (name, email, user_type)"
                    " SELECT 'Bench Big ' || i, 'bench-big-' || i || '@example.com', 'prepaid'"
                    " FROM generate_series($1::integer, $2::integer) AS i"
                    " RETURNING user_id",
                    first,
                    first + count - 1,
                )
                chunk = [int(r["user_id"]) for r in rows]
                await conn.execute(
                    "UPDATE users SET phone_number = ($1::bigint + user_id)::text"
                    " WHERE user_id = ANY($2::integer[])",
                    phone_base,
                    chunk,
                )
                # Funds through the ledger: the wallet trigger moves each balance.
                await conn.execute(
                    "INSERT INTO transactions (user_id, category, txn_type, amount, source,"
                    " status, payment_method, payment_transaction_id)"
                    " SELECT u, 'wallet', 'credit', $2::numeric, 'wallet_topup', 'success',"
                    " 'UPI', 'bench-big-fund-' || u FROM unnest($1::integer[]) AS u",
                    chunk,
                    funds,
                )
            ids += chunk
    finally:
        await conn.close()
    return tuple(ids)


async def settle(database_url: str) -> None:
    """Leave the grown database as a long-lived one is between bursts: vacuumed (else
    autovacuum would work through the new rows during the measurement), analyzed, and
    checkpointed (else the checkpoint of the new rows' pages would land in it)."""
    conn = await asyncpg.connect(_dsn(database_url))
    try:
        await conn.execute("VACUUM (ANALYZE)")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def ledger_rows(database_url: str) -> int:
    conn = await asyncpg.connect(_dsn(database_url))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM transactions"))
    finally:
        await conn.close()


async def seq_scans(database_url: str, tables: Sequence[str] = HOT_TABLES) -> dict[str, int]:
    """Sequential scans so far per table (pg_stat_user_tables). Backends report their
    counts at most every few seconds, and at exit: read them with the server idle for a
    while, or stopped."""
    conn = await asyncpg.connect(_dsn(database_url))
    try:
        rows = await conn.fetch(
            "SELECT relname, seq_scan FROM pg_stat_user_tables WHERE relname = ANY($1::text[])",
            list(tables),
        )
    finally:
        await conn.close()
    return {str(r["relname"]): int(r["seq_scan"] or 0) for r in rows}


def _dsn(database_url: str) -> str:
    """asyncpg wants ``postgresql://``, SQLAlchemy URLs say ``postgresql+asyncpg://``."""
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
