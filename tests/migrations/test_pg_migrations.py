"""Alembic migrations go up and down cleanly on an empty database."""

from __future__ import annotations

import asyncio
import os
import sys
from decimal import Decimal

import asyncpg

from server.core.dburl import to_async_url
from server.ops import pgmigrate

_OBJECTS_SQL = {
    "tables": "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
    "views": "SELECT viewname FROM pg_views WHERE schemaname = 'public'",
    "types": (
        "SELECT t.typname FROM pg_type t WHERE t.typnamespace = 'public'::regnamespace "
        "AND t.typtype IN ('e', 'd', 'c') "
        "AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.reltype = t.oid)"
    ),
    "functions": "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace",
    "sequences": "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'",
    "indexes": "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'",
    "triggers": "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal",
}


async def _objects(url: str) -> dict[str, set[str]]:
    conn = await asyncpg.connect(url)
    try:
        return {kind: {r[0] for r in await conn.fetch(sql)} for kind, sql in _OBJECTS_SQL.items()}
    finally:
        await conn.close()


async def test_upgrade_downgrade_upgrade(pg_empty_url: str) -> None:
    assert await asyncio.to_thread(pgmigrate.current, pg_empty_url) is None

    await asyncio.to_thread(pgmigrate.upgrade, pg_empty_url)
    head = pgmigrate.head()
    assert await asyncio.to_thread(pgmigrate.current, pg_empty_url) == head
    migrated = await _objects(pg_empty_url)
    assert {"users", "transactions", "schedule", "alembic_version"} <= migrated["tables"]
    assert {"user_permissions_v", "transaction_summary_v", "active_plans_v"} <= migrated["views"]
    assert "update_wallet_balance" in migrated["functions"]
    assert "user_type_enum" in migrated["types"]

    await asyncio.to_thread(pgmigrate.downgrade, pg_empty_url, "base")
    assert await asyncio.to_thread(pgmigrate.current, pg_empty_url) is None
    emptied = await _objects(pg_empty_url)
    assert emptied["tables"] <= {"alembic_version"}
    assert emptied["views"] == set()
    assert emptied["types"] == set()
    assert emptied["functions"] == set()
    assert emptied["sequences"] == set()
    assert emptied["triggers"] == set()
    assert emptied["indexes"] <= {"alembic_version_pkc"}

    await asyncio.to_thread(pgmigrate.upgrade, pg_empty_url, "head")
    assert await asyncio.to_thread(pgmigrate.current, pg_empty_url) == head
    assert await _objects(pg_empty_url) == migrated


REVISIONS = [
    "0001_core_tables",
    "0002_views_triggers",
    "0003_indexes",
    "0004_identity_access",
    "0005_money_path",
    "0006_bill_reminder_unique",
    "0007_idempotency_rpc_paths",
    "0008_service_account_scopes",
    "0009_contact_verification",
    "0010_audit_event_ids",
    "0011_payment_attempts",
    "0012_recharges",
    "0013_refunds_adjustments",
    "0014_dashboard_indexes",
    "0015_service_account_description",
    "0016_backup_service",
    "0017_service_token_cutoff",
    "0018_queue_end_index",
    "0019_recharge_functions",
]


async def test_each_revision_steps_down_and_up(pg_empty_url: str) -> None:
    revisions = REVISIONS
    for revision in revisions:
        await asyncio.to_thread(pgmigrate.upgrade, pg_empty_url, revision)
        assert await asyncio.to_thread(pgmigrate.current, pg_empty_url) == revision
    for previous in reversed([None, *revisions[:-1]]):
        await asyncio.to_thread(pgmigrate.downgrade, pg_empty_url, "-1")
        assert await asyncio.to_thread(pgmigrate.current, pg_empty_url) == previous


async def test_concurrent_upgrades_in_one_process(pg_empty_url: str) -> None:
    await asyncio.gather(*(asyncio.to_thread(pgmigrate.upgrade, pg_empty_url) for _ in range(3)))
    assert await asyncio.to_thread(pgmigrate.current, pg_empty_url) == pgmigrate.head()


async def test_concurrent_upgrades_from_several_processes(pg_empty_url: str) -> None:
    # Several replicas starting at once: the advisory lock in env.py lets one migrate
    # at a time; the others then find the database at head.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    code = "import sys; from server.ops import pgmigrate; pgmigrate.upgrade(sys.argv[1])"
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, pg_empty_url, env=env, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(3)
    ]
    for proc in procs:
        _, stderr = await proc.communicate()
        assert proc.returncode == 0, stderr.decode()
    assert await asyncio.to_thread(pgmigrate.current, pg_empty_url) == pgmigrate.head()


