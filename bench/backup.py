"""`make bench-backup`: BackupService's backup, verify, restore and drill on 100,000
ledger rows: time, size, and the server's peak memory (issue #10).

1. Starts its own embedded PostgreSQL and SecantusDB in a temporary folder and sets them
   up like ``make bench`` (bench/run.py ``prepare``: migrations, reference data, funded
   customers, a plan), then fills ``transactions`` up to ``--rows`` ledger rows
   (set-based, through the wallet trigger: top-ups, and every third row a recharge paid
   from the wallet) and writes a few thousand MongoDB documents (AuditLog events and
   ContactForm submissions).
2. Launches ``gencharge serve`` on those databases as a subprocess (as ``make bench``
   does) with a local backup folder and a fresh backup key, creates an admin with
   ``gencharge create-admin`` and logs in through the real Login/VerifyMfa RPCs.
3. Through the real gRPC API: CreateBackup (the stream drained), VerifyBackup, 1,000 more
   ledger rows (so the restore has something to undo), RestoreBackup, a new login (the
   restore ends every session), then ``gencharge backup drill`` as a subprocess. The
   server's resident set (and its children's: pg_dump, pg_restore) is sampled every
   50 ms during each phase.
4. Checks the ledger after the restore (the same check as ``make bench``) and prints
   the table. Exits non-zero if any step fails or the ledger does not balance.

See bench/README.md ("make bench-backup") for the method and its caveats.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
from bson import ObjectId
from pymongo import AsyncMongoClient
from sqlalchemy import text

from bench.memory import Sampler
from bench.run import (
    DATABASE,
    Ledger,
    check_ledger,
    drain_outbox,
    gencharge_command,
    gencharge_server,
    insert_ledger_rows,
    prepare,
    server_env,
    start_databases,
    wait_serving,
)
from gencharge.v1 import backup_service_pb2 as pb
from gencharge.v1 import backup_service_pb2_grpc
from server.audit.relay import to_document
from server.core import db
from server.ops.embedded import EmbeddedMongo, EmbeddedPostgres, free_port
from tests.helpers.auth import PASSWORD, Actor, admin_login

EXTRA_ROWS = 1_000  # written after the backup: the restore must take them away
T = TypeVar("T")


# --- phases ---------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    server: Sampler | None = None
    job: Sampler | None = None  # the drill's own process
    note: str = ""
    ok: bool = True
    started: float = 0.0
    steps: list[tuple[float, str]] = field(default_factory=list)  # seconds in, message

    def step(self, message: str) -> None:
        self.steps.append((time.perf_counter() - self.started, message))


@dataclass
class Report:
    phases: list[Phase] = field(default_factory=list)
    backup: pb.Backup | None = None
    files: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # stored, plain
    ledger_before: Ledger | None = None
    ledger_after: Ledger | None = None
    rows_before: int = 0
    rows_changed: int = 0
    rows_after: int = 0
    failures: list[str] = field(default_factory=list)


async def measured(report: Report, name: str, pid: int, work: Callable[[], Awaitable[T]]) -> T:
    sampler = Sampler(pid).start()
    phase = Phase(name, server=sampler)
    report.phases.append(phase)
    began = phase.started = time.perf_counter()
    try:
        return await work()
    except BaseException as exc:
        phase.ok = False
        phase.note = f"FAILED: {exc}"[:200]
        raise
    finally:
        phase.seconds = time.perf_counter() - began
        sampler.stop()


# --- setup ----------------------------------------------------------------------------


async def insert_mongo_documents(mongo_url: str, audit_events: int, contact_forms: int) -> None:
    """AuditLog events as the audit relay writes them (server/audit/relay.py) and
    ContactForm submissions as ContentService stores them, in batches of 500."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        mongo_db = client.get_default_database()
        now = datetime.now(UTC).replace(microsecond=0)
        audit = [
            to_document(
                uuid.uuid4(),
                {
                    "actor": f"user:{1 + i % 1000}",
                    "table_name": "Transactions",
                    "action_type": "INSERT",
                    "details": {"txn_id": i, "amount_minor": 1000 + i % 50_000},
                    "rpc": "/gencharge.v1.RechargeService/Recharge",
                    "request_id": str(uuid.uuid4()),
                    "peer": "ipv4:127.0.0.1:5000",
                    "occurred_at": (now - timedelta(seconds=i)).isoformat(),
                },
                now,
            )
            for i in range(audit_events)
        ]
        forms = []
        for i in range(contact_forms):
            oid = ObjectId()
            at = now - timedelta(minutes=i)
            forms.append(
                {
                    "_id": oid,
                    "id": str(oid),
                    "name": f"Bench Customer {i}",
                    "email": f"bench-contact-{i}@example.com",
                    "description": "My recharge did not arrive. " * 4,
                    "status": "new",
                    "created_at": at,
                    "updated_at": at,
                }
            )
        for collection, docs in (("AuditLog", audit), ("ContactForm", forms)):
            for first in range(0, len(docs), 500):
                await mongo_db[collection].insert_many(docs[first : first + 500], ordered=False)
    finally:
        await client.close()


