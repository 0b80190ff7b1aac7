"""The DDS 7.1/8.1 triggers behave as specified, against a real PostgreSQL.

The wallet trigger (update_wallet_balance) is GenCharge's race-free replacement of
the DDS version; its semantics are in docs/data-model.md:
- a ledger row moves the wallet iff category = 'wallet' AND status = 'success';
- debits beyond the balance raise SQLSTATE GC001 and change nothing;
- success/failed rows are final (SQLSTATE GC002 on any change of status or money).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from server.core import schema
from server.core.dburl import to_async_url

INSUFFICIENT = "GC001"
FINAL = "GC002"


@pytest.fixture
async def conn(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(pg_url)
    try:
        yield connection
    finally:
        await connection.close()


async def make_user(
    conn: asyncpg.Connection, balance: str | int = 0, status: str = "active"
) -> int:
    tag = uuid.uuid4().hex[:10]
    user_id: int = await conn.fetchval(
        "INSERT INTO users (name, email, phone_number, referral_code, user_type, status, "
        "wallet_balance) VALUES ($1, $2, $3, $4, 'prepaid', $5, $6) RETURNING user_id",
        f"user {tag}",
        f"{tag}@example.test",
        f"+91{int(tag, 16) % 10**10:010d}",
        f"REF{tag}",
        status,
        Decimal(balance),
    )
    return user_id


async def balance(conn: asyncpg.Connection, user_id: int) -> Decimal:
    value: Decimal = await conn.fetchval(
        "SELECT wallet_balance FROM users WHERE user_id = $1", user_id
    )
    return value


async def ledger(
    conn: asyncpg.Connection,
    user_id: int,
    txn_type: str,
    amount: str | int,
    *,
    category: str = "wallet",
    status: str = "success",
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        "INSERT INTO transactions (user_id, category, txn_type, amount, status, source) "
        "VALUES ($1, $2, $3, $4, $5, 'wallet_topup') RETURNING *",
        user_id,
        category,
        txn_type,
        Decimal(amount),
        status,
    )
    return row


async def make_plan(conn: asyncpg.Connection) -> int:
    plan_id: int = await conn.fetchval(
        "INSERT INTO plans (plan_name, validity, plan_type, price) "
        "VALUES ($1, 28, 'prepaid', 299) RETURNING plan_id",
        f"plan {uuid.uuid4().hex[:8]}",
    )
    return plan_id


# --- transaction timestamp ------------------------------------------------------------


async def test_transaction_created_at_is_forced_to_now(conn: asyncpg.Connection) -> None:
    user_id = await make_user(conn)
    row = await conn.fetchrow(
        "INSERT INTO transactions (user_id, category, txn_type, amount, status, created_at) "
        "VALUES ($1, 'wallet', 'credit', 1, 'pending', '2000-01-01T00:00:00Z') "
        "RETURNING created_at, now() AS now",
        user_id,
    )
    assert row["created_at"] == row["now"]


# --- wallet balance -----------------------------------------------------------------


async def test_credit_raises_balance_and_sets_balance_after(conn: asyncpg.Connection) -> None:
    user_id = await make_user(conn, "100.50")
    row = await ledger(conn, user_id, "credit", "49.50")
    assert row["balance_after"] == Decimal("150.00")
    assert await balance(conn, user_id) == Decimal("150.00")


async def test_debit_lowers_balance(conn: asyncpg.Connection) -> None:
    user_id = await make_user(conn, 100)
    row = await ledger(conn, user_id, "debit", "30.25")
    assert row["balance_after"] == Decimal("69.75")
    assert await balance(conn, user_id) == Decimal("69.75")
    row = await ledger(conn, user_id, "debit", "69.75")
    assert row["balance_after"] == Decimal("0.00")
    assert await balance(conn, user_id) == Decimal("0.00")


async def test_debit_beyond_balance_raises_and_changes_nothing(
    conn: asyncpg.Connection,
) -> None:
    user_id = await make_user(conn, 10)
    with pytest.raises(asyncpg.PostgresError) as info:
        await ledger(conn, user_id, "debit", "10.01")
    assert info.value.sqlstate == INSUFFICIENT
    assert "insufficient wallet balance" in str(info.value)
    assert await balance(conn, user_id) == Decimal("10.00")
    count = await conn.fetchval("SELECT count(*) FROM transactions WHERE user_id = $1", user_id)
    assert count == 0


async def test_insufficient_balance_through_sqlalchemy(pg_url: str) -> None:
    """What application code sees: a DBAPIError whose orig carries sqlstate GC001."""
    engine = create_async_engine(to_async_url(pg_url))
    try:
        async with engine.begin() as sa_conn:
            user_id = (
                await sa_conn.execute(
                    insert(schema.users)
                    .values(user_type="prepaid", wallet_balance=Decimal(5))
                    .returning(schema.users.c.user_id)
                )
            ).scalar_one()
        with pytest.raises(DBAPIError) as info:
            async with engine.begin() as sa_conn:
                await sa_conn.execute(
                    insert(schema.transactions).values(
                        user_id=user_id,
                        category="wallet",
                        txn_type="debit",
                        amount=Decimal(6),
                        status="success",
                    )
                )
        assert getattr(info.value.orig, "sqlstate", None) == INSUFFICIENT
        async with engine.connect() as sa_conn:
            value = (
                await sa_conn.execute(
                    select(schema.users.c.wallet_balance).where(schema.users.c.user_id == user_id)
                )
            ).scalar_one()
        assert value == Decimal("5.00")
    finally:
        await engine.dispose()


async def test_unknown_user_is_a_foreign_key_violation(conn: asyncpg.Connection) -> None:
    for txn_type in ("credit", "debit"):
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await ledger(conn, 987654321, txn_type, 1)


async def test_pending_row_moves_nothing_until_success_once(conn: asyncpg.Connection) -> None:
    user_id = await make_user(conn, 100)
    row = await ledger(conn, user_id, "credit", 25, status="pending")
    assert row["balance_after"] is None
    assert await balance(conn, user_id) == Decimal("100.00")

    balance_after = await conn.fetchval(
        "UPDATE transactions SET status = 'success' WHERE txn_id = $1 RETURNING balance_after",
        row["txn_id"],
    )
    assert balance_after == Decimal("125.00")
    assert await balance(conn, user_id) == Decimal("125.00")

    # Setting 'success' again is a no-op (the row is unchanged): the wallet moves once.
    # Metadata updates on a final row move nothing either.
    await conn.execute(
        "UPDATE transactions SET status = 'success' WHERE txn_id = $1", row["txn_id"]
    )
    await conn.execute(
        "UPDATE transactions SET payment_method = 'UPI' WHERE txn_id = $1", row["txn_id"]
    )
    assert await balance(conn, user_id) == Decimal("125.00")
    moved = await conn.fetchval(
        "SELECT balance_after FROM transactions WHERE txn_id = $1", row["txn_id"]
    )
    assert moved == Decimal("125.00")


async def test_success_rows_are_final(conn: asyncpg.Connection) -> None:
    user_id = await make_user(conn, 100)
    row = await ledger(conn, user_id, "debit", 40)
    for assignment in ("status = 'failed'", "status = 'pending'", "amount = 1"):
        with pytest.raises(asyncpg.PostgresError) as info:
            await conn.execute(
                f"UPDATE transactions SET {assignment} WHERE txn_id = $1", row["txn_id"]
            )
        assert info.value.sqlstate == FINAL
    assert await balance(conn, user_id) == Decimal("60.00")


async def test_pending_to_failed_moves_nothing_and_is_final(conn: asyncpg.Connection) -> None:
    user_id = await make_user(conn, 100)
    row = await ledger(conn, user_id, "debit", 40, status="pending")
    await conn.execute("UPDATE transactions SET status = 'failed' WHERE txn_id = $1", row["txn_id"])
    assert await balance(conn, user_id) == Decimal("100.00")
    with pytest.raises(asyncpg.PostgresError) as info:
        await conn.execute(
            "UPDATE transactions SET status = 'success' WHERE txn_id = $1", row["txn_id"]
        )
    assert info.value.sqlstate == FINAL
    assert await balance(conn, user_id) == Decimal("100.00")


async def test_pending_debit_confirmed_beyond_balance_stays_pending(
    conn: asyncpg.Connection,
) -> None:
    user_id = await make_user(conn, 10)
    row = await ledger(conn, user_id, "debit", 20, status="pending")
    with pytest.raises(asyncpg.PostgresError) as info:
        await conn.execute(
            "UPDATE transactions SET status = 'success' WHERE txn_id = $1", row["txn_id"]
        )
    assert info.value.sqlstate == INSUFFICIENT
    status = await conn.fetchval(
        "SELECT status::text FROM transactions WHERE txn_id = $1", row["txn_id"]
    )
    assert status == "pending"
    assert await balance(conn, user_id) == Decimal("10.00")


async def test_service_category_rows_do_not_move_the_wallet(conn: asyncpg.Connection) -> None:
    user_id = await make_user(conn, 5)
    row = await ledger(conn, user_id, "debit", 299, category="service")
    assert row["balance_after"] is None
    assert await balance(conn, user_id) == Decimal("5.00")


async def test_client_supplied_balance_after_is_ignored(conn: asyncpg.Connection) -> None:
    user_id = await make_user(conn, 0)
    row = await conn.fetchrow(
        "INSERT INTO transactions (user_id, category, txn_type, amount, status, balance_after) "
        "VALUES ($1, 'wallet', 'credit', 7, 'success', 9999) RETURNING balance_after",
        user_id,
    )
    assert row["balance_after"] == Decimal("7.00")


async def test_check_constraint_rejects_negative_balance(conn: asyncpg.Connection) -> None:
    user_id = await make_user(conn, 1)
    with pytest.raises(asyncpg.CheckViolationError) as info:
        await conn.execute(
            "UPDATE users SET wallet_balance = wallet_balance - 2 WHERE user_id = $1", user_id
        )
    assert info.value.constraint_name == "ck_users_wallet_balance_nonnegative"
    assert await balance(conn, user_id) == Decimal("1.00")


async def test_payment_transaction_id_is_unique(conn: asyncpg.Connection) -> None:
    user_id = await make_user(conn)
    insert_sql = (
        "INSERT INTO transactions (user_id, category, txn_type, amount, status, "
        "payment_transaction_id) VALUES ($1, 'wallet', 'credit', 1, 'pending', $2)"
    )
    await conn.execute(insert_sql, user_id, "pay_123")
    await conn.execute(insert_sql, user_id, None)
    await conn.execute(insert_sql, user_id, None)
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(insert_sql, user_id, "pay_123")


async def test_concurrent_debits_never_overdraw(pg_url: str) -> None:
    setup = await asyncpg.connect(pg_url)
    try:
        user_id = await make_user(setup, 500)
    finally:
        await setup.close()

    pool = await asyncpg.create_pool(pg_url, min_size=20, max_size=20)
    assert pool is not None
    try:
        start = asyncio.Event()

        async def debit() -> str:
            async with pool.acquire() as connection:
                await start.wait()
                try:
                    await ledger(connection, user_id, "debit", 10)
                except asyncpg.PostgresError as exc:
                    assert exc.sqlstate == INSUFFICIENT, exc
                    return "insufficient"
                return "ok"

        tasks = [asyncio.create_task(debit()) for _ in range(100)]
        await asyncio.sleep(0.1)
        start.set()
        results = await asyncio.gather(*tasks)

        async with pool.acquire() as connection:
            final = await balance(connection, user_id)
            rows = await connection.fetch(
                "SELECT amount, balance_after FROM transactions "
                "WHERE user_id = $1 AND status = 'success' ORDER BY balance_after DESC",
                user_id,
            )
    finally:
        await pool.close()

    assert results.count("ok") == 50
    assert results.count("insufficient") == 50
    assert final == Decimal("0.00")
    assert len(rows) == 50
    assert Decimal(500) - sum(r["amount"] for r in rows) == final
    # Each debit saw a distinct balance: 490, 480, ..., 0.
    assert [r["balance_after"] for r in rows] == [Decimal(490 - 10 * i) for i in range(50)]


# --- plan expiry ----------------------------------------------------------------------


async def test_plan_expiry_on_insert_and_update(conn: asyncpg.Connection) -> None:
    user_id = await make_user(conn)
    plan_id = await make_plan(conn)
    now = datetime.now(UTC)
    insert_sql = (
        "INSERT INTO currentactiveplans (user_id, plan_id, phone_number, valid_from, valid_to, "
        "status) VALUES ($1, $2, '9000000000', $3, $4, 'active') RETURNING id, status::text"
    )
    past = await conn.fetchrow(
        insert_sql, user_id, plan_id, now - timedelta(days=30), now - timedelta(days=1)
    )
    assert past["status"] == "expired"
    live = await conn.fetchrow(insert_sql, user_id, plan_id, now, now + timedelta(days=28))
    assert live["status"] == "active"
    status = await conn.fetchval(
        "UPDATE currentactiveplans SET valid_to = $2 WHERE id = $1 RETURNING status::text",
        live["id"],
        now - timedelta(minutes=1),
    )
    assert status == "expired"


# --- notifications ------------------------------------------------------------------


async def test_notification_timestamp_is_set(conn: asyncpg.Connection) -> None:
    user_id = await make_user(conn)
    row = await conn.fetchrow(
        "INSERT INTO notifications (sender_type, description, recipient_id, timestamp) "
        "VALUES ('system', 'hello', $1, '2001-01-01T00:00:00Z') "
        "RETURNING timestamp, now() AS now",
        user_id,
    )
    assert row["timestamp"] == row["now"]


# --- referral rewards ---------------------------------------------------------------


async def test_referral_reward_status(conn: asyncpg.Connection) -> None:
    referrer = await make_user(conn)
    active = await make_user(conn, status="active")
    blocked = await make_user(conn, status="blocked")
    insert_sql = (
        "INSERT INTO referralrewards (referrer_id, referred_id, reward_amount, status) "
        "VALUES ($1, $2, 50, 'paid') RETURNING status::text"
    )
    assert await conn.fetchval(insert_sql, referrer, active) == "earned"
    assert await conn.fetchval(insert_sql, referrer, blocked) == "pending"


# --- verified contacts (migration 0009) ---------------------------------------------


async def _verified(conn: asyncpg.Connection, table: str, key: str, ident: int) -> tuple:
    row = await conn.fetchrow(
        f"SELECT email_verified_at IS NOT NULL AS e, phone_verified_at IS NOT NULL AS p "
        f"FROM {table} WHERE {key} = $1",
        ident,
    )
    return (row["e"], row["p"])


@pytest.mark.parametrize(("table", "key"), [("users", "user_id"), ("admins", "admin_id")])
async def test_changing_a_contact_clears_its_verification(
    conn: asyncpg.Connection, table: str, key: str
) -> None:
    """Whatever statement changes an e-mail or phone unverifies it, unless the same
    statement sets the verification (what ConfirmContactChange does)."""
    tag = uuid.uuid4().hex[:8]
    if table == "users":
        ident = await make_user(conn)
    else:
        ident = await conn.fetchval(
            "INSERT INTO admins (name, email, phone_number) VALUES ('a', $1, '9123456780') "
            "RETURNING admin_id",
            f"admin-{tag}@example.test",
        )
    await conn.execute(
        f"UPDATE {table} SET email_verified_at = now(), phone_verified_at = now() WHERE {key} = $1",
        ident,
    )
    assert await _verified(conn, table, key, ident) == (True, True)
    # Same values, or other columns: nothing is cleared.
    await conn.execute(
        f"UPDATE {table} SET email = email, phone_number = phone_number, name = 'x' "
        f"WHERE {key} = $1",
        ident,
    )
    assert await _verified(conn, table, key, ident) == (True, True)
    await conn.execute(
        f"UPDATE {table} SET email = $2 WHERE {key} = $1", ident, f"other-{tag}@example.test"
    )
    assert await _verified(conn, table, key, ident) == (False, True)
    await conn.execute(f"UPDATE {table} SET phone_number = NULL WHERE {key} = $1", ident)
    assert await _verified(conn, table, key, ident) == (False, False)
    # A change that verifies the new contact in the same statement keeps it verified.
    await conn.execute(
        f"UPDATE {table} SET phone_number = '9123456781', phone_verified_at = now() "
        f"WHERE {key} = $1",
        ident,
    )
    assert await _verified(conn, table, key, ident) == (False, True)
