"""MongoDB logical dumps through PyMongo (BSON as stored), full and incremental, and
their restores, live and scratch.

**File format** (one file for all the collections of a dump; integers big-endian
except BSON's own):

- magic, 8 bytes: ``GCMONGO\\x01``;
- header: its length (u32), then JSON ``{"format": "gencharge-mongo-dump", "version":
  1, "kind": "full" | "incremental", "since": ISO time | null, "collections": [...]}``;
- records: ``01``, the collection's index in the header's list (u16), then one BSON
  document exactly as the server returned it (BSON starts with its own int32
  little-endian length);
- end: ``00`` and the number of records (u64), so a file cut short is detected.

Documents are streamed with a cursor and written in batches, and read back the same
way: memory stays bounded by a batch (1000 documents or about 8 MiB) whatever the size
of a collection.

**Incremental exports** (:func:`dump_mongo_since`) hold the documents written at or
after ``since``: those whose ``created_at``, ``updated_at`` or ``completed_at`` is at or
after it, or whose ``_id`` is an ObjectId generated then (second precision, so a little
more). The small lookup collections with no time field (``Counters``,
``ContentTypes``, ``ReportTypes``) are exported whole. Limits: deletions are not
captured (a document deleted after the full export comes back), nor an update that
moves no time field, nor a document with neither a time field nor an ObjectId ``_id``
in the other collections. Restores apply them after the full file as upserts by
``_id``, in order.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO, Final

import bson
from bson import ObjectId
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase

from migrations import mongo as mongo_migrations
from migrations.mongo.collections import (
    AUDIT_LOG,
    BACKUP_RESTORE_LOGS,
    CONTACT_FORM,
    CONTENT,
    CONTENT_TYPES,
    COUNTERS,
    REPORT_TYPES,
    REPORTS_LOGS,
    SEQUENCES,
)
from migrations.mongo.steps import step_0008_seed_counters
from server.backup.dumps.checks import HashSum, TableStats
from server.backup.errors import BackupError
from server.core.errors import FieldViolation, InvalidArgument

#: Every collection a MongoDB backup holds (migrations/mongo/collections.py; views,
#: ``_schema_migrations`` and the development ``DevOutbox`` are not data to back up).
KNOWN_COLLECTIONS: Final[tuple[str, ...]] = tuple(
    sorted(
        {
            AUDIT_LOG,
            BACKUP_RESTORE_LOGS,
            CONTACT_FORM,
            CONTENT,
            CONTENT_TYPES,
            COUNTERS,
            REPORT_TYPES,
            REPORTS_LOGS,
        }
    )
)

#: Collections a live restore never replaces (a scratch restore holds everything):
#: - ``AuditLog``: the append-only audit record; events since the backup must never be
#:   lost (the restore itself is audited there);
#: - ``BackupRestoreLogs``: the job log, including the restore's own entries.
#: ``Counters`` IS restored, and after any restore every counter is raised to at least
#: the highest id its collection holds (``$max``, as migration step 0008 does): a
#: restored Content without its counter, or a counter older than the live ids, never
#: hands out an id that is taken. A counter is never lowered (ids stay unique; a gap is
#: harmless).
NEVER_RESTORED_COLLECTIONS: Final[frozenset[str]] = frozenset({AUDIT_LOG, BACKUP_RESTORE_LOGS})

#: Exported whole by an incremental dump (no time field; a few documents).
_WHOLE_IN_INCREMENTALS: Final = frozenset({COUNTERS, CONTENT_TYPES, REPORT_TYPES})
_TIME_FIELDS: Final = ("created_at", "updated_at", "completed_at")

MAGIC: Final = b"GCMONGO\x01"
FORMAT: Final = "gencharge-mongo-dump"
VERSION: Final = 1
_RECORD: Final = b"\x01"
_END: Final = b"\x00"
_BATCH_DOCS: Final = 1000
_BATCH_BYTES: Final = 8 << 20
_MAX_HEADER: Final = 1 << 20
_RAW: CodecOptions[RawBSONDocument] = CodecOptions(document_class=RawBSONDocument)


def backup_collections(
    selected: Sequence[str] | None = None, *, field: str = "tables"
) -> list[str]:
    """The collections a MongoDB backup holds (:data:`KNOWN_COLLECTIONS`), or
    ``selected`` validated (unknown names: ``InvalidArgument`` on ``field``)."""
    if not selected:
        return list(KNOWN_COLLECTIONS)
    unknown = [name for name in dict.fromkeys(selected) if name not in KNOWN_COLLECTIONS]
    if unknown:
        raise InvalidArgument.of(
            [FieldViolation(field, f"unknown collection {name!r}") for name in unknown]
        )
    return list(dict.fromkeys(selected))


@dataclass(frozen=True)
class MongoFile:
    """A dump file and the stats of the documents it holds."""

    path: Path
    stats: TableStats


# --- writing ------------------------------------------------------------------------------


def _dump_order(collections: list[str]) -> list[str]:
    """Counters last: the counters dumped are then at least the ids dumped before them."""
    return [c for c in collections if c != COUNTERS] + [c for c in collections if c == COUNTERS]


def _incremental_filter(collection: str, since: datetime) -> dict[str, Any]:
    if collection in _WHOLE_IN_INCREMENTALS:
        return {}
    return {
        "$or": [
            *({name: {"$gte": since}} for name in _TIME_FIELDS),
            {"_id": {"$gte": ObjectId.from_datetime(since)}},
        ]
    }


async def dump_mongo(
    db: AsyncDatabase[Any], dest: Path, *, collections: Sequence[str] | None = None
) -> MongoFile:
    """A full export of ``collections`` (default all) into ``dest``."""
    return await _dump(db, dest, backup_collections(collections), since=None)


async def dump_mongo_since(
    db: AsyncDatabase[Any],
    dest: Path,
    since: datetime,
    *,
    collections: Sequence[str] | None = None,
) -> MongoFile:
    """An incremental export: the documents written at or after ``since`` (module
    docstring: what it catches and what it does not)."""
    if since.tzinfo is None:
        raise ValueError("since must be an aware datetime")
    return await _dump(db, dest, backup_collections(collections), since=since)


async def _dump(
    db: AsyncDatabase[Any], dest: Path, collections: list[str], *, since: datetime | None
) -> MongoFile:
    order = _dump_order(collections)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "kind": "full" if since is None else "incremental",
        "since": since.isoformat() if since is not None else None,
        "collections": order,
    }
    rows: dict[str, int] = {}
    hashes: dict[str, str] = {}
    out: BinaryIO = await asyncio.to_thread(dest.open, "wb")
    try:
        encoded = json.dumps(header, sort_keys=True).encode()
        buffer = bytearray(MAGIC + struct.pack(">I", len(encoded)) + encoded)
        total = 0
        for index, name in enumerate(order):
            running = HashSum()
            query = {} if since is None else _incremental_filter(name, since)
            cursor = db.get_collection(name, codec_options=_RAW).find(query, batch_size=_BATCH_DOCS)
            async for document in cursor:
                raw = document.raw
                running.add(raw)
                buffer += _RECORD + struct.pack(">H", index) + raw
                if len(buffer) >= 1 << 20:
                    await asyncio.to_thread(out.write, bytes(buffer))
                    buffer.clear()
            rows[name] = running.rows
            hashes[name] = running.digest
            total += running.rows
        buffer += _END + struct.pack(">Q", total)
        await asyncio.to_thread(_finish, out, bytes(buffer))
    finally:
        await asyncio.to_thread(out.close)
    return MongoFile(dest, TableStats(rows, hashes))


def _finish(out: BinaryIO, data: bytes) -> None:
    out.write(data)
    out.flush()


# --- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DumpHeader:
    kind: str
    since: datetime | None
    collections: list[str]


def _corrupt(path: Path, what: str) -> BackupError:
    return BackupError("BACKUP_MONGO_FILE_CORRUPT", f"{path.name}: {what}")


def _read_exact(stream: BinaryIO, size: int, path: Path) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise _corrupt(path, "the file ends too early")
    return data


def _read_header(stream: BinaryIO, path: Path) -> DumpHeader:
    if stream.read(len(MAGIC)) != MAGIC:
        raise _corrupt(path, "not a MongoDB dump of ours")
    (length,) = struct.unpack(">I", _read_exact(stream, 4, path))
    if length > _MAX_HEADER:
        raise _corrupt(path, "header too large")
    try:
        header = json.loads(_read_exact(stream, length, path))
        if header["format"] != FORMAT or header["version"] != VERSION:
            raise _corrupt(path, "unknown format or version")
        kind = header["kind"]
        since = datetime.fromisoformat(header["since"]) if header["since"] else None
        collections = [str(c) for c in header["collections"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise _corrupt(path, "damaged header") from exc
    if kind not in ("full", "incremental"):
        raise _corrupt(path, f"unknown kind {kind!r}")
    return DumpHeader(kind, since, collections)


def read_header(path: Path) -> DumpHeader:
    """The header of a dump file (sync; small read)."""
    with path.open("rb") as stream:
        return _read_header(stream, path)


def _records(stream: BinaryIO, path: Path, header: DumpHeader) -> Iterator[tuple[str, bytes]]:
    count = 0
    while True:
        tag = stream.read(1)
        if tag == _END:
            (expected,) = struct.unpack(">Q", _read_exact(stream, 8, path))
            if expected != count or stream.read(1):
                raise _corrupt(path, "record count mismatch or data after the end")
            return
        if tag != _RECORD:
            raise _corrupt(path, "the file ends too early" if not tag else "bad record")
        (index,) = struct.unpack(">H", _read_exact(stream, 2, path))
        if index >= len(header.collections):
            raise _corrupt(path, "record of an unknown collection")
        size_bytes = _read_exact(stream, 4, path)
        size = int.from_bytes(size_bytes, "little")
        if size < 5:
            raise _corrupt(path, "bad document length")
        raw = size_bytes + _read_exact(stream, size - 4, path)
        count += 1
        yield header.collections[index], raw


def count_records(path: Path) -> dict[str, int]:
    """Read a whole dump file (sync: run it in a worker thread) and count its documents
    per collection; every record parsed as BSON, the end marker and count checked
    (``BACKUP_FILE_CORRUPT`` otherwise). What VerifyBackup's parse step runs."""
    counts: dict[str, int] = {}
    with path.open("rb") as stream:
        header = _read_header(stream, path)
        for collection, raw in _records(stream, path, header):
            try:
                bson.decode(raw)
            except Exception:
                raise _corrupt(path, f"a {collection} record is not BSON") from None
            counts[collection] = counts.get(collection, 0) + 1
    return counts


