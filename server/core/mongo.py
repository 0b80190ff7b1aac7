"""MongoDB access through PyMongo's async API (``AsyncMongoClient``)."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.uri_parser import parse_uri

from migrations.mongo.collections import COUNTERS

Document = dict[str, Any]


def create_client(url: str) -> AsyncMongoClient[Document]:
    return AsyncMongoClient(
        url,
        tz_aware=True,
        serverSelectionTimeoutMS=5000,
        connectTimeoutMS=5000,
        appname="gencharge",
    )


def database_name(url: str, default: str) -> str:
    """The database named in the URL path, else ``default``."""
    return parse_uri(url).get("database") or default


def get_database(
    client: AsyncMongoClient[Document], url: str, default: str
) -> AsyncDatabase[Document]:
    return client[database_name(url, default)]


async def ping(db: AsyncDatabase[Document]) -> None:
    await db.command("ping")


async def next_in_sequence(db: AsyncDatabase[Document], counter: str) -> int:
    """The next value of the ``Counters`` document ``counter``: one atomic ``$inc``, so
    concurrent callers on any replica never get the same value.

    Migration step 0008 creates every counter, so the ``$inc`` finds its document; the
    upsert only recreates one deleted by hand (on MongoDB a racing upsert on ``_id`` is
    retried by the server)."""
    counter_doc = await db[COUNTERS].find_one_and_update(
        {"_id": counter},
        {"$inc": {"seq": 1}},
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )
    if counter_doc is None:  # an upsert always returns the document it wrote
        raise RuntimeError(f"the counter {counter!r} returned no document")
    return int(counter_doc["seq"])