def test_head_is_the_last_revision() -> None:
    assert pgmigrate.head() == REVISIONS[-1]


def test_to_async_url() -> None:
    assert (
        to_async_url("postgresql://postgres@127.0.0.1:5432/db")
        == "postgresql+asyncpg://postgres@127.0.0.1:5432/db"
    )
    assert to_async_url("postgres://u:p%40ss@h/db") == "postgresql+asyncpg://u:p%40ss@h/db"
    assert (
        to_async_url("postgresql+asyncpg://u@h:1/d?ssl=disable")
        == "postgresql+asyncpg://u@h:1/d?ssl=disable"
    )
    assert (
        to_async_url("postgresql://u@h/d?sslmode=require&application_name=x")
        == "postgresql+asyncpg://u@h/d?ssl=require"
    )
    assert to_async_url("postgresql://u@h/d?connect_timeout=5") == (
        "postgresql+asyncpg://u@h/d?timeout=5"
    )


async def test_0006_keeps_one_reminder_per_bill(pg_empty_url: str) -> None:
    """Duplicate reminders written before the unique index: the paid one (else the
    oldest) is kept, so the upgrade succeeds on existing data."""
    await asyncio.to_thread(pgmigrate.upgrade, pg_empty_url, "0005_money_path")
    conn = await asyncpg.connect(pg_empty_url)
    try:
        user_id = await conn.fetchval(
            "INSERT INTO users (name, email, password_hash, user_type, referral_code)"
            " VALUES ('Dup', 'dup@example.com', 'x', 'postpaid', 'DUP00001') RETURNING user_id"
        )
        insert = (
            "INSERT INTO billreminders (user_id, due_date, status, phone_number)"
            " VALUES ($1, '2026-12-01T00:00:00Z', $2, $3) RETURNING reminder_id"
        )
        await conn.fetchval(insert, user_id, "sent", None)
        await conn.fetchval(insert, user_id, "pending", None)
        await conn.fetchval(insert, user_id, "sent", "9123456789")
        paid = await conn.fetchval(insert, user_id, "paid", "9123456789")
        await asyncio.to_thread(pgmigrate.upgrade, pg_empty_url, "0006_bill_reminder_unique")
        kept = await conn.fetch(
            "SELECT reminder_id, status, phone_number FROM billreminders ORDER BY reminder_id"
        )
    finally:
        await conn.close()
    assert [(r["status"], r["phone_number"]) for r in kept] == [
        ("sent", None),
        ("paid", "9123456789"),
    ]
    assert kept[1]["reminder_id"] == paid


async def test_0007_renames_live_idempotency_keys(pg_empty_url: str) -> None:
    """Keys claimed before the upgrade keep replaying: their RPC gets its full path."""
    await asyncio.to_thread(pgmigrate.upgrade, pg_empty_url, "0006_bill_reminder_unique")
    conn = await asyncpg.connect(pg_empty_url)
    try:
        insert = (
            "INSERT INTO idempotency_keys (caller, request_id, rpc, request_hash, expires_at)"
            " VALUES ('user:1', $1, $2, 'h', now() + interval '1 day')"
        )
        for request_id, rpc in [
            ("k-topup-1", "WalletService.TopUp"),
            ("k-confirm-1", "WalletService.ConfirmPayment"),
            ("k-autopay-1", "autopay"),
            ("k-recharge-1", "/gencharge.v1.RechargeService/Recharge"),
        ]:
            await conn.execute(insert, request_id, rpc)
        await asyncio.to_thread(pgmigrate.upgrade, pg_empty_url, "0007_idempotency_rpc_paths")
        after = dict(await conn.fetch("SELECT request_id, rpc FROM idempotency_keys"))
        await asyncio.to_thread(pgmigrate.downgrade, pg_empty_url, "0006_bill_reminder_unique")
        before = dict(await conn.fetch("SELECT request_id, rpc FROM idempotency_keys"))
    finally:
        await conn.close()
    assert after == {
        "k-topup-1": "/gencharge.v1.WalletService/TopUp",
        "k-confirm-1": "/gencharge.v1.WalletService/ConfirmPayment",
        "k-autopay-1": "scheduler/autopay",
        "k-recharge-1": "/gencharge.v1.RechargeService/Recharge",
    }
    assert before["k-topup-1"] == "WalletService.TopUp" and before["k-autopay-1"] == "autopay"