def _batch(records: Iterator[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    batch: list[tuple[str, bytes]] = []
    size = 0
    for record in islice(records, _BATCH_DOCS):
        batch.append(record)
        size += len(record[1])
        if size >= _BATCH_BYTES:
            break
    return batch


async def _file_batches(path: Path) -> Any:
    """Async iterator of record batches of ``path`` (the reads run in worker threads)."""
    stream: BinaryIO = await asyncio.to_thread(path.open, "rb")
    try:
        header = await asyncio.to_thread(_read_header, stream, path)
        records = _records(stream, path, header)
        while batch := await asyncio.to_thread(_batch, records):
            yield batch
    finally:
        await asyncio.to_thread(stream.close)


# --- restoring ----------------------------------------------------------------------------


def plan_mongo_restore(
    available: Sequence[str],
    requested: Sequence[str] | None,
    *,
    scratch: bool = False,
    field: str = "tables",
) -> list[str]:
    """The collections a restore replaces: ``requested`` (each in the backup, and not in
    :data:`NEVER_RESTORED_COLLECTIONS` for a live restore, else ``InvalidArgument``),
    or everything the backup holds (but the never-restored ones, live)."""
    never = frozenset() if scratch else NEVER_RESTORED_COLLECTIONS
    if not requested:
        return [name for name in available if name not in never]
    violations = []
    for name in dict.fromkeys(requested):
        if name in never:
            violations.append(FieldViolation(field, f"collection {name!r} is never restored"))
        elif name not in available:
            violations.append(FieldViolation(field, f"collection {name!r} is not in the backup"))
    if violations:
        raise InvalidArgument.of(violations)
    return [name for name in available if name in requested]


async def restore_mongo(
    db: AsyncDatabase[Any],
    files: Sequence[Path],
    *,
    collections: Sequence[str] | None = None,
    scratch: bool = False,
    incremental: bool = False,
) -> list[str]:
    """Restore ``files`` into ``db``; returns the collections restored.

    ``incremental=False``: ``files[0]`` is a full export and replaces each chosen
    collection's documents (``delete_many`` then batched ``insert_many``; indexes and
    validators stay), the following files are incremental exports applied in order as
    upserts by ``_id``. ``incremental=True``: every file is incremental, applied onto
    what ``db`` holds. Chosen: ``collections`` (validated by :func:`plan_mongo_restore`)
    or all the backup holds but :data:`NEVER_RESTORED_COLLECTIONS`. ``scratch=True``:
    ``db`` is an empty scratch database: the versioned steps create its collections,
    validators and indexes first, and every collection is restorable. Afterwards the
    counters are raised to the highest ids (:data:`NEVER_RESTORED_COLLECTIONS`).

    Documents are written as they were dumped (same BSON), without validation (they
    were valid when written; the caller checks the schema revision). MongoDB has no
    transaction here: a failure leaves the collections partly restored; run the
    restore again (it replaces them whole).
    """
    if not files:
        raise ValueError("no files to restore")
    headers = [await asyncio.to_thread(read_header, path) for path in files]
    for position, (path, header) in enumerate(zip(files, headers, strict=True)):
        wanted = "full" if position == 0 and not incremental else "incremental"
        if header.kind != wanted:
            raise BackupError(
                "BACKUP_MONGO_FILE_KIND",
                f"{path.name} is a {header.kind} export where a {wanted} one belongs",
            )
    # A full restore replaces what the full export holds (an incremental's other
    # collections would be emptied and only partly refilled: they are not restored).
    sources = headers if incremental else headers[:1]
    available = list(dict.fromkeys(c for header in sources for c in header.collections))
    chosen = plan_mongo_restore(available, collections, scratch=scratch)
    if scratch:
        await mongo_migrations.upgrade(db)
    targets = set(chosen)
    for position, path in enumerate(files):
        full = position == 0 and not incremental
        if full:
            for name in chosen:
                await db[name].delete_many({})
        async for batch in _file_batches(path):
            await _apply(db, [(c, raw) for c, raw in batch if c in targets], upsert=not full)
    if targets & {COUNTERS, *(collection for collection, _ in SEQUENCES.values())}:
        await step_0008_seed_counters(db)
    return chosen


async def _apply(db: AsyncDatabase[Any], batch: list[tuple[str, bytes]], *, upsert: bool) -> None:
    by_collection: dict[str, list[RawBSONDocument]] = {}
    for name, raw in batch:
        by_collection.setdefault(name, []).append(RawBSONDocument(raw))
    for name, documents in by_collection.items():
        collection = db.get_collection(name, codec_options=_RAW)
        if upsert:
            await collection.bulk_write(
                [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in documents],
                ordered=True,
                bypass_document_validation=True,
            )
        else:
            await collection.insert_many(documents, ordered=True, bypass_document_validation=True)
