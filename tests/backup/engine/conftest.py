"""Fixtures of the backup engine tests: backup keys, and the storage contract's two
backends, a local folder and S3 spoken by moto's standalone server.

moto's server (``python -m moto.server``, from PyPI) is our stand-in for real S3: a
separate process speaking the S3 HTTP API on a loopback port, started once per session
and stopped at the end; obstore talks to it over real HTTP exactly as to AWS. Each test
gets its own bucket.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.backup.keys import BackupKeys
from server.backup.storage import LocalStorage, Storage, storage_from_settings
from server.core.config import Settings
from server.ops.embedded import free_port, wait_for_port
from tests.helpers.clock import HANG_SECONDS

S3_ACCESS_KEY_ID = "gencharge-test"
S3_SECRET_ACCESS_KEY = "gencharge-test-secret"
S3_REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """The URL of a moto S3 server, a subprocess of this session."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port, HANG_SECONDS, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=HANG_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def create_bucket(moto_url: str) -> str:
    """A new empty bucket on the moto server (an S3 CreateBucket: HTTP PUT /<bucket>)."""
    bucket = f"gencharge-{uuid.uuid4().hex[:16]}"
    request = urllib.request.Request(f"{moto_url}/{bucket}", method="PUT")  # noqa: S310
    with urllib.request.urlopen(request, timeout=HANG_SECONDS) as reply:  # noqa: S310
        assert reply.status == 200
    return bucket


def s3_settings(moto_url: str, url: str, **extra: object) -> Settings:
    return Settings(
        backup_storage_url=url,
        backup_s3_endpoint=moto_url,
        backup_s3_region=S3_REGION,
        backup_s3_access_key_id=S3_ACCESS_KEY_ID,
        backup_s3_secret_access_key=S3_SECRET_ACCESS_KEY,  # type: ignore[arg-type]
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """The same contract, once over a local folder and once over S3 (moto)."""
    if request.param == "local":
        return LocalStorage(tmp_path / "backups")
    moto = request.getfixturevalue("moto_url")
    bucket = create_bucket(moto)
    return storage_from_settings(s3_settings(moto, f"s3://{bucket}/gencharge/backups"))


@pytest.fixture
def local_storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "backups")


@pytest.fixture
def keys() -> BackupKeys:
    return BackupKeys.from_bytes(os.urandom(32))
