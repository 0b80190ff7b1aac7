"""`gencharge` end to end: serve on the embedded default, SIGTERM, restart, data kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gencharge.v1 import plan_service_pb2, plan_service_pb2_grpc
from server.ops.embedded import free_port
from tests.helpers.clock import HANG_SECONDS

GENCHARGE = str(Path(sys.executable).parent / "gencharge")
ADMIN_PASSWORD = "correct horse battery staple 42"


@pytest.fixture
def env(private_tmp: Path) -> Iterator[dict[str, str]]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GENCHARGE_")}
    clean.update(
        GENCHARGE_DATA_DIR=str(private_tmp / "data"),
        GENCHARGE_LISTEN=f"127.0.0.1:{free_port()}",
        GENCHARGE_LOG_FORMAT="json",
        GENCHARGE_BOOTSTRAP_ADMIN_EMAIL="ops@example.com",
        GENCHARGE_BOOTSTRAP_ADMIN_PASSWORD=ADMIN_PASSWORD,
        GENCHARGE_SHUTDOWN_GRACE_SECONDS="2",
    )
    yield clean


def _wait_serving(target: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert proc.poll() is None, "gencharge serve exited early"
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise AssertionError("gencharge serve never became SERVING")


def _plan_names(target: str) -> list[str]:
    with grpc.insecure_channel(target) as channel:
        stub = plan_service_pb2_grpc.PlanServiceStub(channel)
        reply = stub.ListPlans(
            plan_service_pb2.ListPlansRequest(page_size=200), timeout=HANG_SECONDS
        )
        return [p.plan_name for p in reply.plans]


def _serve_and_stop(env: dict[str, str], tmp_path: Path, name: str) -> tuple[list[str], str]:
    log_path = tmp_path / f"{name}.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [GENCHARGE, "serve"], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
        try:
            _wait_serving(env["GENCHARGE_LISTEN"], proc)
            names = _plan_names(env["GENCHARGE_LISTEN"])
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=2 * HANG_SECONDS)  # SIGTERM, then the embedded servers
    log_text = log_path.read_text()
    assert code == 0, log_text
    return names, log_text


def test_serve_embedded_default_sigterm_and_restart(env: dict[str, str], tmp_path: Path) -> None:
    data = Path(env["GENCHARGE_DATA_DIR"])
    # Load the demo catalogue with the CLI (starts and stops the embedded servers) ...
    subprocess.run([GENCHARGE, "seed", "--demo"], env=env, check=True, capture_output=True)
    # ... then serve without loading demo data: the plans seen come from disk.
    env = {**env, "GENCHARGE_LOAD_DEMO_DATA": "false"}
    names, log_text = _serve_and_stop(env, tmp_path, "first")
    assert len(names) >= 5
    assert '"msg": "stopped"' in log_text
    assert "bootstrap admin ready" in log_text
    assert ADMIN_PASSWORD not in log_text
    # The embedded servers were stopped with the service.
    assert not (data / "postgres" / "postmaster.pid").exists()
    assert not (data / "mongo" / "server.pid").exists()
    again, _ = _serve_and_stop(env, tmp_path, "second")
    assert again == names


def test_create_admin_rejects_short_password(env: dict[str, str]) -> None:
    result = subprocess.run(
        [GENCHARGE, "create-admin", "--email", "a@example.com", "--name", "A", "--password-stdin"],
        env=env,
        input=b"short\n",
        capture_output=True,
    )
    assert result.returncode == 2
    assert b"at least 8" in result.stderr
    common = subprocess.run(
        [GENCHARGE, "create-admin", "--email", "a@example.com", "--name", "A", "--password-stdin"],
        env=env,
        input=b"password123\n",
        capture_output=True,
    )
    assert common.returncode == 2 and b"common" in common.stderr


def test_seed_demo_refused_in_production(env: dict[str, str]) -> None:
    result = subprocess.run(
        [GENCHARGE, "seed", "--demo"],
        env={**env, "GENCHARGE_ENVIRONMENT": "production"},
        capture_output=True,
    )
    assert result.returncode == 2
    assert b"never loaded in production" in result.stderr


def test_production_requires_database_urls(env: dict[str, str]) -> None:
    result = subprocess.run(
        [GENCHARGE, "migrate"],
        env={**env, "GENCHARGE_ENVIRONMENT": "production"},
        capture_output=True,
    )
    assert result.returncode == 2
    assert b"GENCHARGE_DATABASE_URL" in result.stderr


def test_create_service_account_prints_secret_once(env: dict[str, str]) -> None:
    args = [GENCHARGE, "create-service-account", "--name", "billing", "--client-id", "svc_bill"]
    scoped = [*args, "--scope", "recharges.write", "--scope", "payments.confirm"]
    result = subprocess.run(scoped, env=env, capture_output=True, check=True)
    out = result.stdout.decode()
    assert "client_id: svc_bill" in out
    assert "client_secret: gcs_" in out
    assert "scopes: payments.confirm recharges.write" in out
    again = subprocess.run(args, env=env, capture_output=True)
    assert again.returncode == 2 and b"exists" in again.stderr


def test_service_account_scopes_are_checked_set_and_listed(env: dict[str, str]) -> None:
    create = [GENCHARGE, "create-service-account", "--name", "sync", "--client-id", "svc_sync"]
    # An unknown scope is refused before any database starts, naming the known ones.
    typo = subprocess.run([*create, "--scope", "recharge.write"], env=env, capture_output=True)
    assert typo.returncode == 2
    error = typo.stderr.decode()
    assert "'recharge.write'" in error and "recharges.write" in error, error
    help_text = subprocess.run(
        [*create, "--help"], env=env, capture_output=True, check=True
    ).stdout.decode()
    assert "payments.confirm" in help_text and "recharges.read" in help_text

    out = subprocess.run(create, env=env, capture_output=True, check=True).stdout.decode()
    assert "scopes: none" in out
    change = [GENCHARGE, "set-service-account-scopes", "svc_sync"]
    assert subprocess.run(change, env=env, capture_output=True).returncode == 2  # no --scope
    out = subprocess.run(
        [*change, "--scope", "recharges.read"], env=env, capture_output=True, check=True
    ).stdout.decode()
    assert "svc_sync: scopes recharges.read" in out
    listed = subprocess.run(
        [GENCHARGE, "list-service-accounts"], env=env, capture_output=True, check=True
    ).stdout.decode()
    assert "svc_sync\tactive\trecharges.read\tnever\tsync" in listed, listed
    unknown = subprocess.run(
        [GENCHARGE, "set-service-account-scopes", "svc_nobody", "--none"],
        env=env,
        capture_output=True,
    )
    assert unknown.returncode == 2 and b"not found" in unknown.stderr