async def transaction_rows(database_url: str) -> int:
    engine = db.create_engine(database_url, pool_size=1)
    try:
        async with db.Database(engine).read_only() as conn:
            return int((await conn.execute(text("SELECT count(*) FROM transactions"))).scalar_one())
    finally:
        await engine.dispose()


def create_admin(env: dict[str, str], email: str) -> None:
    completed = subprocess.run(
        [
            str(gencharge_command()),
            "create-admin",
            *("--email", email, "--name", "Bench Admin", "--password-stdin"),
        ],
        input=PASSWORD + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if completed.returncode != 0:
        raise SystemExit(f"gencharge create-admin failed:\n{completed.stderr[-2000:]}")


# --- the measured run -----------------------------------------------------------------


async def exercise(
    report: Report,
    *,
    target: str,
    pid: int,
    env: dict[str, str],
    admin_email: str,
    database_url: str,
    fixture_users: Sequence[int],
) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = backup_service_pb2_grpc.BackupServiceStub(channel)
        admin = await admin_login(channel, Actor(kind="admin", access_token="", email=admin_email))
        # Let the audit relay ship the login's events and the server settle: the baseline.
        await asyncio.to_thread(drain_outbox, database_url)
        await asyncio.sleep(1.0)

        async def create() -> pb.Backup:
            stream = stub.CreateBackup(
                pb.CreateBackupRequest(description="bench-backup"),
                metadata=admin.metadata,
                timeout=3600,
            )
            messages = []
            async for message in stream:
                report.phases[-1].step(f"{message.percent_complete:3d}% {message.message}")
                messages.append(message)
            last = messages[-1]
            report.phases[-1].note = f"{len(messages)} progress messages"
            if last.status != pb.JOB_STATUS_COMPLETED:
                raise RuntimeError(f"CreateBackup ended {pb.JobStatus.Name(last.status)}: {last}")
            return last.backup

        backup = await measured(report, "CreateBackup", pid, create)
        report.backup = backup

        async def verify() -> None:
            reply = await stub.VerifyBackup(
                pb.VerifyBackupRequest(backup_id=backup.backup_id),
                metadata=admin.metadata,
                timeout=3600,
            )
            if not reply.valid:
                raise RuntimeError(f"VerifyBackup: invalid: {list(reply.problems)}")
            report.phases[-1].note = "valid"

        await measured(report, "VerifyBackup", pid, verify)

        # A change after the backup, for the restore to take away.
        await insert_ledger_rows(database_url, EXTRA_ROWS, fixture_users, prefix="after-backup")
        report.rows_changed = await transaction_rows(database_url)
        await asyncio.to_thread(drain_outbox, database_url)

        async def restore() -> None:
            stream = stub.RestoreBackup(
                pb.RestoreBackupRequest(backup_id=backup.backup_id),
                metadata=admin.metadata,
                timeout=3600,
            )
            messages = []
            async for message in stream:
                report.phases[-1].step(f"{message.percent_complete:3d}% {message.message}")
                messages.append(message)
            last = messages[-1]
            report.phases[-1].note = f"{len(messages)} progress messages"
            if last.status != pb.JOB_STATUS_COMPLETED:
                raise RuntimeError(f"RestoreBackup ended {pb.JobStatus.Name(last.status)}: {last}")

        await measured(report, "RestoreBackup", pid, restore)

        # The restore ended every session: log in again (the admin and its authenticator
        # are in the backup), and the server answers as before.
        await admin_login(channel, admin)
        got = await stub.GetBackup(
            pb.GetBackupRequest(backup_id=backup.backup_id), metadata=admin.metadata
        )
        if got.backup_status != pb.BACKUP_STATUS_SUCCESS:
            raise RuntimeError(f"GetBackup after the restore: {got}")

    report.rows_after = await transaction_rows(database_url)
    report.ledger_after = await check_ledger(database_url)

    async def drill() -> None:
        process = await asyncio.create_subprocess_exec(
            str(gencharge_command()),
            "backup",
            "drill",
            backup.backup_id,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
        )
        phase = report.phases[-1]
        phase.job = job = Sampler(process.pid).start()
        lines: list[str] = []
        assert process.stdout is not None
        try:
            # The command draws one line per step when its output is not a terminal.
            async for raw in process.stdout:
                line = raw.decode(errors="replace").rstrip()
                if line:
                    lines.append(line)
                    phase.step(line)
            await process.wait()
        finally:
            job.stop()
        if process.returncode != 0:
            raise RuntimeError(
                f"gencharge backup drill exited {process.returncode}:\n" + "\n".join(lines[-20:])
            )

    await measured(report, "gencharge backup drill", pid, drill)


# --- output ---------------------------------------------------------------------------


def _mib(value: int | None) -> str:
    return "-" if not value else f"{value / 2**20:.1f} MiB"


def render(report: Report) -> str:
    header = (
        "phase",
        "seconds",
        "server RSS before",
        "peak (sampled)",
        "peak (VmHWM)",
        "after",
        "peak with children",
    )
    rows: list[tuple[str, ...]] = []
    for p in report.phases:
        s = p.server
        assert s is not None
        rows.append(
            (
                p.name,
                f"{p.seconds:.2f}",
                _mib(s.before),
                _mib(s.peak),
                _mib(s.hwm),
                _mib(s.after),
                _mib(s.tree_peak),
            )
        )
        if p.job is not None:
            j = p.job
            rows.append(
                ("  its own process", "", "", _mib(j.peak), _mib(j.hwm), "", _mib(j.tree_peak))
            )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    return "\n".join(lines)


def render_steps(report: Report) -> str:
    """Each phase's note and progress messages, with the seconds at which they came."""
    lines = []
    for p in report.phases:
        lines.append(f"{p.name}: {p.note}" if p.note else f"{p.name}:")
        lines.extend(f"  {at:7.2f}s  {message}" for at, message in p.steps)
    return "\n".join(lines)


def stored_files(storage: Path, backup_id: str) -> dict[str, tuple[int, int | None]]:
    """Each stored file's size on disk and, from the manifest, its plain size."""
    folder = storage / backup_id
    plain: dict[str, int] = {}
    manifest_path = folder / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        for entry in manifest.get("manifest", {}).get("files", []):
            plain[str(entry["name"]).rsplit("/", 1)[-1]] = int(entry["plain_size"])
    return {
        path.name: (path.stat().st_size, plain.get(path.name))
        for path in sorted(folder.iterdir())
        if path.is_file() and not path.name.startswith(".")
    }


def ledger_line(ledger: Ledger) -> str:
    return (
        f"{ledger.users} wallets, sum of balances {ledger.balances} = credits - debits "
        f"{ledger.ledger}; {ledger.mismatched} mismatched, {ledger.negative} negative"
    )


def balanced(ledger: Ledger | None) -> bool:
    return (
        ledger is not None
        and ledger.balances == ledger.ledger
        and not ledger.mismatched
        and not ledger.negative
    )


# --- main -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000, help="ledger rows in transactions")
    parser.add_argument("--users", type=int, default=1_000, help="funded customers")
    parser.add_argument("--audit-events", type=int, default=1_500, help="AuditLog documents")
    parser.add_argument("--contact-forms", type=int, default=1_500, help="ContactForm documents")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if args.rows < args.users:
        parser.error("--rows must be at least --users (each customer's funding is a row)")
    began = time.monotonic()

    folder = Path(tempfile.mkdtemp(prefix="gencharge-bench-backup-"))
    print(f"bench folder: {folder}  ({os.cpu_count()} CPUs)", flush=True)
    pg = EmbeddedPostgres(folder / "postgres")
    mongo = EmbeddedMongo(folder / "mongo")
    report = Report()
    try:
        start_databases(pg, mongo, "bench-backup")
        database_url = pg.url(DATABASE)
        mongo_url = mongo.url(DATABASE)
        print(
            f"setting up {args.users:,} customers, {args.rows:,} ledger rows, "
            f"{args.audit_events + args.contact_forms:,} MongoDB documents...",
            flush=True,
        )
        fixture = asyncio.run(prepare(pg, mongo_url, args.users))
        step = time.monotonic()
        asyncio.run(
            insert_ledger_rows(
                database_url,
                args.rows - len(fixture.user_ids),
                fixture.user_ids,
                prefix="bench-backup",
                plan_id=fixture.plan_id,
            )
        )
        print(f"  ledger rows inserted in {time.monotonic() - step:.1f}s", flush=True)
        step = time.monotonic()
        asyncio.run(insert_mongo_documents(mongo_url, args.audit_events, args.contact_forms))
        print(f"  MongoDB documents inserted in {time.monotonic() - step:.1f}s", flush=True)
        report.rows_before = asyncio.run(transaction_rows(database_url))
        report.ledger_before = asyncio.run(check_ledger(database_url))
        if not balanced(report.ledger_before):
            raise SystemExit(f"the ledger does not balance after setup: {report.ledger_before}")

        storage = folder / "backups"
        storage.mkdir()
        target = f"127.0.0.1:{free_port()}"
        extra = {
            "GENCHARGE_BACKUP_STORAGE_URL": storage.as_uri(),
            "GENCHARGE_BACKUP_ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        }
        server_folder = folder / "server"
        env = server_env(server_folder, database_url, mongo_url, target, 1, extra)
        admin_email = f"bench-admin-{secrets.token_hex(4)}@example.com"
        with gencharge_server(
            server_folder, database_url, mongo_url, target, 1, extra_env=extra
        ) as server:
            wait_serving(target, server, server_folder / "server.log")
            create_admin(env, admin_email)
            print(f"server SERVING on {target} after {time.monotonic() - began:.0f}s", flush=True)
            try:
                asyncio.run(
                    exercise(
                        report,
                        target=target,
                        pid=server.pid,
                        env=env,
                        admin_email=admin_email,
                        database_url=database_url,
                        fixture_users=fixture.user_ids,
                    )
                )
            except (grpc.RpcError, RuntimeError) as exc:
                report.failures.append(
                    f"{report.phases[-1].name if report.phases else 'login'}: {exc}"
                )
            if server.poll() is not None:
                report.failures.append(f"the server exited with code {server.returncode}")
        if report.backup is not None:
            report.files = stored_files(storage, report.backup.backup_id)

        print()
        if report.phases and report.phases[0].server is not None:
            print(
                "server RSS baseline (idle after login, before the first phase): "
                f"{_mib(report.phases[0].server.before)}"
            )
        print(render(report))
        print()
        print(render_steps(report))
        print()
        if report.backup is not None:
            print(
                f"backup {report.backup.backup_id}: Backup.size_bytes "
                f"{report.backup.size_bytes:,} bytes"
            )
            for name, (size, plain) in report.files.items():
                before = f" (plain {plain:,} bytes, {size / plain:.1%})" if plain else ""
                print(f"  {name:<14} {size:>12,} bytes stored{before}")
        print(
            f"transactions: {report.rows_before:,} rows at the backup, "
            f"{report.rows_changed:,} before the restore, {report.rows_after:,} after it"
        )
        if report.ledger_after is not None:
            print(f"ledger after the restore: {ledger_line(report.ledger_after)}")
        print(f"total time {time.monotonic() - began:.0f}s")

        failures = list(report.failures)
        if not all(p.ok for p in report.phases):
            failures.append("a phase failed")
        if report.ledger_after is None or not balanced(report.ledger_after):
            failures.append("THE LEDGER DOES NOT BALANCE after the restore")
        if report.ledger_after is not None and report.rows_after != report.rows_before:
            failures.append(
                f"the restore left {report.rows_after:,} transactions, "
                f"not the {report.rows_before:,} backed up"
            )
        for failure in failures:
            print(f"FAILED: {failure}", file=sys.stderr)
        return 1 if failures else 0
    finally:
        mongo.stop()
        pg.stop()
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
