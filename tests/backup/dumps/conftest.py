"""Fixtures of the dump tests: settings over the test's fresh databases, an engine, and
small data sets written the way the service writes them (a wallet moves by a ledger row:
the trigger updates the balance)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.core import db, mongo
from server.core.config import Settings
from server.core.schema import transactions, users


@pytest.fixture
def settings(pg_url: str, private_tmp: Path) -> Settings:
    return Settings(database_url=pg_url, data_dir=private_tmp)


@pytest.fixture
async def engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    created = db.create_engine(pg_url, pool_size=3)
    yield created
    await created.dispose()


@pytest.fixture
async def mongo_client(mongo_url: str) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client = mongo.create_client(mongo_url)
    yield client
    await client.close()


@pytest.fixture
def mongo_db(mongo_client: AsyncMongoClient[dict[str, Any]], mongo_url: str) -> AsyncDatabase[Any]:
    return mongo.get_database(mongo_client, mongo_url, "gencharge")


async def add_users(conn: AsyncConnection, count: int) -> list[int]:
    """``count`` prepaid customers with unique contacts; their ids."""
    tag = uuid.uuid4().hex[:8]
    rows = [
        {
            "name": f"User {tag} {i}",
            "email": f"u{tag}{i}@example.com",
            "phone_number": f"+91{abs(hash((tag, i))) % 10**10:010d}",
            "referral_code": f"R{tag}{i}",
            "user_type": "prepaid",
        }
        for i in range(count)
    ]
    result = await conn.execute(insert(users).returning(users.c.user_id), rows)
    return [int(r) for r in result.scalars()]


async def credit(conn: AsyncConnection, user_id: int, rupees: str = "10.00") -> None:
    """A successful wallet credit (the trigger moves the balance)."""
    await conn.execute(
        insert(transactions).values(
            user_id=user_id,
            category="wallet",
            txn_type="credit",
            amount=Decimal(rupees),
            source="wallet_topup",
            status="success",
            payment_method="UPI",
            payment_transaction_id=f"test-{uuid.uuid4().hex}",
        )
    )


async def seed_money(engine: AsyncEngine, *, users_count: int = 5, credits: int = 4) -> list[int]:
    """Customers with a few credits each; their ids."""
    async with engine.begin() as conn:
        ids = await add_users(conn, users_count)
        for user_id in ids:
            for step in range(credits):
                await credit(conn, user_id, f"{step + 1}.25")
    return ids


async def count(engine: AsyncEngine, table: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())