async def test_0010_gives_waiting_audit_events_their_own_ids(pg_empty_url: str) -> None:
    """Events waiting in the outbox at the upgrade get distinct event ids; new rows get
    one from the column default, and repeat outbox_ids no longer collide."""
    await asyncio.to_thread(pgmigrate.upgrade, pg_empty_url, "0007_idempotency_rpc_paths")
    conn = await asyncpg.connect(pg_empty_url)
    try:
        for n in range(3):
            await conn.execute(
                "INSERT INTO audit_outbox (event) VALUES ($1::jsonb)", f'{{"n": {n}}}'
            )
        await asyncio.to_thread(pgmigrate.upgrade, pg_empty_url, "0010_audit_event_ids")
        waiting = await conn.fetch("SELECT outbox_id, event_id FROM audit_outbox")
        await conn.execute("INSERT INTO audit_outbox (outbox_id, event) VALUES (1, '{}')")
        repeated = await conn.fetchval("SELECT count(*) FROM audit_outbox WHERE outbox_id = 1")
        await conn.execute("DELETE FROM audit_outbox WHERE event = '{}'")
        await asyncio.to_thread(pgmigrate.downgrade, pg_empty_url, "0007_idempotency_rpc_paths")
        after_downgrade = await conn.fetchval("SELECT count(*) FROM audit_outbox")
    finally:
        await conn.close()
    assert len(waiting) == 3
    assert len({r["event_id"] for r in waiting}) == 3
    assert all(r["event_id"] is not None for r in waiting)
    assert repeated == 2
    assert after_downgrade == 3


async def test_0012_fills_in_recharges_made_before_it(pg_empty_url: str) -> None:
    """GetRecharge reads what a recharge showed from ``recharges``: rows for recharges
    made before the table existed are filled in from the ledger."""
    await asyncio.to_thread(pgmigrate.upgrade, pg_empty_url, "0007_idempotency_rpc_paths")
    conn = await asyncpg.connect(pg_empty_url)
    try:
        user_id = await conn.fetchval(
            "INSERT INTO users (name, email, password_hash, user_type, referral_code)"
            " VALUES ('Old', 'old@example.com', 'x', 'prepaid', 'OLD00001') RETURNING user_id"
        )
        plan_id = await conn.fetchval(
            "INSERT INTO plans (plan_name, validity, plan_type, price)"
            " VALUES ('Old 100', 28, 'prepaid', 100) RETURNING plan_id"
        )
        offer_id = await conn.fetchval(
            "INSERT INTO offers (offer_name, bonus) VALUES ('Old offer', '{\"data_mb\": 1024}')"
            " RETURNING offer_id"
        )
        txn = (
            "INSERT INTO transactions (user_id, category, txn_type, amount, plan_id, offer_id,"
            " to_phone_number, source, status, payment_method, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, '9123456789', $7, $8, $9, now() + $10 * interval"
            " '1 second') RETURNING txn_id"
        )
        with_offer = await conn.fetchval(
            txn, user_id, "service", "debit", 90, plan_id, offer_id, "recharge", "success", "UPI", 0
        )
        cap = await conn.fetchval(
            "INSERT INTO currentactiveplans (user_id, plan_id, phone_number, valid_from,"
            " valid_to) VALUES ($1, $2, '9123456789', now(), now() + interval '28 days')"
            " RETURNING id",
            user_id,
            plan_id,
        )
        cashback = await conn.fetchval(
            txn,
            user_id,
            "wallet",
            "credit",
            4.5,
            plan_id,
            offer_id,
            "cashback",
            "success",
            "Wallet",
            0,
        )
        pending = await conn.fetchval(
            txn, user_id, "service", "debit", 100, plan_id, None, "autopay", "pending", "Card", 1
        )
        await conn.fetchval(
            txn, user_id, "wallet", "credit", 50, None, None, "wallet_topup", "success", "UPI", 2
        )
        await asyncio.to_thread(pgmigrate.upgrade, pg_empty_url, "0012_recharges")
        rows = await conn.fetch("SELECT * FROM recharges ORDER BY txn_id")
    finally:
        await conn.close()
    assert [dict(r) for r in rows] == [
        {
            "txn_id": with_offer,
            "active_plan_id": cap,
            "discount": Decimal("10.00"),
            "cashback": Decimal("4.50"),
            "cashback_txn_id": cashback,
            "bonus": '{"data_mb": 1024}',
        },
        {
            "txn_id": pending,
            "active_plan_id": None,
            "discount": Decimal("0.00"),
            "cashback": Decimal("0.00"),
            "cashback_txn_id": None,
            "bonus": None,
        },
    ]


