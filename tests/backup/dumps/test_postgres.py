"""PostgreSQL dumps: consistent with their stats under writes, scratch and live
restores, subsets, broken dumps, locks."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from server.backup.dumps.checks import compare_stats, ledger_check, postgres_stats
from server.backup.dumps.postgres import (
    NEVER_RESTORED_TABLES,
    backup_tables,
    dump_postgres,
    dump_tables,
    plan_live_restore,
    restore_postgres_live,
    restore_postgres_scratch,
)
from server.backup.dumps.scratch import scratch_databases
from server.backup.errors import BackupError
from server.core import db
from server.core.config import Settings
from server.core.errors import InvalidArgument
from server.core.schema import audit_outbox, backup, notifications, transactions, users
from server.ops import pgmigrate
from tests.backup.dumps.conftest import add_users, count, credit, seed_money

HEAD = pgmigrate.head()


def test_backup_tables_and_the_restore_plan() -> None:
    everything = backup_tables()
    assert "alembic_version" not in everything
    assert {"users", "transactions", "backup", "schedule", "audit_outbox"} <= set(everything)
    assert everything == sorted(everything)
    assert backup_tables(["users", "transactions", "users"]) == ["users", "transactions"]
    with pytest.raises(InvalidArgument) as caught:
        backup_tables(["users", "nope", "pg_class"])
    assert [(v.field, v.description) for v in caught.value.violations] == [
        ("tables", "unknown table 'nope'"),
        ("tables", "unknown table 'pg_class'"),
    ]

    in_dump = ["alembic_version", "audit_outbox", "backup", "schedule", "sessions", "users"]
    assert plan_live_restore(in_dump, None) == ["sessions", "users"]
    assert plan_live_restore(in_dump, ["users"]) == ["users"]
    with pytest.raises(InvalidArgument) as caught:
        plan_live_restore(in_dump, ["backup", "transactions", "users"])
    assert [v.description for v in caught.value.violations] == [
        "table 'backup' is never restored",
        "table 'transactions' is not in the backup",
    ]
    assert {"alembic_version", "backup", "schedule", "audit_outbox"} <= NEVER_RESTORED_TABLES


async def test_dump_then_scratch_restore_gives_equal_stats(
    settings: Settings, engine: AsyncEngine, mongo_client: AsyncMongoClient[Any], private_tmp: Path
) -> None:
    await seed_money(engine)
    dump = await dump_postgres(settings, private_tmp / "pg.dump")
    assert dump.revision == HEAD
    assert dump.path.stat().st_size > 0
    assert set(dump.stats.rows) == set(backup_tables())
    assert dump.stats.rows["transactions"] >= 20
    assert "alembic_version" in await dump_tables(settings, dump.path)

    async with scratch_databases(settings, mongo_client) as scratch:
        name = scratch.pg_name
        assert name.startswith("gencharge_scratch_")
        await restore_postgres_scratch(settings, dump.path, scratch.pg_url)
        scratch_engine = db.create_engine(scratch.pg_url, pool_size=1)
        try:
            async with scratch_engine.connect() as conn:
                restored = await postgres_stats(conn, backup_tables())
                assert (await ledger_check(conn)).ok
                revision = (
                    await conn.execute(text("SELECT version_num FROM alembic_version"))
                ).scalar_one()
        finally:
            await scratch_engine.dispose()
    assert compare_stats(dump.stats, restored) == []
    assert revision == HEAD
    async with engine.connect() as conn:
        left = await conn.execute(
            text("SELECT count(*) FROM pg_database WHERE datname = :n"), {"n": name}
        )
        assert left.scalar_one() == 0


async def test_stats_match_the_dump_under_concurrent_writes(
    settings: Settings, engine: AsyncEngine, mongo_client: AsyncMongoClient[Any], private_tmp: Path
) -> None:
    ids = await seed_money(engine, users_count=3, credits=2)
    stop = asyncio.Event()
    written = 0

    async def writer() -> None:
        nonlocal written
        while not stop.is_set():
            async with engine.begin() as conn:
                await credit(conn, ids[written % len(ids)], "1.00")
            written += 1
            await asyncio.sleep(0)

    async def between_snapshot_and_dump() -> None:
        # Committed after the snapshot was exported: the dump must not hold these rows.
        async with engine.begin() as conn:
            for user_id in ids:
                await credit(conn, user_id, "2.00")

    task = asyncio.create_task(writer())
    try:
        dump = await dump_postgres(
            settings, private_tmp / "pg.dump", on_snapshot=between_snapshot_and_dump
        )
    finally:
        stop.set()
        await task
    assert written > 0
    assert await count(engine, transactions) >= dump.stats.rows["transactions"] + len(ids)

    async with scratch_databases(settings, mongo_client) as scratch:
        await restore_postgres_scratch(settings, dump.path, scratch.pg_url)
        scratch_engine = db.create_engine(scratch.pg_url, pool_size=1)
        try:
            async with scratch_engine.connect() as conn:
                restored = await postgres_stats(conn, backup_tables())
                assert (await ledger_check(conn)).ok
        finally:
            await scratch_engine.dispose()
    assert compare_stats(dump.stats, restored) == []


async def _live_stats(engine: AsyncEngine, tables: list[str]) -> Any:
    async with engine.connect() as conn:
        return await postgres_stats(conn, tables)


async def _constraints_and_triggers(engine: AsyncEngine) -> tuple[list[Any], list[Any]]:
    """Every foreign key (name, definition) and every user trigger (name, enabled)."""
    async with engine.connect() as conn:
        fks = await conn.execute(
            text(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE contype = 'f' ORDER BY conname"
            )
        )
        triggers = await conn.execute(
            text("SELECT tgname, tgenabled FROM pg_trigger WHERE NOT tgisinternal ORDER BY tgname")
        )
        return [tuple(r) for r in fks], [tuple(r) for r in triggers]


async def _add_outbox_and_backup_rows(engine: AsyncEngine) -> str:
    backup_id = f"backup_test_{uuid.uuid4().hex[:6]}"
    async with engine.begin() as conn:
        await conn.execute(insert(audit_outbox).values(event={"table_name": "x"}))
        await conn.execute(insert(backup).values(backup_id=backup_id, backup_status="success"))
    return backup_id


async def test_live_restore_replaces_chosen_tables_and_keeps_the_never_restored(
    settings: Settings, engine: AsyncEngine, private_tmp: Path
) -> None:
    ids = await seed_money(engine)
    dump = await dump_postgres(settings, private_tmp / "pg.dump")
    # Changes after the backup: more money, a deleted notification-free customer, and
    # rows of never-restored tables.
    async with engine.begin() as conn:
        for user_id in ids:
            await credit(conn, user_id, "5.00")
        newcomers = await add_users(conn, 2)
        await credit(conn, newcomers[0], "3.00")
    backup_id = await _add_outbox_and_backup_rows(engine)
    outbox_before = await count(engine, audit_outbox)
    never = sorted(NEVER_RESTORED_TABLES - {"alembic_version"})
    never_before = await _live_stats(engine, never)

    catalogue = await _constraints_and_triggers(engine)
    restored = await restore_postgres_live(settings, dump.path)
    assert await _constraints_and_triggers(engine) == catalogue
    assert restored == plan_live_restore(await dump_tables(settings, dump.path), None)
    assert "users" in restored and "backup" not in restored

    after = await _live_stats(engine, restored)
    expected = type(after)(
        {k: dump.stats.rows[k] for k in restored}, {k: dump.stats.hashes[k] for k in restored}
    )
    assert compare_stats(expected, after) == []
    assert await _live_stats(engine, never) == never_before
    assert await count(engine, audit_outbox) == outbox_before
    async with engine.connect() as conn:
        assert (await ledger_check(conn)).ok
        assert (
            await conn.execute(select(backup.c.backup_id).where(backup.c.backup_id == backup_id))
        ).scalar_one() == backup_id
        top = (await conn.execute(text("SELECT max(txn_id) FROM transactions"))).scalar_one()
    # The sequences are where the dump left them: new rows get fresh ids, triggers run.
    async with engine.begin() as conn:
        await credit(conn, ids[0], "1.00")
        row = (
            await conn.execute(
                select(transactions.c.txn_id, transactions.c.balance_after)
                .order_by(transactions.c.txn_id.desc())
                .limit(1)
            )
        ).one()
    assert row.txn_id > top and row.balance_after is not None
    async with engine.connect() as conn:
        assert (await ledger_check(conn)).ok


async def test_subset_restore_leaves_other_tables_alone(
    settings: Settings, engine: AsyncEngine, private_tmp: Path
) -> None:
    ids = await seed_money(engine, users_count=3, credits=2)
    dump = await dump_postgres(settings, private_tmp / "pg.dump")
    async with engine.begin() as conn:
        for user_id in ids:
            await credit(conn, user_id, "7.00")
        await conn.execute(
            insert(notifications).values(description="after the backup", recipient_id=ids[0])
        )
    notes = await _live_stats(engine, ["notifications"])

    assert await restore_postgres_live(settings, dump.path, tables=["users", "transactions"]) == [
        "transactions",
        "users",
    ]
    after = await _live_stats(engine, ["transactions", "users"])
    assert after.rows == {k: dump.stats.rows[k] for k in ("transactions", "users")}
    assert after.hashes == {k: dump.stats.hashes[k] for k in ("transactions", "users")}
    assert await _live_stats(engine, ["notifications"]) == notes
    async with engine.connect() as conn:
        assert (await ledger_check(conn)).ok


async def test_a_subset_that_breaks_a_foreign_key_is_refused_untouched(
    settings: Settings, engine: AsyncEngine, private_tmp: Path
) -> None:
    await seed_money(engine, users_count=2, credits=1)
    dump = await dump_postgres(settings, private_tmp / "pg.dump")
    async with engine.begin() as conn:
        newcomer = (await add_users(conn, 1))[0]
        await credit(conn, newcomer, "4.00")  # references a user the backup lacks
    before = await _live_stats(engine, backup_tables())
    with pytest.raises(BackupError) as caught:
        await restore_postgres_live(settings, dump.path, tables=["users"])
    assert caught.value.reason == "BACKUP_RESTORE_CONSTRAINT_VIOLATION"
    assert "fk_transactions_user" in str(caught.value)
    assert await _live_stats(engine, backup_tables()) == before


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
async def test_a_broken_dump_leaves_live_data_untouched(
    settings: Settings, engine: AsyncEngine, private_tmp: Path, damage: str
) -> None:
    await seed_money(engine, users_count=40, credits=10)
    dump = await dump_postgres(settings, private_tmp / "pg.dump")
    async with engine.begin() as conn:
        await conn.execute(delete(transactions).where(transactions.c.amount == 1.25))
        await conn.execute(update(users).values(wallet_balance=0))
    data = dump.path.read_bytes()
    if damage == "truncated":
        dump.path.write_bytes(data[: len(data) * 3 // 4])
    else:
        dump.path.write_bytes(b"not a dump at all" * 100)
    before = await _live_stats(engine, backup_tables())
    with pytest.raises(BackupError) as caught:
        await restore_postgres_live(settings, dump.path)
    assert caught.value.reason in {"BACKUP_DUMP_CORRUPT", "BACKUP_RESTORE_FAILED"}
    assert await _live_stats(engine, backup_tables()) == before


async def test_a_locked_table_rolls_the_restore_back(
    settings: Settings, engine: AsyncEngine, private_tmp: Path
) -> None:
    ids = await seed_money(engine, users_count=2, credits=1)
    dump = await dump_postgres(settings, private_tmp / "pg.dump")
    async with engine.begin() as conn:
        await credit(conn, ids[0], "9.00")
    before = await _live_stats(engine, backup_tables())
    async with engine.connect() as holder:
        await holder.execute(text("LOCK TABLE notifications IN ACCESS SHARE MODE"))
        with pytest.raises(BackupError) as caught:
            await restore_postgres_live(settings, dump.path, lock_timeout_seconds=0.2)
        await holder.rollback()
    assert caught.value.reason == "BACKUP_RESTORE_LOCKED"
    assert await _live_stats(engine, backup_tables()) == before


async def test_a_subset_dump_restores_into_scratch(
    settings: Settings, engine: AsyncEngine, mongo_client: AsyncMongoClient[Any], private_tmp: Path
) -> None:
    await seed_money(engine, users_count=2, credits=2)
    dump = await dump_postgres(settings, private_tmp / "pg.dump", tables=["users", "transactions"])
    assert set(dump.stats.rows) == {"users", "transactions"}
    assert await dump_tables(settings, dump.path) == ["alembic_version", "transactions", "users"]
    async with scratch_databases(settings, mongo_client) as scratch:
        await restore_postgres_scratch(settings, dump.path, scratch.pg_url)
        scratch_engine = db.create_engine(scratch.pg_url, pool_size=1)
        try:
            restored = await _live_stats(scratch_engine, ["users", "transactions"])
            assert await count(scratch_engine, notifications) == 0
        finally:
            await scratch_engine.dispose()
    assert compare_stats(dump.stats, restored) == []


async def test_without_a_database_url_nothing_runs(private_tmp: Path) -> None:
    with pytest.raises(BackupError) as caught:
        await dump_postgres(Settings(database_url=""), private_tmp / "pg.dump")
    assert caught.value.reason == "BACKUP_DATABASE_URL_MISSING"
