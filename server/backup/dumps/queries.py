"""SQL of the logical dumps and checks (SQLAlchemy Core, plus the catalogue reads and the
few statements Core cannot build: LOCK, TRUNCATE, ALTER TABLE, CREATE/DROP DATABASE).

Identifiers in built statements are table and constraint names read from the database's
own catalogue or validated against the schema metadata, and always quoted here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import (
    Numeric,
    String,
    case,
    cast,
    column,
    func,
    literal_column,
    select,
    table,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core.schema import transactions, users

_PREPARER = postgresql.dialect().identifier_preparer  # type: ignore[no-untyped-call]

#: Session settings that decide how a row prints as text (``row::text``), pinned while
#: stats are computed so that the same data hashes the same on any server and session.
STATS_SETTINGS: Final[dict[str, str]] = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "1",
    "bytea_output": "hex",
}


def quote(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    quoted: str = _PREPARER.quote_identifier(name)
    return quoted


# --- stats --------------------------------------------------------------------------------


async def pin_settings(conn: AsyncConnection, settings: dict[str, str]) -> dict[str, str]:
    """Set ``settings`` for the rest of the transaction (``set_config(..., true)``);
    returns the values they had, to put back with this same function."""
    previous: dict[str, str] = {}
    for name, value in settings.items():
        previous[name] = (
            await conn.execute(select(func.current_setting(name, type_=String)))
        ).scalar_one()
        await conn.execute(select(func.set_config(name, value, True)))
    return previous


async def table_count_and_hash_sum(conn: AsyncConnection, name: str) -> tuple[int, int]:
    """Rows of ``name`` and the sum of ``hashtextextended(row::text, 0)`` over them (an
    order-independent content hash; the caller reduces it mod 2^64)."""
    aliased = table(name).alias("t")
    row_hash = func.hashtextextended(literal_column("t::text"), 0)
    statement = select(func.count(), func.coalesce(func.sum(row_hash), 0)).select_from(aliased)
    count, total = (await conn.execute(statement)).one()
    return int(count), int(Decimal(total))


async def alembic_revision(conn: AsyncConnection) -> str:
    """The schema revision (``alembic_version``); empty when the table is missing."""
    present = (
        await conn.execute(select(func.to_regclass("public.alembic_version", type_=String)))
    ).scalar_one()
    if present is None:
        return ""
    version = column("version_num", String)
    value = (await conn.execute(select(version).select_from(table("alembic_version")))).scalar()
    return str(value or "")


async def export_snapshot(conn: AsyncConnection) -> str:
    """``pg_export_snapshot()`` of the connection's (REPEATABLE READ) transaction."""
    return str((await conn.execute(select(func.pg_export_snapshot(type_=String)))).scalar_one())


async def public_tables(conn: AsyncConnection) -> list[str]:
    """The ordinary (and partitioned) tables of schema ``public``."""
    statement = text(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname"
    )
    return [str(name) for name in (await conn.execute(statement)).scalars()]


# --- the ledger invariant -----------------------------------------------------------------


async def ledger_mismatches(conn: AsyncConnection) -> tuple[int, list[tuple[int, Any, Any]]]:
    """Wallets, and ``(user_id, balance, ledger)`` of each wallet whose balance is not the
    sum of its successful wallet credits minus debits, or is negative (the invariant of
    tests/helpers/money.py ``assert_ledger_balances``)."""
    signed = case(
        (transactions.c.txn_type == "credit", transactions.c.amount), else_=-transactions.c.amount
    )
    ledger = (
        select(transactions.c.user_id, func.sum(signed).label("ledger"))
        .where(transactions.c.category == "wallet", transactions.c.status == "success")
        .group_by(transactions.c.user_id)
        .subquery()
    )
    total = func.coalesce(ledger.c.ledger, cast(0, Numeric))
    wallets = (await conn.execute(select(func.count()).select_from(users))).scalar_one()
    statement = (
        select(users.c.user_id, users.c.wallet_balance, total.label("ledger"))
        .select_from(users.outerjoin(ledger, ledger.c.user_id == users.c.user_id))
        .where((users.c.wallet_balance != total) | (users.c.wallet_balance < 0))
        .order_by(users.c.user_id)
    )
    rows = (await conn.execute(statement)).all()
    return int(wallets), [(int(r.user_id), r.wallet_balance, r.ledger) for r in rows]


# --- live restore -------------------------------------------------------------------------


@dataclass(frozen=True)
class ForeignKey:
    """A foreign key as the catalogue defines it (re-created from ``definition``)."""

    name: str
    table: str
    referenced: str
    definition: str


