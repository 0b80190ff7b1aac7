"""Scratch databases: created empty beside the live ones, dropped even on error."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import AsyncMongoClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.backup.dumps.scratch import scratch_databases
from server.core import db
from server.core.config import Settings


async def test_scratch_databases_are_dropped_even_on_error(
    settings: Settings, engine: AsyncEngine, mongo_client: AsyncMongoClient[Any]
) -> None:
    with pytest.raises(RuntimeError, match="drill failed"):
        async with scratch_databases(settings, mongo_client) as scratch:
            assert scratch.pg_name != settings.database_url.rsplit("/", 1)[-1]
            assert scratch.pg_url.endswith("/" + scratch.pg_name)
            scratch_engine = db.create_engine(scratch.pg_url, pool_size=1)
            try:
                async with scratch_engine.connect() as conn:
                    tables = await conn.execute(
                        text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
                    )
                    assert tables.scalar_one() == 0
            finally:
                await scratch_engine.dispose()
            await scratch.mongo_db["Content"].insert_one({"title": "x", "content_type_id": 1})
            assert scratch.mongo_db.name in await mongo_client.list_database_names()
            raise RuntimeError("drill failed")
    async with engine.connect() as conn:
        left = await conn.execute(
            text("SELECT count(*) FROM pg_database WHERE datname = :n"), {"n": scratch.pg_name}
        )
        assert left.scalar_one() == 0
        users = await conn.execute(text("SELECT count(*) FROM users"))
        assert users.scalar_one() >= 0  # the live database is still there
    assert scratch.mongo_db.name not in await mongo_client.list_database_names()
