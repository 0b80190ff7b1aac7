"""``pip install ./clients/python`` (the install command of docs/clients/python.md, run
as written from a folder laid out like the repository) into a fresh virtual environment, with its
dependencies from the package registry: the package imports and calls the real server
with nothing of this repository on the path (no ``server``, no ``generated/``)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import textwrap
from pathlib import Path

from tests.clients.python.support import REPO_ROOT, doc_blocks

#: A bound on a hang only: pip may download grpcio on a cold cache.
INSTALL_SECONDS = 600

SCRIPT = textwrap.dedent(
    """
    import asyncio
    import importlib.util
    import sys
    from pathlib import Path

    import gencharge_client
    from gencharge_client import AsyncClient, Client
    from gencharge_client.v1 import auth_service_pb2

    package = Path(gencharge_client.__file__).parent
    assert str(package).startswith(sys.prefix), package
    assert (package / "py.typed").exists()
    assert (package / "v1" / "recharge_service_pb2.pyi").exists()
    for name in ("server", "gencharge", "tests"):
        assert importlib.util.find_spec(name) is None, name


    async def main() -> None:
        async with AsyncClient(sys.argv[1]) as client:
            jwks = await client.auth.get_jwks(auth_service_pb2.GetJwksRequest())
            print("async", len(jwks.keys))


    asyncio.run(main())
    with Client(sys.argv[1]) as client:
        print("sync", len(list(client.plan.list_plan_groups.items())) >= 0)
    """
)


async def run(*args: str | Path, cwd: Path) -> str:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PIP_REQUIRE_VIRTUALENV"}
    }
    process = await asyncio.create_subprocess_exec(
        *map(str, args),
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), INSTALL_SECONDS)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    return text


async def test_installs_alone_and_calls_the_server(tmp_path: Path, address: str) -> None:
    venv = tmp_path / "venv"
    await run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    ((_, command),) = doc_blocks("sh")
    pip, *arguments = command.split()
    assert pip == "pip", command
    # As written, from a folder laid out like the repository (pip builds in place: not in
    # this checkout, which other tests read at the same time).
    checkout = tmp_path / "checkout"
    shutil.copytree(
        REPO_ROOT / "clients" / "python",
        checkout / "clients" / "python",
        ignore=shutil.ignore_patterns("build", "*.egg-info", ".mypy_cache", "__pycache__"),
    )
    await run(
        python, "-m", "pip", *arguments, "--quiet", "--disable-pip-version-check", cwd=checkout
    )
    await run(python, "-m", "pip", "check", cwd=tmp_path)
    output = await run(python, "-c", SCRIPT, address, cwd=tmp_path)
    lines = output.splitlines()
    assert lines[-2].startswith("async ") and int(lines[-2].split()[1]) >= 1  # signing keys
    assert lines[-1] == "sync True"