async def foreign_keys_touching(conn: AsyncConnection, tables: Sequence[str]) -> list[ForeignKey]:
    """The foreign keys of schema ``public`` from or to any of ``tables``."""
    statement = text(
        "SELECT con.conname, src.relname AS src, dst.relname AS dst, "
        "pg_get_constraintdef(con.oid) AS definition "
        "FROM pg_constraint con "
        "JOIN pg_class src ON src.oid = con.conrelid "
        "JOIN pg_class dst ON dst.oid = con.confrelid "
        "JOIN pg_namespace n ON n.oid = src.relnamespace "
        "WHERE con.contype = 'f' AND n.nspname = 'public' "
        "AND (src.relname = ANY(:tables) OR dst.relname = ANY(:tables)) "
        "ORDER BY src.relname, con.conname"
    )
    rows = (await conn.execute(statement, {"tables": list(tables)})).all()
    return [ForeignKey(r.conname, r.src, r.dst, r.definition) for r in rows]


async def enabled_user_triggers(
    conn: AsyncConnection, tables: Sequence[str]
) -> list[tuple[str, str]]:
    """``(table, trigger)`` of the enabled, non-internal triggers on ``tables``."""
    statement = text(
        "SELECT c.relname, t.tgname FROM pg_trigger t "
        "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE NOT t.tgisinternal AND t.tgenabled <> 'D' AND n.nspname = 'public' "
        "AND c.relname = ANY(:tables) ORDER BY c.relname, t.tgname"
    )
    rows = (await conn.execute(statement, {"tables": list(tables)})).all()
    return [(str(r.relname), str(r.tgname)) for r in rows]


async def owned_sequences(conn: AsyncConnection, tables: Sequence[str]) -> dict[str, str]:
    """``{qualified sequence name as pg_dump prints it: table}`` for the sequences owned by
    columns of ``tables`` (serial and identity columns)."""
    statement = text(
        "SELECT quote_ident(sn.nspname) || '.' || quote_ident(s.relname) AS seq, "
        "t.relname AS tab FROM pg_depend d "
        "JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
        "JOIN pg_namespace sn ON sn.oid = s.relnamespace "
        "JOIN pg_class t ON t.oid = d.refobjid "
        "JOIN pg_namespace tn ON tn.oid = t.relnamespace "
        "WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass "
        "AND d.deptype IN ('a', 'i') AND tn.nspname = 'public' AND t.relname = ANY(:tables)"
    )
    rows = (await conn.execute(statement, {"tables": list(tables)})).all()
    return {str(r.seq): str(r.tab) for r in rows}


async def set_lock_timeout(conn: AsyncConnection, milliseconds: int) -> None:
    await conn.execute(select(func.set_config("lock_timeout", f"{milliseconds}ms", True)))


async def lock_tables(conn: AsyncConnection, tables: Sequence[str]) -> None:
    """ACCESS EXCLUSIVE locks on ``tables``, taken in the order given."""
    names = ", ".join(quote(name) for name in tables)
    await conn.execute(text(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE"))


async def drop_foreign_key(conn: AsyncConnection, fk: ForeignKey) -> None:
    await conn.execute(text(f"ALTER TABLE {quote(fk.table)} DROP CONSTRAINT {quote(fk.name)}"))


async def add_foreign_key(conn: AsyncConnection, fk: ForeignKey) -> None:
    """Re-create ``fk`` from its catalogue definition (PostgreSQL checks every row)."""
    await conn.execute(
        text(f"ALTER TABLE {quote(fk.table)} ADD CONSTRAINT {quote(fk.name)} {fk.definition}")
    )


async def set_trigger(
    conn: AsyncConnection, table_name: str, trigger: str, *, enabled: bool
) -> None:
    verb = "ENABLE" if enabled else "DISABLE"
    await conn.execute(text(f"ALTER TABLE {quote(table_name)} {verb} TRIGGER {quote(trigger)}"))


async def truncate(conn: AsyncConnection, tables: Sequence[str]) -> None:
    await conn.execute(text("TRUNCATE " + ", ".join(quote(name) for name in tables)))


async def set_sequence(conn: AsyncConnection, sequence: str, value: int, called: bool) -> None:
    """``setval`` of ``sequence`` (a qualified name as pg_dump prints it)."""
    await conn.execute(select(func.setval(func.to_regclass(sequence), value, called)))


# --- scratch databases (on a connection outside any transaction) ---------------------------


def create_database_sql(name: str) -> str:
    return f"CREATE DATABASE {quote(name)}"


def drop_database_sql(name: str) -> str:
    return f"DROP DATABASE IF EXISTS {quote(name)} WITH (FORCE)"
