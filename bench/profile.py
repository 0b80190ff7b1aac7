"""`make profile`: where a gRPC call's server CPU goes, by area (issue #12).

Starts the same setup as `make bench` (bench/run.py: embedded PostgreSQL and SecantusDB
in a temporary folder, migrated and seeded, funded users, a plan and a service account;
``gencharge serve`` as a subprocess), then runs a few short closed-loop loads from two
worker processes while py-spy samples the server (``py-spy record --format raw``:
collapsed stacks, aggregated here). Per phase it prints:

- calls/s and the server's CPU per call (µs: the process's user + system time, every
  thread, from /proc, over the measured window, divided by the calls answered in it),
- the share of the server's samples by area (grpc core, interceptors, auth, protobuf
  conversion, logging, SQLAlchemy/asyncpg, domain code, asyncio loop, ...), and that
  share of the CPU per call,
- with ``--top N``, the N leaf functions that take most samples.

Phases: ``health`` (grpc.health.v1 Check: no gencharge interceptor work beyond the
method test), ``wallet`` (WalletService/GetWallet with a customer's session token:
authentication from the caches, the access rule, validation, one read-only
transaction, protobuf out) and, with ``--phases ...,recharge,batch``, Recharge at 8 in
flight and BatchRecharge on 2 streams (a "call" is then one item).

Each stack is charged to the deepest frame that belongs to a named area; frames of the
standard library (json, uuid, contextvars, re, ...) count for the area of the code that
called them, except ``logging``, which is an area of its own. A stack with no named frame
but asyncio's is the loop's own work. Samples of a waiting thread (epoll_wait, a lock, the
GIL) are left out: the shares are of the time the server ran. py-spy runs with
``--native`` (C frames too, so grpc's Cython core, protobuf's C code and the system
calls are seen); it then pauses the server for each sample, which slows it: the CPU per
call is measured from /proc either way, but compare throughput with ``--no-spy`` runs.
``--python-only`` samples Python frames only, without pausing (grpc's core then shows up
as the loop callback that runs it, and grpc's poller thread cannot be seen at all).

``--log-level INFO`` serves with the access log on (the bench runs at WARNING);
``--no-spy`` measures throughput and CPU per call without sampling; ``--repeat N``
runs the phases N times on the same server (medians are printed when N > 1).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import multiprocessing
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from bench.load import Job, Result, _batch, _CallMaker, _closed_loop, _HealthCall, _RechargeCall
from bench.run import (
    WORKER_PROCESSES,
    Fixture,
    drain_outbox,
    gencharge_server,
    prepare,
    service_token,
    start_databases,
    wait_serving,
)
from gencharge.v1 import (
    auth_service_pb2,
    auth_service_pb2_grpc,
    common_pb2,
    wallet_service_pb2_grpc,
)
from gencharge.v1 import wallet_service_pb2 as wallet_pb
from server.ops.embedded import EmbeddedMongo, EmbeddedPostgres, free_port

DATABASE = "gencharge"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

#: Areas, each with the start (or a part, for native libraries) of its frames' file
#: names as py-spy prints them ("sqlalchemy/sql/base.py", "libc.so.6"). A frame's area
#: is the first one that names its file.
AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("interceptors", ("server/rpc/interceptors/",)),
    ("request validation", ("server/core/validation.py",)),
    ("auth / token / RBAC", ("server/auth/", "jwt/", "cryptography/", "_rust.abi3")),
    ("audit", ("server/audit/",)),
    (
        "protobuf conversion",
        (
            "protobuf/",
            "server/core/protoconv.py",
            "/convert.py",
            "grpc_status/",
            "_message.",
            "_upb",
        ),
    ),
    ("logging", ("logging/", "server/core/logs.py")),
    # asyncpg's protocol is Cython: its C frames are named after protocol.c (or its .so).
    ("SQLAlchemy / asyncpg", ("sqlalchemy/", "asyncpg/", "greenlet", "protocol.c", "protocol.cpy")),
    ("domain and core code", ("server/",)),
    ("grpc core", ("grpc/", "grpc_health/", "cygrpc")),
    ("PyMongo", ("pymongo/", "bson/")),
)
LOOP = "asyncio loop"
OTHER = "other"
#: The server's entry point, under every stack: not an area of its own.
_ENTRY = ("server/ops/cli.py", "server/ops/runtime.py")
#: The loop's own frames: a stack is the loop's only when no area above is in it.
_LOOP_FILES = ("asyncio/", "_asyncio", "selectors.py", "selectmodule", "uvloop/", "loop.cpython")
#: A thread sampled in one of these is waiting, not running (py-spy's own idle test does
#: not work in every container, so it is made here, on the stack).
_WAITING = (
    "epoll_wait ",
    "epoll_pwait ",
    "PyThread_acquire_lock_timed ",
    "take_gil ",
    "pthread_cond_",
    "sem_wait ",
    "sem_clockwait ",
    "nanosleep ",
)
#: Without --native, the Python frames that stand for such a wait: the loop's select,
#: an idle executor thread, and a thread in C (grpc's poller) whose state py-spy cannot see.
_WAITING_LEAVES = (
    "EpollSelector.select (",
    "_worker (concurrent/futures/thread.py",
    "Thread.run (threading.py",
    "Thread.wait (threading.py",
    "Condition.wait (threading.py",
)


def _file(frame: str) -> str:
    """``"name (file:line)"`` or ``"name (library.so)"`` -> the file or library."""
    return frame.rpartition(" (")[2].rstrip(")").rsplit(":", 1)[0]


def waiting(stack: Sequence[str]) -> bool:
    if any(frame.startswith(_WAITING) for frame in stack):
        return True
    return stack[-1].startswith(_WAITING_LEAVES)


def area_of(stack: Sequence[str]) -> tuple[str, str]:
    """The area of one sampled stack (outermost frame first), and the frame it was
    charged to: its deepest frame that belongs to an area. In Python-only samples, time
    in a loop callback (``Handle._run`` as the leaf) is C code the loop called: grpc's
    Cython core, for a gRPC server."""
    for frame in reversed(stack):
        file = _file(frame)
        if file.startswith(_ENTRY):
            continue
        for name, fragments in AREAS:
            if file.startswith(fragments) or any(f in file for f in fragments if "." in f):
                return name, frame
    if stack[-1].startswith("Handle._run ("):
        return "grpc core", stack[-1]
    for frame in reversed(stack):
        if any(marker in _file(frame) for marker in _LOOP_FILES):
            return LOOP, frame
    return OTHER, stack[-1]


def _function(frame: str) -> str:
    """A frame without its line number: ``"name (file)"``."""
    name, _, where = frame.rpartition(" (")
    return f"{name} ({where.rstrip(')').rsplit(':', 1)[0]})"


@dataclass
class Profile:
    samples: int = 0
    waiting: int = 0
    by_area: Counter[str] = field(default_factory=Counter)
    by_leaf: Counter[str] = field(default_factory=Counter)
    #: (area, the function the sample was charged to).
    by_charged: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add_raw(self, text: str) -> None:
        """py-spy's raw format: ``frame;frame;...;leaf count`` per line."""
        for line in text.splitlines():
            stack_text, _, count_text = line.rpartition(" ")
            if not stack_text or not count_text.isdigit():
                continue
            count = int(count_text)
            stack = stack_text.split(";")
            if waiting(stack):
                self.waiting += count
                continue
            self.samples += count
            area, frame = area_of(stack)
            self.by_area[area] += count
            self.by_charged[area, _function(frame)] += count
            self.by_leaf[stack[-1]] += count


