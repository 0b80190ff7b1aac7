"""The SDK is typed: ``mypy --strict`` passes on clients/python/src, and code using it is
checked for real (a wrong request type or a misread response is an error), the guide's
examples (docs/clients/python.md) included."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.clients.python.support import CLIENT_README, DOC, REPO_ROOT, doc_blocks

CLIENT_ROOT = REPO_ROOT / "clients" / "python"
STRICT = ["--strict", "--config-file", str(CLIENT_ROOT / "pyproject.toml")]

GOOD = """
from collections.abc import AsyncIterator, Iterator

from gencharge_client import AsyncClient, BatchOutcome, Client, SessionCredentials
from gencharge_client.v1 import identity_pb2, plan_service_pb2, recharge_service_pb2


async def use(client: AsyncClient) -> None:
    session: SessionCredentials = await client.login(email="a@example.com", password="p")
    me = client.with_credentials(session)
    recharge: recharge_service_pb2.Recharge = await me.recharge.recharge(
        recharge_service_pb2.RechargeRequest(plan_id=1)
    )
    plans: AsyncIterator[plan_service_pb2.Plan] = me.plan.list_plans.items()
    principal: identity_pb2.Principal = await me.auth.get_me()
    outcomes: AsyncIterator[BatchOutcome] = client.batch_recharge([])
    print(recharge, plans, principal, outcomes)


def use_sync(client: Client) -> None:
    session: SessionCredentials = client.login(email="a@example.com", password="p")
    me = client.with_credentials(session)
    recharge: recharge_service_pb2.Recharge = me.recharge.recharge(
        recharge_service_pb2.RechargeRequest(plan_id=1)
    )
    plans: Iterator[plan_service_pb2.Plan] = me.plan.list_plans.items()
    outcomes: Iterator[BatchOutcome] = client.batch_recharge([])
    print(recharge, plans, outcomes)
"""

BAD = """
from gencharge_client import AsyncClient, Client
from gencharge_client.v1 import plan_service_pb2, recharge_service_pb2


async def use(client: AsyncClient) -> None:
    quote: plan_service_pb2.Plan = await client.recharge.quote_recharge(
        recharge_service_pb2.QuoteRechargeRequest()
    )
    await client.recharge.recharge(recharge_service_pb2.QuoteRechargeRequest())


def use_sync(client: Client) -> None:
    client.login(email="a@example.com")
"""


def mypy(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_package_passes_mypy_strict() -> None:
    result = mypy("--strict", "--config-file", "pyproject.toml", cwd=CLIENT_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_code_using_the_sdk_is_type_checked(tmp_path: Path) -> None:
    (tmp_path / "good.py").write_text(textwrap.dedent(GOOD))
    (tmp_path / "bad.py").write_text(textwrap.dedent(BAD))
    good = mypy(*STRICT, str(tmp_path / "good.py"), cwd=CLIENT_ROOT)
    assert good.returncode == 0, good.stdout + good.stderr
    bad = mypy(*STRICT, str(tmp_path / "bad.py"), cwd=CLIENT_ROOT)
    assert bad.returncode == 1, bad.stdout
    errors = [line for line in bad.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 3, bad.stdout
    assert "Incompatible types in assignment" in errors[0]
    assert 'incompatible type "QuoteRechargeRequest"' in errors[1]
    assert 'Missing named argument "password"' in errors[2]


@pytest.mark.parametrize("doc", [DOC, CLIENT_README], ids=["guide", "readme"])
def test_the_documented_examples_type_check(tmp_path: Path, doc: Path) -> None:
    blocks = [body for _, body in doc_blocks("python", doc)]
    assert blocks
    # The guide's blocks run as one script; the README's each stand alone.
    scripts = {"guide": "\n".join(blocks)} if doc == DOC else dict(enumerate(blocks))
    for name, body in scripts.items():
        (tmp_path / f"example_{name}.py").write_text(body)
    result = mypy(*STRICT, *map(str, sorted(tmp_path.glob("example_*.py"))), cwd=CLIENT_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
