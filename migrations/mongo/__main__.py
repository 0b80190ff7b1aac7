"""``python -m migrations.mongo URL``: apply the pending MongoDB steps to URL's database."""

from __future__ import annotations

import asyncio
import sys

from pymongo import AsyncMongoClient

from migrations.mongo import upgrade
from migrations.mongo.collections import Document


async def _main(url: str) -> None:
    client: AsyncMongoClient[Document] = AsyncMongoClient(url, tz_aware=True)
    try:
        applied = await upgrade(client.get_default_database("gencharge"))
    finally:
        await client.close()
    print("applied:", ", ".join(applied) if applied else "nothing (up to date)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m migrations.mongo MONGODB_URL")
    asyncio.run(_main(sys.argv[1]))