@dataclass
class Measured:
    phase: str
    calls_per_second: float
    cpu_us_per_call: float
    errors: dict[str, int]
    profile: Profile | None


# --- load -------------------------------------------------------------------------------


class _WalletCall(_CallMaker):
    def __init__(self, channel: grpc.aio.Channel, job: Job) -> None:
        self._stub = wallet_service_pb2_grpc.WalletServiceStub(channel)
        self._request = wallet_pb.GetWalletRequest()
        self._metadata = (("authorization", f"Bearer {job.token}"),)

    async def __call__(self, rng: object) -> str:
        try:
            await self._stub.GetWallet(self._request, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
        return "OK"


#: In flight per phase where it is not ``--concurrency`` (batch: streams).
PHASE_CONCURRENCY = {"recharge": 8, "batch": 2}


def run_load(job: Job) -> Result:
    """Process entry point (picklable): one channel, ``job.concurrency`` callers."""
    return asyncio.run(_run_load(job))


async def _run_load(job: Job) -> Result:
    channel = grpc.aio.insecure_channel(job.target, options=[("grpc.max_concurrent_streams", 1000)])
    try:
        await channel.channel_ready()
        if job.kind == "batch":  # job.concurrency streams; a "call" is one item
            return await _batch([channel], job)
        caller: _CallMaker
        if job.kind == "health":
            caller = _HealthCall(channel)
        elif job.kind == "wallet":
            caller = _WalletCall(channel, job)
        elif job.kind == "recharge":
            caller = _RechargeCall(channel, job)
        else:
            raise ValueError(f"unknown job kind {job.kind}")
        result = Result()
        await asyncio.gather(
            *(
                _closed_loop(job, result, caller, random.Random(job.seed * 1000 + i))
                for i in range(job.concurrency)
            )
        )
        return result
    finally:
        await channel.close()


def register_customer(target: str) -> str:
    """A customer's access token, through the real Register RPC."""
    phone = f"7{uuid.uuid4().int % 10**9:09d}"
    with grpc.insecure_channel(target) as channel:
        reply = auth_service_pb2_grpc.AuthServiceStub(channel).Register(
            auth_service_pb2.RegisterRequest(
                name="Profile Customer",
                email=f"profile-{uuid.uuid4().hex[:12]}@example.com",
                phone_number=phone,
                password=f"profile passphrase {uuid.uuid4().hex}",
                user_type=common_pb2.USER_TYPE_PREPAID,
            ),
            timeout=30,
        )
    return str(reply.tokens.access_token)


# --- measuring --------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of every thread of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: pip install -e '.[dev]' (or --no-spy)")
    return found


def measure(
    pool: concurrent.futures.ProcessPoolExecutor,
    *,
    phase: str,
    kind: str,
    concurrency: int,
    duration: float,
    target: str,
    token: str,
    fixture: Fixture,
    server_pid: int,
    database_url: str,
    spy: bool,
    native: bool,
    rate: int,
    folder: Path,
) -> Measured:
    if kind in ("recharge", "batch"):
        drain_outbox(database_url)
    lead = 2.0  # warm-up calls and py-spy's start happen in it
    start_at = time.time() + lead
    shares = [
        concurrency // WORKER_PROCESSES + (i < concurrency % WORKER_PROCESSES)
        for i in range(WORKER_PROCESSES)
    ]
    jobs = [
        Job(
            kind=kind,
            target=target,
            token=token,
            concurrency=share,
            start_at=start_at,
            duration=duration,
            user_ids=fixture.user_ids,
            plan_id=fixture.plan_id,
            seed=hash((phase, i)) & 0xFFFF,
        )
        for i, share in enumerate(shares)
        if share
    ]
    futures = [pool.submit(run_load, job) for job in jobs]
    time.sleep(max(0.0, start_at - time.time()))
    raw = folder / f"{phase}-{time.monotonic_ns()}.txt"
    sampler: subprocess.Popen[bytes] | None = None
    if spy:
        command = [py_spy(), "record", "--pid", str(server_pid), "--rate", str(rate)]
        command += ["--duration", str(max(1, round(duration))), "--format", "raw"]
        command += ["--output", str(raw)]
        command += ["--native"] if native else ["--nonblocking"]
        sampler = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
    cpu_before = cpu_seconds(server_pid)
    time.sleep(duration)
    cpu_used = cpu_seconds(server_pid) - cpu_before
    results = [f.result() for f in futures]
    profile: Profile | None = None
    if sampler is not None:
        _, err = sampler.communicate(timeout=60)
        if sampler.returncode != 0 or not raw.exists():
            raise SystemExit(f"py-spy failed: {err.decode(errors='replace')[-2000:]}")
        profile = Profile()
        profile.add_raw(raw.read_text())
    ok = sum(r.ok for r in results)
    errors: dict[str, int] = {}
    for r in results:
        for code, count in r.errors.items():
            errors[code] = errors.get(code, 0) + count
    return Measured(
        phase,
        ok / duration,
        cpu_used * 1e6 / ok if ok else float("nan"),
        errors,
        profile,
    )


# --- report -----------------------------------------------------------------------------


def render(runs: list[Measured], top: int) -> str:
    first = runs[0]
    rates = [r.calls_per_second for r in runs]
    cpus = [r.cpu_us_per_call for r in runs]
    lines = [
        f"== {first.phase}: {statistics.median(rates):,.0f} calls/s, server CPU "
        f"{statistics.median(cpus):,.0f} µs per call"
        + (
            f" (median of {len(runs)}: calls/s {min(rates):,.0f}..{max(rates):,.0f}, "
            f"µs {min(cpus):,.0f}..{max(cpus):,.0f})"
            if len(runs) > 1
            else ""
        )
        + (f"  errors={first.errors}" if any(r.errors for r in runs) else "")
    ]
    profiles = [r.profile for r in runs if r.profile is not None]
    if not profiles:
        return "\n".join(lines)
    total = sum(p.samples for p in profiles)
    by_area: Counter[str] = Counter()
    by_leaf: Counter[str] = Counter()
    by_charged: Counter[tuple[str, str]] = Counter()
    for p in profiles:
        by_area.update(p.by_area)
        by_leaf.update(p.by_leaf)
        by_charged.update(p.by_charged)
    cpu = statistics.median(cpus)
    lines.append(f"   {'area':<34} {'samples':>8} {'share':>7} {'µs/call':>8}")
    order = [name for name, _ in AREAS] + [LOOP, OTHER]
    for name in sorted(order, key=lambda n: -by_area[n]):
        share = by_area[name] / total if total else 0.0
        lines.append(f"   {name:<34} {by_area[name]:>8} {share:>7.1%} {share * cpu:>8.1f}")
    lines.append(f"   {'total':<34} {total:>8}")
    if top:
        lines.append(f"   top {top} functions charged (outside grpc core and SQLAlchemy):")
        shown = [
            (key, count)
            for key, count in by_charged.most_common()
            if key[0] not in ("grpc core", "SQLAlchemy / asyncpg")
        ]
        for (name, function), count in shown[:top]:
            lines.append(f"     {count / total:6.1%}  {name:<22} {function[:100]}")
        lines.append(f"   top {top} leaf frames:")
        for leaf, count in by_leaf.most_common(top):
            lines.append(f"     {count / total:6.1%}  {leaf[:110]}")
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per phase")
    parser.add_argument("--phases", default="health,wallet", help="health, wallet, recharge, batch")
    parser.add_argument("--concurrency", type=int, default=32, help="in flight (health, wallet)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each phase")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument(
        "--python-only",
        action="store_true",
        help="py-spy without --native: Python frames only, without pausing the server",
    )
    parser.add_argument("--no-spy", action="store_true", help="measure without sampling")
    parser.add_argument("--top", type=int, default=12, help="leaf frames listed per phase")
    parser.add_argument("--users", type=int, default=50, help="funded customers")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        help="the server's GENCHARGE_LOG_LEVEL (the bench's WARNING; INFO writes the access log)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if not args.no_spy:
        py_spy()

    folder = Path(tempfile.mkdtemp(prefix="gencharge-profile-"))
    print(f"profile folder: {folder}  ({os.cpu_count()} CPUs)", flush=True)
    pg = EmbeddedPostgres(folder / "postgres")
    mongo = EmbeddedMongo(folder / "mongo")
    extra = {"GENCHARGE_LOG_LEVEL": args.log_level}
    try:
        start_databases(pg, mongo, "profile")
        database_url = pg.url(DATABASE)
        mongo_url = mongo.url(DATABASE)
        fixture = asyncio.run(prepare(pg, mongo_url, args.users))
        target = f"127.0.0.1:{free_port()}"
        spawn = multiprocessing.get_context("spawn")
        server_folder = folder / "server"
        with (
            concurrent.futures.ProcessPoolExecutor(WORKER_PROCESSES, mp_context=spawn) as pool,
            gencharge_server(server_folder, database_url, mongo_url, target, 1, extra) as server,
        ):
            wait_serving(target, server, server_folder / "server.log")
            tokens = {
                "health": "",
                "wallet": register_customer(target),
                "recharge": service_token(target, fixture),
            }
            tokens["batch"] = tokens["recharge"]
            spy = "off" if args.no_spy else f"{args.rate} Hz"
            if not args.no_spy and not args.python_only:
                spy += " --native"
            print(
                f"server SERVING on {target} (pid {server.pid}, log level {args.log_level}); "
                f"{args.duration:g} s per phase, py-spy {spy}",
                flush=True,
            )
            runs: dict[str, list[Measured]] = {phase: [] for phase in phases}
            for _ in range(args.repeat):
                for phase in phases:
                    runs[phase].append(
                        measure(
                            pool,
                            phase=phase,
                            kind=phase,
                            concurrency=PHASE_CONCURRENCY.get(phase, args.concurrency),
                            duration=args.duration,
                            target=target,
                            token=tokens[phase],
                            fixture=fixture,
                            server_pid=server.pid,
                            database_url=database_url,
                            spy=not args.no_spy,
                            native=not args.python_only,
                            rate=args.rate,
                            folder=folder,
                        )
                    )
            for phase in phases:
                print(render(runs[phase], args.top), flush=True)
        failed = any(r.errors for phase_runs in runs.values() for r in phase_runs)
        return 1 if failed else 0
    finally:
        mongo.stop()
        pg.stop()
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
