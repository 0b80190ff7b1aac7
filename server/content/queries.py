"""The MongoDB statements of ContentService: the only reader and writer of ``Content``,
``ContactForm`` and the ``Content.content_id`` counter, and a reader of ``ContentTypes``
(reference data, server/ops/seed).

Lists are keyset pages in the order of an index of migration step 0006: content by
(``updated_at``, ``content_id``) descending, contact forms by (``created_at``, ``_id``)
descending; the caller fetches one row more than the page to learn whether another
page follows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from bson import ObjectId
from pymongo import DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from migrations.mongo.collections import (
    CONTACT_FORM,
    CONTENT,
    CONTENT_ID_COUNTER,
    CONTENT_TYPES,
    COUNTERS,
)
from server.core.mongo import next_in_sequence

Document = dict[str, Any]
Mongo = AsyncDatabase[Document]

#: Fields a Content read returns (no ``_id``).
_CONTENT_FIELDS: Final = {
    "_id": 0,
    "content_id": 1,
    "content_type_id": 1,
    "title": 1,
    "body": 1,
    "created_by": 1,
    "updated_at": 1,
}


# ----------------------------------------------------------------- content types


async def content_type_names(mongo: Mongo) -> dict[int, str]:
    """Every content type: id -> name (a handful of reference rows)."""
    cursor = mongo[CONTENT_TYPES].find({}, {"_id": 0, "content_type_id": 1, "content_type_name": 1})
    return {
        int(doc["content_type_id"]): str(doc["content_type_name"])
        async for doc in cursor
        if isinstance(doc.get("content_type_id"), int)
    }


async def content_type_name(mongo: Mongo, content_type_id: int) -> str | None:
    doc = await mongo[CONTENT_TYPES].find_one(
        {"content_type_id": content_type_id}, {"_id": 0, "content_type_name": 1}
    )
    return None if doc is None else str(doc.get("content_type_name", ""))


# ----------------------------------------------------------------------- content


async def next_content_id(mongo: Mongo) -> int:
    """The next ``content_id`` (the ``Counters`` sequence, never handed out twice)."""
    return await next_in_sequence(mongo, CONTENT_ID_COUNTER)


async def raise_content_counter(mongo: Mongo) -> None:
    """Move the counter up to the highest ``content_id`` stored (never down): after
    documents were written without it (demo data, a restore, an import)."""
    top = await mongo[CONTENT].find_one(
        {"content_id": {"$type": ["int", "long"]}},
        {"_id": 0, "content_id": 1},
        sort=[("content_id", DESCENDING)],
    )
    if top is not None:
        await mongo[COUNTERS].update_one(
            {"_id": CONTENT_ID_COUNTER},
            {"$max": {"seq": int(top["content_id"])}},
            upsert=True,
        )


async def insert_content(mongo: Mongo, doc: Document) -> bool:
    """Insert ``doc``; False when its ``content_id`` is taken (nothing written)."""
    try:
        await mongo[CONTENT].insert_one(dict(doc))
    except DuplicateKeyError:
        return False
    return True


async def find_content(mongo: Mongo, content_id: int) -> Document | None:
    return await mongo[CONTENT].find_one({"content_id": content_id}, _CONTENT_FIELDS)


async def update_content(mongo: Mongo, content_id: int, changes: Document) -> Document | None:
    """Set ``changes`` on the item; the item as it is now, or None if there is none."""
    return await mongo[CONTENT].find_one_and_update(
        {"content_id": content_id},
        {"$set": changes},
        projection=_CONTENT_FIELDS,
        return_document=ReturnDocument.AFTER,
    )


async def delete_content(mongo: Mongo, content_id: int) -> Document | None:
    """Delete the item; what it was, or None if there was none."""
    return await mongo[CONTENT].find_one_and_delete({"content_id": content_id}, _CONTENT_FIELDS)


async def content_page(
    mongo: Mongo,
    content_type_id: int | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[Document]:
    """Content most recently updated first (ties: higher ``content_id`` first), of one
    type or all, from just past the keyset position ``after``."""
    query: Document = {}
    if content_type_id is not None:
        query["content_type_id"] = content_type_id
    if after is not None:
        at, content_id = after
        query["$or"] = [
            {"updated_at": {"$lt": at}},
            {"updated_at": at, "content_id": {"$lt": content_id}},
        ]
    cursor = (
        mongo[CONTENT]
        .find(query, _CONTENT_FIELDS)
        .sort([("updated_at", DESCENDING), ("content_id", DESCENDING)])
        .limit(limit)
    )
    return await cursor.to_list()


# ------------------------------------------------------------------ contact forms


async def insert_contact_form(mongo: Mongo, doc: Document) -> None:
    await mongo[CONTACT_FORM].insert_one(dict(doc))


async def set_contact_form_status(
    mongo: Mongo, contact_form_id: ObjectId, status: str, at: datetime
) -> tuple[Document | None, bool]:
    """Set the status, and ``updated_at`` when the status changes. The submission as it
    is now (None if there is none) and whether it changed; a changed one carries its
    previous status as ``previous_status``."""
    collection = mongo[CONTACT_FORM]
    before = await collection.find_one_and_update(
        {"_id": contact_form_id, "status": {"$ne": status}},
        {"$set": {"status": status, "updated_at": at}},
        return_document=ReturnDocument.BEFORE,
    )
    if before is not None:
        return {
            **before,
            "previous_status": before.get("status"),
            "status": status,
            "updated_at": at,
        }, True
    return await collection.find_one({"_id": contact_form_id}), False


async def contact_form_page(
    mongo: Mongo,
    status: str | None,
    after: tuple[datetime, ObjectId] | None,
    limit: int,
) -> list[Document]:
    """Submissions newest first (ties: higher ``_id`` first), of one status or all,
    from just past the keyset position ``after``. A document without a status is
    ``new`` (written before statuses existed)."""
    query: Document = {}
    if status is not None:
        query["status"] = {"$in": [status, None]} if status == "new" else status
    if after is not None:
        at, last_id = after
        query["$or"] = [
            {"created_at": {"$lt": at}},
            {"created_at": at, "_id": {"$lt": last_id}},
        ]
    cursor = (
        mongo[CONTACT_FORM]
        .find(query)
        .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
        .limit(limit)
    )
    return await cursor.to_list()


async def contact_forms_from(mongo: Mongo, emails: list[str]) -> list[Document]:
    """Every submission sent from one of these addresses, newest first."""
    cursor = (
        mongo[CONTACT_FORM]
        .find({"email": {"$in": emails}})
        .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
    )
    return await cursor.to_list()


async def delete_contact_forms_from(mongo: Mongo, emails: list[str]) -> int:
    """Delete every submission sent from one of these addresses; how many."""
    result = await mongo[CONTACT_FORM].delete_many({"email": {"$in": emails}})
    return int(result.deleted_count)
