"""Checks of dumped and restored data: per table (collection) row counts and
order-independent content hashes, the ledger invariant, and their comparison.

A hash is the sum, mod 2^64, of one 64-bit hash per row (document), written as a decimal
string: the same rows give the same hash whatever their physical order, in the live
database, in a dump's snapshot and in a restore of it.

- PostgreSQL: ``hashtextextended(row::text, 0)`` per row, with the session settings that
  decide how a row prints (``TimeZone`` UTC, ``DateStyle`` ISO, ``IntervalStyle``,
  ``extra_float_digits``, ``bytea_output``) pinned for the computation and put back
  after, so the hash does not depend on the session or the server's defaults.
- MongoDB: the first 8 bytes (big-endian) of SHA-256 over the document's canonical BSON
  (keys of every sub-document sorted, BSON types kept), so a server that reorders fields
  still hashes the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import bson
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo.asynchronous.database import AsyncDatabase
from sqlalchemy.ext.asyncio import AsyncConnection

from server.backup.dumps import queries

MOD = 2**64
#: How documents are decoded for hashing (whatever the client's own options).
_HASH_CODEC: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=False)
_RAW_CODEC: CodecOptions[RawBSONDocument] = CodecOptions(document_class=RawBSONDocument)


@dataclass(frozen=True)
class TableStats:
    """Per table (collection): ``rows`` count and content ``hashes`` (decimal strings)."""

    rows: dict[str, int]
    hashes: dict[str, str]


async def postgres_stats(conn: AsyncConnection, tables: Sequence[str]) -> TableStats:
    """Counts and hashes of ``tables`` as ``conn``'s transaction sees them (one scan per
    table; call it inside a REPEATABLE READ transaction to see one snapshot)."""
    previous = await queries.pin_settings(conn, queries.STATS_SETTINGS)
    rows: dict[str, int] = {}
    hashes: dict[str, str] = {}
    try:
        for name in tables:
            count, total = await queries.table_count_and_hash_sum(conn, name)
            rows[name] = count
            hashes[name] = str(total % MOD)
    finally:
        await queries.pin_settings(conn, previous)
    return TableStats(rows, hashes)


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    return value


def document_hash(raw: bytes) -> int:
    """The 64-bit hash of one BSON document (bytes as stored)."""
    canonical = bson.encode(_canonical(bson.decode(raw, codec_options=_HASH_CODEC)))
    return int.from_bytes(hashlib.sha256(canonical).digest()[:8], "big")


class HashSum:
    """A running order-independent hash and count of documents."""

    def __init__(self) -> None:
        self.rows = 0
        self.total = 0

    def add(self, raw: bytes) -> None:
        self.rows += 1
        self.total = (self.total + document_hash(raw)) % MOD

    @property
    def digest(self) -> str:
        return str(self.total)


async def mongo_stats(db: AsyncDatabase[Any], collections: Sequence[str]) -> TableStats:
    """Counts and hashes of ``collections`` (streamed with a cursor)."""
    rows: dict[str, int] = {}
    hashes: dict[str, str] = {}
    for name in collections:
        running = HashSum()
        cursor = db.get_collection(name, codec_options=_RAW_CODEC).find({}, batch_size=1000)
        async for document in cursor:
            running.add(document.raw)
        rows[name] = running.rows
        hashes[name] = running.digest
    return TableStats(rows, hashes)


@dataclass(frozen=True)
class LedgerCheck:
    """The ledger invariant over every wallet: ``mismatches`` describe the wallets whose
    balance is not the sum of their successful wallet credits minus debits (or is
    negative)."""

    wallets: int
    mismatches: list[str]

    @property
    def ok(self) -> bool:
        return not self.mismatches


async def ledger_check(conn: AsyncConnection) -> LedgerCheck:
    """Every wallet (``users.wallet_balance``) against its ledger (``transactions``)."""
    wallets, rows = await queries.ledger_mismatches(conn)
    return LedgerCheck(
        wallets,
        [
            f"user {user_id}: balance {balance} != ledger {ledger}"
            for user_id, balance, ledger in rows
        ],
    )


def compare_stats(expected: TableStats, actual: TableStats) -> list[str]:
    """What differs, one line per problem (empty: equal): ``"<table>: missing"``,
    ``"<table>: rows 120 != 119"`` (expected, then actual), ``"<table>: hash differs"``,
    ``"<table>: unexpected"`` (in ``actual`` only)."""
    problems: list[str] = []
    for name in sorted(expected.rows):
        if name not in actual.rows:
            problems.append(f"{name}: missing")
            continue
        if expected.rows[name] != actual.rows[name]:
            problems.append(f"{name}: rows {expected.rows[name]} != {actual.rows[name]}")
        elif expected.hashes.get(name) != actual.hashes.get(name):
            problems.append(f"{name}: hash differs")
    problems.extend(f"{name}: unexpected" for name in sorted(set(actual.rows) - set(expected.rows)))
    return problems