async def test_0016_backup_service(pg_empty_url: str) -> None:
    """0016: backups may be ``in_progress`` (failed on the way down, the label goes),
    schedules carry a cron expression, a job (``backup`` by default, or ``drill``), their
    last run, and unique task names."""
    await asyncio.to_thread(pgmigrate.upgrade, pg_empty_url, "0016_backup_service")
    conn = await asyncpg.connect(pg_empty_url)
    try:
        await conn.execute(
            "INSERT INTO backup (backup_id, backup_status) VALUES ('b1', 'in_progress'),"
            " ('b2', 'success')"
        )
        await conn.execute(
            "INSERT INTO schedule (schedule_id, task_name, cron_expression)"
            " VALUES ('s1', 'daily', '0 2 * * *')"
        )
        job = await conn.fetchval("SELECT job FROM schedule WHERE schedule_id = 's1'")
        with_drill = await conn.execute(
            "INSERT INTO schedule (schedule_id, task_name, job) VALUES ('s2', 'drill', 'drill')"
        )
        bad_job: type[Exception] | None = None
        try:
            await conn.execute(
                "INSERT INTO schedule (schedule_id, task_name, job) VALUES ('s3', 'x', 'copy')"
            )
        except asyncpg.CheckViolationError as exc:
            bad_job = type(exc)
        same_name: type[Exception] | None = None
        try:
            await conn.execute(
                "INSERT INTO schedule (schedule_id, task_name) VALUES ('s4', 'daily')"
            )
        except asyncpg.UniqueViolationError as exc:
            same_name = type(exc)
        await conn.execute("DELETE FROM schedule WHERE job = 'drill'")
        await asyncio.to_thread(
            pgmigrate.downgrade, pg_empty_url, "0015_service_account_description"
        )
        statuses = dict(await conn.fetch("SELECT backup_id, backup_status::text FROM backup"))
        labels = [
            r[0]
            for r in await conn.fetch("SELECT unnest(enum_range(NULL::backup_status_enum))::text")
        ]
        columns = {
            r[0]
            for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'schedule'"
            )
        }
        await asyncio.to_thread(pgmigrate.upgrade, pg_empty_url, "0016_backup_service")
        relabelled = await conn.fetchval(
            "SELECT count(*) FROM backup WHERE backup_status = 'in_progress'"
        )
    finally:
        await conn.close()
    assert job == "backup" and with_drill == "INSERT 0 1"
    assert bad_job is asyncpg.CheckViolationError
    assert same_name is asyncpg.UniqueViolationError
    assert statuses == {"b1": "failed", "b2": "success"}
    assert labels == ["failed", "success"]
    assert not {"cron_expression", "job", "last_run_at"} & columns
    assert relabelled == 0


async def test_0017_service_token_cutoff(pg_empty_url: str) -> None:
    """0017: existing service accounts get no cut-off; the column goes on the way down."""
    await asyncio.to_thread(pgmigrate.upgrade, pg_empty_url, "0016_backup_service")
    conn = await asyncpg.connect(pg_empty_url)
    try:
        role_id = await conn.fetchval(
            "INSERT INTO roles (role_name) VALUES ('Service 0017') RETURNING role_id"
        )
        await conn.execute(
            "INSERT INTO service_accounts (client_id, name, secret_hash, role_id)"
            " VALUES ('svc-0017', 'before 0017', 'x', $1)",
            role_id,
        )
        await asyncio.to_thread(pgmigrate.upgrade, pg_empty_url, "0017_service_token_cutoff")
        cutoff = await conn.fetchval(
            "SELECT tokens_valid_after FROM service_accounts WHERE client_id = 'svc-0017'"
        )
        await conn.execute("UPDATE service_accounts SET tokens_valid_after = now()")
        await asyncio.to_thread(pgmigrate.downgrade, pg_empty_url, "0016_backup_service")
        columns = {
            r[0]
            for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = 'service_accounts'"
            )
        }
    finally:
        await conn.close()
    assert cutoff is None
    assert "tokens_valid_after" not in columns and "scopes" in columns
