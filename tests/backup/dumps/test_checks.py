"""Stats, the ledger invariant and their comparison."""

from __future__ import annotations

from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from server.backup.dumps.checks import TableStats, compare_stats, ledger_check, postgres_stats
from server.core.schema import users
from tests.backup.dumps.conftest import seed_money


def test_compare_stats_lines() -> None:
    expected = TableStats(
        rows={"transactions": 120, "users": 3, "plans": 2, "offers": 1},
        hashes={"transactions": "1", "users": "2", "plans": "3", "offers": "4"},
    )
    actual = TableStats(
        rows={"transactions": 119, "users": 3, "offers": 1, "extra": 0},
        hashes={"transactions": "1", "users": "9", "offers": "4", "extra": "0"},
    )
    assert compare_stats(expected, actual) == [
        "plans: missing",
        "transactions: rows 120 != 119",
        "users: hash differs",
        "extra: unexpected",
    ]
    assert compare_stats(expected, expected) == []


async def test_ledger_check_detects_a_tampered_balance(engine: AsyncEngine) -> None:
    ids = await seed_money(engine, users_count=3, credits=2)
    async with engine.connect() as conn:
        before = await ledger_check(conn)
    assert before.ok and before.wallets >= 3 and before.mismatches == []
    async with engine.begin() as conn:
        await conn.execute(
            update(users)
            .where(users.c.user_id == ids[1])
            .values(wallet_balance=users.c.wallet_balance + 1)
        )
    async with engine.connect() as conn:
        after = await ledger_check(conn)
    assert not after.ok
    assert after.mismatches == [f"user {ids[1]}: balance 4.50 != ledger 3.50"]


async def test_postgres_hash_ignores_row_order_and_session_settings(engine: AsyncEngine) -> None:
    await seed_money(engine)
    tables = ["users", "transactions", "schedule"]
    async with engine.connect() as conn:
        first = await postgres_stats(conn, tables)
    async with engine.begin() as conn:
        # Rewrites every row (a new physical order), changes nothing.
        await conn.execute(update(users).values(name=users.c.name))
        await conn.execute(text("CLUSTER transactions USING idx_transactions_created_at"))
    async with engine.connect() as conn:
        await conn.execute(text("SET TimeZone = 'Asia/Kolkata'"))
        await conn.execute(text("SET DateStyle = 'SQL, DMY'"))
        second = await postgres_stats(conn, tables)
        # The caller's settings are put back.
        zone = (await conn.execute(text("SHOW TimeZone"))).scalar_one()
    assert zone == "Asia/Kolkata"
    assert second == first
    assert first.rows["transactions"] >= 20 and len(set(first.hashes.values())) == 3
