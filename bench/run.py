"""`make bench`: recharge throughput and latency against two ceilings, in one run.

1. Starts its own embedded PostgreSQL and SecantusDB in a temporary folder, migrates,
   loads reference data, creates N users with wallets funded through ledger credits,
   a plan and a service account (scope recharges.write).
2. Launches ``gencharge serve`` on those databases as a subprocess and waits for
   SERVING; a service token is issued through the real IssueServiceToken RPC.
3. Runs the load from separate worker processes (real gRPC over loopback):
   health Check (the empty-RPC ceiling), unary Recharge at a few concurrency levels,
   BatchRecharge streams.
4. Stops the server, runs pgbench with bench/recharge.sql (the two statements of one
   recharge) as the database ceiling.
5. Checks the ledger (every balance equals its successful wallet credits minus
   debits, none negative) and prints the table. Exits non-zero on any failure.

See bench/README.md for the method and its caveats.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import dataclasses
import multiprocessing
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pymongo import AsyncMongoClient
from sqlalchemy import insert, select, text

from bench import growth
from bench.load import Job, Result, run
from bench.memory import MIB, Sampler
from bench.stats import Row, Target, percentile, render, render_targets
from gencharge.v1 import auth_service_pb2, auth_service_pb2_grpc
from migrations import mongo as mongo_migrations
from server.admin.staff.domain import NewServiceAccount
from server.admin.staff.flows import create_service_account
from server.auth.scopes import RECHARGES_WRITE
from server.core import db
from server.core.config import Settings
from server.core.schema import plangroups, plans, transactions, users
from server.ops import pgmigrate, seed
from server.ops.embedded import (
    EmbeddedMongo,
    EmbeddedPostgres,
    FolderClosedToPostgres,
    _pg_bin,
    closed_folder_message,
    free_port,
)

HERE = Path(__file__).resolve().parent
DATABASE = "gencharge"
PHONE_BASE = 6_000_000_000  # a user's phone number is PHONE_BASE + user_id
PLAN_PRICE = Decimal("10.00")
FUNDS = Decimal("100000.00")  # per user: 10 000 recharges
WORKER_PROCESSES = 2


@dataclass(frozen=True)
class Fixture:
    user_ids: tuple[int, ...]
    plan_id: int
    client_id: str
    client_secret: str


# --- setup ----------------------------------------------------------------------------


def start_databases(pg: EmbeddedPostgres, mongo: EmbeddedMongo, target: str) -> None:
    """Start both embedded servers (the caller stops them); ``target`` is the make
    target named in the remedy when PostgreSQL cannot enter the folder."""
    try:
        pg.start()
    except FolderClosedToPostgres as exc:  # as root, with TMPDIR in a private folder
        remedy = f"set TMPDIR to a folder outside it, e.g. TMPDIR=/var/tmp make {target}"
        raise SystemExit(
            f"{target}: " + closed_folder_message(exc.folder, exc.user, remedy)
        ) from None
    mongo.start()


async def _create_database(admin_url: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await conn.close()


async def prepare(pg: EmbeddedPostgres, mongo_url: str, n_users: int) -> Fixture:
    """Schema, reference data, funded users, a plan and a service account."""
    await _create_database(pg.admin_url)
    url = pg.url(DATABASE)
    await asyncio.to_thread(pgmigrate.upgrade, url)
    engine = db.create_engine(url, pool_size=2)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        mongo_db = client.get_default_database()
        await mongo_migrations.upgrade(mongo_db)
        await seed.load_reference(engine, mongo_db)
        async with db.Database(engine).transaction() as conn:
            result = await conn.execute(
                insert(users)
                .values(
                    [
                        {
                            "name": f"Bench User {i}",
                            "email": f"bench-{i}@example.com",
                            "user_type": "prepaid",
                        }
                        for i in range(n_users)
                    ]
                )
                .returning(users.c.user_id)
            )
            user_ids = tuple(sorted(int(v) for v in result.scalars()))
            await conn.execute(
                text(
                    "UPDATE users SET phone_number = CAST(CAST(:base AS bigint) + user_id AS text)"
                    " WHERE user_id = ANY(:ids)"
                ),
                {"base": PHONE_BASE, "ids": list(user_ids)},
            )
            # Funds through the ledger: the wallet trigger moves the balance.
            await conn.execute(
                insert(transactions).values(
                    [
                        {
                            "user_id": user_id,
                            "category": "wallet",
                            "txn_type": "credit",
                            "amount": FUNDS,
                            "source": "wallet_topup",
                            "status": "success",
                            "payment_method": "UPI",
                            "payment_transaction_id": f"bench-{uuid.uuid4().hex}",
                        }
                        for user_id in user_ids
                    ]
                )
            )
            group_id = (await conn.execute(select(plangroups.c.group_id).limit(1))).scalar_one()
            plan_id = (
                await conn.execute(
                    insert(plans)
                    .values(
                        plan_name="Bench 10",
                        plan_type="prepaid",
                        group_id=group_id,
                        price=PLAN_PRICE,
                        validity=28,
                        status="active",
                    )
                    .returning(plans.c.plan_id)
                )
            ).scalar_one()
        created = await create_service_account(
            db.Database(engine),
            NewServiceAccount(
                name=f"bench load generator {secrets.token_hex(4)}", scopes=[RECHARGES_WRITE]
            ),
        )
        client_id, secret = created.account.client_id, created.client_secret
    finally:
        await client.close()
        await engine.dispose()
    return Fixture(user_ids, int(plan_id), client_id, secret)


async def insert_ledger_rows(
    database_url: str,
    rows: int,
    user_ids: Sequence[int],
    *,
    prefix: str = "rows",
    plan_id: int | None = None,
) -> None:
    """``rows`` successful wallet ledger rows, set-based (``generate_series``, 10,000 per
    statement: under the statement timeout), spread over ``user_ids`` in turn, amounts
    ₹10 to ₹509. Without ``plan_id`` all are top-up credits; with it every third row is
    a recharge of that plan paid from the wallet (a debit). The wallet trigger moves
    every balance; a debit it cannot cover fails the statement, so fund the users first
    (``prepare`` gives each ₹100,000, more than any mix of 100,000 rows can spend)."""
    engine = db.create_engine(database_url, pool_size=1)
    try:
        for first in range(1, rows + 1, 10_000):
            async with engine.begin() as conn:
                await conn.execute(
                    text(
                        "INSERT INTO transactions (user_id, category, txn_type, amount, source,"
                        " status, payment_method, payment_transaction_id, plan_id,"
                        " to_phone_number)"
                        " SELECT u, 'wallet',"
                        " CAST(CASE WHEN debit THEN 'debit' ELSE 'credit' END AS txn_type_enum),"
                        " 10 + (i % 500),"
                        " CAST(CASE WHEN debit THEN 'recharge' ELSE 'wallet_topup' END"
                        "      AS txn_source_enum),"
                        " 'success',"
                        " CAST(CASE WHEN debit THEN 'Wallet' ELSE 'UPI' END"
                        "      AS payment_method_enum),"
                        " CASE WHEN debit THEN NULL ELSE CAST(:prefix AS text) || '-' || i END,"
                        " CASE WHEN debit THEN CAST(:plan AS integer) END,"
                        " CASE WHEN debit THEN CAST(CAST(:base AS bigint) + u AS text) END"
                        " FROM generate_series(CAST(:a AS integer), CAST(:b AS integer)) AS i,"
                        " LATERAL (SELECT (CAST(:ids AS integer[]))[1 + i % CAST(:k AS integer)]"
                        "          AS u,"
                        "          CAST(:plan AS integer) IS NOT NULL AND i % 3 = 0 AS debit) AS r"
                    ),
                    {
                        "ids": list(user_ids),
                        "k": len(user_ids),
                        "a": first,
                        "b": min(rows, first + 9_999),
                        "prefix": prefix,
                        "plan": plan_id,
                        "base": PHONE_BASE,
                    },
                )
    finally:
        await engine.dispose()


# --- the server under test --------------------------------------------------------------


def server_env(
    folder: Path,
    database_url: str,
    mongo_url: str,
    listen: str,
    workers: int,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of ``gencharge serve`` on the bench's databases (also what a
    ``gencharge`` command needs to act on the same databases, data folder and keys)."""
    return {
        **os.environ,
        "GENCHARGE_DATABASE_URL": database_url,
        "GENCHARGE_MONGO_URL": mongo_url,
        "GENCHARGE_LISTEN": listen,
        "GENCHARGE_LOG_LEVEL": "WARNING",
        "GENCHARGE_LOAD_DEMO_DATA": "false",
        "GENCHARGE_DATA_DIR": str(folder),
        "GENCHARGE_ENVIRONMENT": "development",
        "GENCHARGE_WORKERS": str(workers),
        **(extra or {}),
    }


