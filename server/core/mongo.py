"""MongoDB access through PyMongo's async API (``AsyncMongoClient``)."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.uri_parser import parse_uri

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
