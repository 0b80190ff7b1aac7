"""`gencharge serve` with GENCHARGE_WORKERS=2: one port, two worker processes that share
the signing key, a clean SIGTERM, and a supervisor that stops when a worker dies."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import asyncpg
import grpc
import pytest

from gencharge.v1 import auth_service_pb2 as auth_pb
from gencharge.v1 import auth_service_pb2_grpc, common_pb2
from server.ops.embedded import free_port
from server.ops.seed import demo
from tests.helpers.clock import HANG_SECONDS
from tests.ops.test_cli import GENCHARGE, _wait_serving

#: Fresh connections made to see both workers answer: all of them landing on one
#: worker by chance has probability 2 * 2**-24.
CONNECTIONS = 24
#: How long a stopping service may take (a bound on a hang): the workers' grace, the
#: supervisor's kill margin and the embedded servers' stop, with room to spare.
STOP_SECONDS = 2 * HANG_SECONDS


def _env(private_tmp: Path, pg_url: str, mongo_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENCHARGE_")}
    env.update(
        GENCHARGE_DATABASE_URL=pg_url,
        GENCHARGE_MONGO_URL=mongo_url,
        GENCHARGE_DATA_DIR=str(private_tmp / "data"),
        GENCHARGE_LISTEN=f"127.0.0.1:{free_port()}",
        GENCHARGE_LOG_FORMAT="json",
        # GENCHARGE_LOAD_DEMO_DATA unset: on configured databases that means no demo data.
        # Generous: the supervisor kills a worker that has not stopped within the grace
        # plus a margin, and a busy machine must not turn a clean stop into a kill. Not
        # slower when all goes well: a worker stops as soon as no call is in flight.
        GENCHARGE_SHUTDOWN_GRACE_SECONDS=str(HANG_SECONDS / 2),
        GENCHARGE_SCHEDULER_INTERVAL_SECONDS="3600",
        GENCHARGE_WORKERS="2",
    )
    env.update(extra)
    return env


def _log_lines(path: Path) -> list[dict[str, object]]:
    lines = []
    for raw in path.read_text().splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines


def _wait_for(path: Path, msg: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(line.get("msg") == msg for line in _log_lines(path)):
            return
        assert proc.poll() is None, path.read_text()
        time.sleep(0.1)
    raise AssertionError(f"no {msg!r} in the log:\n{path.read_text()}")


def _worker_pids(path: Path) -> list[int]:
    (started,) = [line for line in _log_lines(path) if line.get("msg") == "workers started"]
    pids = started["pids"]
    assert isinstance(pids, list)
    return [int(p) for p in pids]


def _register(target: str) -> str:
    with grpc.insecure_channel(target) as channel:
        reply = auth_service_pb2_grpc.AuthServiceStub(channel).Register(
            auth_pb.RegisterRequest(
                name="Worker Test",
                email=f"workers-{uuid.uuid4().hex[:10]}@example.com",
                password="correct horse battery staple 7",
                user_type=common_pb2.USER_TYPE_PREPAID,
            ),
            timeout=30,
        )
    return reply.tokens.access_token


def test_two_workers_share_the_port_and_the_keys(
    private_tmp: Path, pg_url: str, mongo_url: str
) -> None:
    env = _env(private_tmp, pg_url, mongo_url)
    target = env["GENCHARGE_LISTEN"]
    log_path = private_tmp / "serve.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [GENCHARGE, "serve"], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        _wait_serving(target, proc)
        _wait_for(log_path, "all workers serving", proc)
        token = _register(target)
        # Each channel with its own connection: the kernel spreads connections over the
        # workers. A token signed by one worker is accepted by the other.
        for _ in range(CONNECTIONS):
            options = [("grpc.use_local_subchannel_pool", 1)]
            with grpc.insecure_channel(target, options=options) as channel:
                me = auth_service_pb2_grpc.AuthServiceStub(channel).GetMe(
                    auth_pb.GetMeRequest(),
                    metadata=[("authorization", f"Bearer {token}")],
                    timeout=30,
                )
                assert me.user.name == "Worker Test"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=STOP_SECONDS) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = _log_lines(log_path)
    served_by = {line.get("worker") for line in lines if line.get("rpc", "").endswith("/GetMe")}
    assert served_by == {0, 1}, served_by
    stopped = [line["worker"] for line in lines if line.get("msg") == "worker stopped"]
    assert sorted(stopped) == [0, 1]
    assert lines[-1]["msg"] == "stopped"
    for pid in _worker_pids(log_path):
        assert _gone(pid)
    # Configured databases, GENCHARGE_LOAD_DEMO_DATA unset: the demo set (with its admin
    # of documented password) never reached them.
    assert asyncio.run(_demo_rows(pg_url)) == (0, 0)


async def _demo_rows(pg_url: str) -> tuple[int, int]:
    conn = await asyncpg.connect(pg_url)
    try:
        admins = await conn.fetchval(
            "SELECT count(*) FROM admins WHERE email = ANY($1)",
            [a.email for a in demo.DEMO_ADMINS],
        )
        users = await conn.fetchval(
            "SELECT count(*) FROM users WHERE email = ANY($1)", [u.email for u in demo.DEMO_USERS]
        )
    finally:
        await conn.close()
    return int(admins), int(users)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except OSError:
        return True


def test_a_dead_worker_stops_the_service(private_tmp: Path, pg_url: str, mongo_url: str) -> None:
    env = _env(private_tmp, pg_url, mongo_url)
    log_path = private_tmp / "serve.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [GENCHARGE, "serve"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_serving(env["GENCHARGE_LISTEN"], proc)
        _wait_for(log_path, "all workers serving", proc)
        first, _second = _worker_pids(log_path)
        os.kill(first, signal.SIGKILL)
        # The supervisor notices, stops the other worker and exits non-zero, so that
        # a process manager restarts the service as a whole.
        assert proc.wait(timeout=STOP_SECONDS) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log_path.read_text()
    assert "a worker exited unexpectedly" in text
    assert "1 worker(s) exited unexpectedly" in text
    stopped = [
        line["worker"] for line in _log_lines(log_path) if line.get("msg") == "worker stopped"
    ]
    assert stopped == [1]


def test_one_supervisor_per_address_and_no_orphaned_workers(
    private_tmp: Path, pg_url: str, mongo_url: str
) -> None:
    env = _env(private_tmp, pg_url, mongo_url)
    log_path = private_tmp / "serve.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [GENCHARGE, "serve"], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        _wait_serving(env["GENCHARGE_LISTEN"], proc)
        _wait_for(log_path, "all workers serving", proc)
        # An overlapping deploy: a second supervisor on the same address is refused.
        second = subprocess.run([GENCHARGE, "serve"], env=env, capture_output=True, timeout=60)
        assert second.returncode == 2
        assert b"another gencharge supervisor is serving on" in second.stderr
        # The supervisor dies hard: its workers notice and stop serving.
        pids = _worker_pids(log_path)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + STOP_SECONDS
        while time.monotonic() < deadline and not all(_gone(pid) for pid in pids):
            time.sleep(0.1)
        assert all(_gone(pid) for pid in pids), log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "the supervisor is gone; stopping this worker" in log_path.read_text()


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists() or _is_zombie(pid)


def test_workers_need_a_fixed_port(private_tmp: Path, pg_url: str, mongo_url: str) -> None:
    env = _env(private_tmp, pg_url, mongo_url, GENCHARGE_LISTEN="127.0.0.1:0")
    done = subprocess.run([GENCHARGE, "serve"], env=env, capture_output=True, timeout=60)
    assert done.returncode == 2
    assert b"GENCHARGE_WORKERS > 1 needs a fixed port" in done.stderr


def test_workers_cannot_take_a_port_in_use(private_tmp: Path, pg_url: str, mongo_url: str) -> None:
    env = _env(private_tmp, pg_url, mongo_url)
    host, port = env["GENCHARGE_LISTEN"].rsplit(":", 1)
    with socket.create_server((host, int(port))):  # someone else's server
        done = subprocess.run([GENCHARGE, "serve"], env=env, capture_output=True, timeout=120)
    assert done.returncode == 1
    assert b"worker cannot start: cannot listen on" in done.stderr
    assert b"Traceback" not in done.stderr


async def test_a_single_server_does_not_share_its_port(resources, grpc_server) -> None:
    from server.core.config import ConfigurationError
    from server.rpc.app import start_server

    with pytest.raises(ConfigurationError, match="address is in use"):
        await start_server(resources, f"127.0.0.1:{grpc_server.port}")