def gencharge_command() -> Path:
    """The ``gencharge`` script of this venv."""
    return Path(sys.executable).with_name("gencharge")


@contextmanager
def gencharge_server(
    folder: Path,
    database_url: str,
    mongo_url: str,
    listen: str,
    workers: int,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    env = server_env(folder, database_url, mongo_url, listen, workers, extra_env)
    gencharge = gencharge_command()
    log_path = folder / "server.log"
    folder.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:  # a restarted server adds to the same log
        proc = subprocess.Popen(
            [str(gencharge), "serve"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield proc
    finally:
        stop_server(proc)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def listening_sockets(port: int) -> int:
    """TCP sockets listening on ``port`` (Linux /proc): one per server worker, as each
    worker binds its own socket with SO_REUSEPORT."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def wait_serving(
    target: str, proc: subprocess.Popen[bytes], log_path: Path, workers: int = 1
) -> None:
    """Until health says SERVING and (Linux) every worker listens: connections made
    earlier would all land on the workers that were up."""
    deadline = time.monotonic() + 120
    port = int(target.rsplit(":", 1)[1])
    while workers > 1 and sys.platform == "linux" and listening_sockets(port) < workers:
        if proc.poll() is not None or time.monotonic() > deadline:
            break  # reported below
        time.sleep(0.2)
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                sys.stderr.write(log_path.read_text(errors="replace")[-4000:])
                raise SystemExit(f"gencharge serve exited with code {proc.returncode}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise SystemExit("gencharge serve never became SERVING")


def service_token(target: str, fixture: Fixture) -> str:
    with grpc.insecure_channel(target) as channel:
        reply = auth_service_pb2_grpc.AuthServiceStub(channel).IssueServiceToken(
            auth_service_pb2.IssueServiceTokenRequest(
                client_id=fixture.client_id, client_secret=fixture.client_secret
            ),
            timeout=30,
        )
    return str(reply.access_token)


# --- load phases ----------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    name: str
    concurrency: int
    per_second: float
    latencies: list[float]
    errors: dict[str, int]
    applied: int  # successful recharges, inside the window or after it
    peak_rss_mib: float = 0.0  # the server's (all its processes) during the phase


def phase(
    pool: concurrent.futures.ProcessPoolExecutor,
    *,
    name: str,
    kind: str,
    concurrency: int,
    duration: float,
    target: str,
    token: str,
    fixture: Fixture,
    database_url: str,
    server_pid: int,
    channels: int = 1,
    user_ids: Sequence[int] | None = None,
) -> Measured:
    """Run one measurement across up to WORKER_PROCESSES processes, each with up to
    ``channels`` connections, while sampling the server's memory. The payers are
    ``user_ids`` (default: the fixture's)."""
    processes = min(WORKER_PROCESSES, concurrency)
    shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    waited = drain_outbox(database_url)
    if waited > 0.5:
        print(f"  (waited {waited:.1f}s for the audit relay to drain the outbox)", flush=True)
    start_at = time.time() + 1.5
    jobs = [
        Job(
            kind=kind,
            target=target,
            token=token,
            concurrency=share,
            start_at=start_at,
            duration=duration,
            user_ids=tuple(user_ids if user_ids is not None else fixture.user_ids),
            plan_id=fixture.plan_id,
            seed=hash((name, i)) & 0xFFFF,
            channels=max(1, min(share, channels)),
        )
        for i, share in enumerate(shares)
    ]
    with Sampler(server_pid) as memory:
        results: list[Result] = list(pool.map(run, jobs))
    peak_rss_mib = max(memory.tree_peak, memory.hwm or 0) / MIB
    ok = sum(r.ok for r in results)
    errors: dict[str, int] = {}
    for r in results:
        for code, count in r.errors.items():
            errors[code] = errors.get(code, 0) + count
    latencies = sorted(x for r in results for x in r.latencies)
    measured = Measured(
        name,
        concurrency,
        ok / duration,
        latencies,
        errors,
        ok + sum(r.late for r in results),
        peak_rss_mib,
    )
    print(
        f"  {name:<40} {measured.per_second:10.1f}/s  server RSS peak {peak_rss_mib:6.1f} MiB"
        f"  errors={errors or 0}",
        flush=True,
    )
    return measured


def drain_outbox(database_url: str, limit: float = 60) -> float:
    """Wait until the server's audit relay has shipped the outbox to MongoDB, so that a
    phase does not pay for the previous phase's backlog. Returns the seconds waited."""

    async def backlog() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM audit_outbox"))
        finally:
            await conn.close()

    started = time.monotonic()
    while time.monotonic() - started < limit:
        if asyncio.run(backlog()) == 0:
            break
        time.sleep(0.25)
    return time.monotonic() - started


# --- the database ceiling -------------------------------------------------------------


@dataclass(frozen=True)
class PgbenchResult:
    clients: int
    tps: float
    latency_ms: float
    transactions: int
    failed: int


def pgbench(
    url_host: str, port: int, fixture: Fixture, *, clients: int, duration: float
) -> PgbenchResult:
    reward = Decimal(Settings().referral_reward_minor) / 100
    command = [
        str(_pg_bin() / "pgbench"),
        "--no-vacuum",
        "--protocol=prepared",
        f"--client={clients}",
        f"--jobs={min(clients, 2)}",
        f"--time={max(1, round(duration))}",
        f"--file={HERE / 'recharge.sql'}",
        f"--define=plan={fixture.plan_id}",
        f"--define=minuser={min(fixture.user_ids)}",
        f"--define=maxuser={max(fixture.user_ids)}",
        f"--define=reward={reward}",
        "--host",
        url_host,
        "--port",
        str(port),
        "--username",
        "postgres",
        DATABASE,
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    output = completed.stdout + completed.stderr
    if completed.returncode != 0:
        raise SystemExit(f"pgbench failed ({completed.returncode}):\n{output}")

    def number(pattern: str) -> float:
        match = re.search(pattern, output)
        if match is None:
            raise SystemExit(f"unexpected pgbench output (no {pattern!r}):\n{output}")
        return float(match.group(1))

    failed_match = re.search(r"number of failed transactions: (\d+)", output)
    return PgbenchResult(
        clients=clients,
        tps=number(r"tps = ([0-9.]+) \(without initial connection time\)"),
        latency_ms=number(r"latency average = ([0-9.]+) ms"),
        transactions=int(number(r"number of transactions actually processed: (\d+)")),
        failed=int(failed_match.group(1)) if failed_match else 0,
    )


# --- the ledger check -----------------------------------------------------------------


@dataclass(frozen=True)
class Ledger:
    users: int
    balances: Decimal
    ledger: Decimal
    mismatched: int
    negative: int
    recharges: int


async def check_ledger(url: str) -> Ledger:
    engine = db.create_engine(url, pool_size=1)
    try:
        async with db.Database(engine).read_only() as conn:
            row = (
                await conn.execute(
                    text(
                        """
                        WITH per_user AS (
                            SELECT u.user_id, u.wallet_balance,
                                   coalesce(sum(CASE WHEN t.txn_type = 'credit' THEN t.amount
                                                     ELSE -t.amount END), 0) AS ledger
                            FROM users u
                            LEFT JOIN transactions t ON t.user_id = u.user_id
                                 AND t.category = 'wallet' AND t.status = 'success'
                            GROUP BY u.user_id, u.wallet_balance
                        )
                        SELECT count(*) AS users,
                               coalesce(sum(wallet_balance), 0) AS balances,
                               coalesce(sum(ledger), 0) AS ledger,
                               count(*) FILTER (WHERE wallet_balance <> ledger) AS mismatched,
                               count(*) FILTER (WHERE wallet_balance < 0) AS negative,
                               (SELECT count(*) FROM transactions
                                 WHERE source = 'recharge' AND txn_type = 'debit'
                                   AND status = 'success') AS recharges
                        FROM per_user
                        """
                    )
                )
            ).one()
    finally:
        await engine.dispose()
    return Ledger(
        int(row.users),
        Decimal(row.balances),
        Decimal(row.ledger),
        int(row.mismatched),
        int(row.negative),
        int(row.recharges),
    )


# --- main -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per phase")
    parser.add_argument("--users", type=int, default=200, help="funded customers")
    parser.add_argument(
        "--levels", default="1,8,32", help="concurrency levels of unary Recharge calls"
    )
    parser.add_argument("--batch-streams", type=int, default=2, help="BatchRecharge streams")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server worker processes (GENCHARGE_WORKERS); health is measured on them too",
    )
    parser.add_argument(
        "--big-users",
        type=int,
        default=100_000,
        help="customers added for the large-database phase (0: no such phase)",
    )
    parser.add_argument(
        "--big-rows",
        type=int,
        default=1_000_000,
        help="ledger rows added for the large-database phase (their funding included)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    levels = [int(v) for v in args.levels.split(",") if v.strip()]
    began = time.monotonic()

    folder = Path(tempfile.mkdtemp(prefix="gencharge-bench-"))
    print(f"bench folder: {folder}  ({os.cpu_count()} CPUs)", flush=True)
    pg = EmbeddedPostgres(folder / "postgres")
    mongo = EmbeddedMongo(folder / "mongo")
    try:
        start_databases(pg, mongo, "bench")
        database_url = pg.url(DATABASE)
        mongo_url = mongo.url(DATABASE)
        print("setting up databases, users, plan and service account...", flush=True)
        fixture = asyncio.run(prepare(pg, mongo_url, args.users))
        target = f"127.0.0.1:{free_port()}"
        spawn = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(WORKER_PROCESSES, mp_context=spawn) as pool:
            with gencharge_server(
                folder / "server", database_url, mongo_url, target, args.workers
            ) as server:
                common = _serving(server, folder, target, fixture, database_url, args, began)
                health = phase(
                    pool, name="health Check (empty RPC)", kind="health", concurrency=32, **common
                )
                measured = [
                    phase(
                        pool,
                        name=f"Recharge, {level} in flight",
                        kind="recharge",
                        concurrency=level,
                        **common,
                    )
                    for level in levels
                ]
                batch = phase(
                    pool,
                    name=f"BatchRecharge, {args.batch_streams} streams",
                    kind="batch",
                    concurrency=args.batch_streams,
                    **common,
                )
                stop_server(server)
            print("pgbench (server stopped)...", flush=True)
            pgbench_runs = [
                pgbench(pg.host, pg.port, fixture, clients=c, duration=args.duration)
                for c in (8, 32)
            ]
            big: list[Measured] = []
            scans: dict[str, int] = {}
            if args.big_users > 0:
                big, scans, big_pgbench = _large_database_phases(
                    pool,
                    pg.host,
                    pg.port,
                    folder,
                    database_url,
                    mongo_url,
                    target,
                    fixture,
                    args,
                    began,
                )
                pgbench_runs.append(big_pgbench)
        ceiling_pg = max(pgbench_runs[:2], key=lambda r: r.tps)  # the small database's
        ledger = asyncio.run(check_ledger(database_url))

        rows = [
            Row(
                "health Check (empty RPC)",
                health.concurrency,
                health.per_second,
                *_percentiles(health.latencies),
                health.peak_rss_mib,
                "ceiling",
            ),
        ]
        for m in [*measured, batch, *big]:
            rows.append(
                Row(
                    m.name,
                    m.concurrency,
                    m.per_second,
                    *_percentiles(m.latencies),
                    m.peak_rss_mib,
                    f"{m.per_second / health.per_second:6.1%} of health, "
                    f"{m.per_second / ceiling_pg.tps:6.1%} of pgbench",
                )
            )
        for n, r in enumerate(pgbench_runs):
            label = " (ceiling)" if r is ceiling_pg else ", large database" if n == 2 else ""
            rows.append(
                Row(
                    f"pgbench recharge.sql{label}",
                    r.clients,
                    r.tps,
                    r.latency_ms / 1000,
                    None,
                    None,
                    None,
                    "average latency only",
                )
            )
        print()
        print(render(rows))
        print()
        print(render_targets(_targets(health.per_second, ceiling_pg.tps, measured, batch, big)))
        if big:
            scanned = {table: n for table, n in sorted(scans.items()) if n}
            print()
            print(
                "sequential scans during the large-database phases (server background jobs"
                f" included): {scanned or 'none'}"
            )
        errors = {m.name: m.errors for m in [*measured, batch, *big] if m.errors}
        print()
        print(
            f"ledger: {ledger.users} wallets, sum of balances {ledger.balances} = "
            f"credits - debits {ledger.ledger}; {ledger.mismatched} mismatched, "
            f"{ledger.negative} negative; {ledger.recharges} recharges in total"
        )
        print(f"errors: {errors or 'none'}")
        print(f"total time {time.monotonic() - began:.0f}s")
        failures = []
        if ledger.balances != ledger.ledger or ledger.mismatched or ledger.negative:
            failures.append("THE LEDGER DOES NOT BALANCE")
        if errors:
            failures.append("some calls failed")
        if any(r.failed for r in pgbench_runs):
            failures.append("some pgbench transactions failed")
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


def _serving(
    server: subprocess.Popen[bytes],
    folder: Path,
    target: str,
    fixture: Fixture,
    database_url: str,
    args: argparse.Namespace,
    began: float,
) -> dict[str, Any]:
    """Wait for the server, get a service token: the arguments every phase shares."""
    wait_serving(target, server, folder / "server" / "server.log", args.workers)
    token = service_token(target, fixture)
    print(f"server SERVING on {target} after {time.monotonic() - began:.0f}s", flush=True)
    return {
        "duration": args.duration,
        "target": target,
        "token": token,
        "fixture": fixture,
        "database_url": database_url,
        "server_pid": server.pid,
        # Several connections per load process so that they spread over workers.
        "channels": 1 if args.workers == 1 else 4 * args.workers,
    }


def _large_database_phases(
    pool: concurrent.futures.ProcessPoolExecutor,
    host: str,
    port: int,
    folder: Path,
    database_url: str,
    mongo_url: str,
    target: str,
    fixture: Fixture,
    args: argparse.Namespace,
    began: float,
) -> tuple[list[Measured], dict[str, int], PgbenchResult]:
    """Grow the database (server stopped), start the server again and measure Recharge
    at 8 in flight and BatchRecharge with payers among the new customers, then pgbench
    with them. Returns the measurements, the sequential scans of the hot tables while
    the server ran and the pgbench run."""
    print(
        f"growing the database: {args.big_users:,} customers, {args.big_rows:,} ledger rows...",
        flush=True,
    )
    grown_at = time.monotonic()
    big_ids = asyncio.run(
        growth.grow(database_url, args.big_users, phone_base=PHONE_BASE, funds=FUNDS)
    )
    if args.big_rows > args.big_users:
        asyncio.run(
            insert_ledger_rows(
                database_url,
                args.big_rows - args.big_users,
                big_ids,
                prefix="big",
                plan_id=fixture.plan_id,
            )
        )
    asyncio.run(growth.settle(database_url))
    total = asyncio.run(growth.ledger_rows(database_url))
    print(
        f"  grown in {time.monotonic() - grown_at:.0f}s: {total:,} ledger rows in all",
        flush=True,
    )
    scans_before = asyncio.run(growth.seq_scans(database_url))
    with gencharge_server(
        folder / "server", database_url, mongo_url, target, args.workers
    ) as server:
        common = _serving(server, folder, target, fixture, database_url, args, began)
        big = [
            phase(
                pool,
                name="Recharge, 8 in flight, large database",
                kind="recharge",
                concurrency=8,
                user_ids=big_ids,
                **common,
            ),
            phase(
                pool,
                name=f"BatchRecharge, {args.batch_streams} streams, large database",
                kind="batch",
                concurrency=args.batch_streams,
                user_ids=big_ids,
                **common,
            ),
        ]
        stop_server(server)  # its backends report their statistics as they exit
    scans_after = asyncio.run(growth.seq_scans(database_url))
    scans = {t: scans_after.get(t, 0) - scans_before.get(t, 0) for t in scans_after}
    print("pgbench, large database (server stopped)...", flush=True)
    big_pgbench = pgbench(
        host,
        port,
        dataclasses.replace(fixture, user_ids=big_ids),
        clients=8,
        duration=args.duration,
    )
    return big, scans, big_pgbench


def _targets(
    health: float,
    pgbench_tps: float,
    measured: Sequence[Measured],
    batch: Measured,
    big: Sequence[Measured],
) -> list[Target]:
    """Issue #12's targets, from this run's figures (None: not measured in this run)."""
    at = {m.concurrency: m for m in measured}
    eight = at.get(8)
    p99_32 = _percentiles(at[32].latencies)[2] if 32 in at else None
    targets = [
        Target(
            "Recharge, 8 in flight, vs health",
            eight.per_second / health if eight else None,
            0.35,
            "%",
        ),
        Target(
            "Recharge, 8 in flight, vs pgbench",
            eight.per_second / pgbench_tps if eight else None,
            0.60,
            "%",
        ),
        Target("BatchRecharge items/s vs pgbench", batch.per_second / pgbench_tps, 2.0, "%"),
        Target("p99 at 32 in flight", p99_32, 0.100, "ms", lower_is_better=True),
    ]
    if big:
        big_eight, big_batch = big
        targets += [
            Target(
                "large database: Recharge 8 in flight vs small",
                big_eight.per_second / eight.per_second if eight else None,
                0.90,
                "%",
            ),
            Target(
                "large database: BatchRecharge vs small",
                big_batch.per_second / batch.per_second,
                0.90,
                "%",
            ),
        ]
    return targets


def _percentiles(latencies: list[float]) -> tuple[float | None, float | None, float | None]:
    if not latencies:
        return None, None, None
    return (percentile(latencies, 50), percentile(latencies, 95), percentile(latencies, 99))


if __name__ == "__main__":
    raise SystemExit(main())
