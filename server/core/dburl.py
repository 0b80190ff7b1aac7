"""Database URL helpers.

Configuration carries plain libpq-style URLs (``postgresql://user:pw@host:port/db``);
SQLAlchemy's async engine needs the ``postgresql+asyncpg://`` dialect and asyncpg's
keyword names for a few libpq query parameters.
"""

from __future__ import annotations

from sqlalchemy.engine import make_url

_ASYNC_DRIVERNAME = "postgresql+asyncpg"
_POSTGRES_SCHEMES = frozenset(
    {"postgres", "postgresql", "postgresql+asyncpg", "postgresql+psycopg", "postgresql+psycopg2"}
)
# libpq query parameter -> asyncpg.connect() keyword
_RENAMED_PARAMS = {"sslmode": "ssl", "connect_timeout": "timeout"}
# libpq-only parameters asyncpg.connect() does not accept; dropped rather than failing.
_DROPPED_PARAMS = frozenset(
    {
        "application_name",
        "options",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "client_encoding",
        "gssencmode",
        "channel_binding",
    }
)


def to_async_url(url: str) -> str:
    """Return ``url`` rewritten for SQLAlchemy's asyncpg dialect.

    Accepts ``postgresql://``, ``postgres://`` and ``postgresql+<driver>://`` URLs.
    ``sslmode=`` becomes ``ssl=`` and ``connect_timeout=`` becomes ``timeout=`` (the
    names asyncpg uses); libpq-only parameters asyncpg does not understand are dropped.
    """
    raw = url.strip()
    if raw.startswith("postgres://"):
        raw = "postgresql://" + raw[len("postgres://") :]
    parsed = make_url(raw)
    if parsed.drivername not in _POSTGRES_SCHEMES:
        raise ValueError(f"not a PostgreSQL URL: {parsed.drivername}://...")
    query: dict[str, str | tuple[str, ...]] = {}
    for key, value in parsed.query.items():
        if key in _DROPPED_PARAMS:
            continue
        query[_RENAMED_PARAMS.get(key, key)] = value
    converted = parsed.set(drivername=_ASYNC_DRIVERNAME, query=query)
    return converted.render_as_string(hide_password=False)
