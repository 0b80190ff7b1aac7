"""The recharge hot path reads the end of a number's plan queue with one index descent,
however many plans other numbers hold (migration 0018; `make bench`'s large database
found the scan this replaces)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import asyncpg
import pytest

from server.recharge.queries import QUEUE_END_SQL
from tests.migrations.test_pg_triggers import make_plan, make_user

#: Covering plans of other numbers, queued many to a number (as busy numbers have them,
#: and as the bench's first phases leave them): the shape that made the planner walk
#: the valid_to index.
OTHER_PLANS = 20_000
OTHER_NUMBERS = 200
QUEUE_INDEX = "idx_currentactiveplans_queue_end"


@pytest.fixture
async def conn(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(pg_url)
    try:
        yield connection
    finally:
        await connection.close()


async def _plan_of_queue_end(conn: asyncpg.Connection, phone: str) -> str:
    sql = QUEUE_END_SQL.replace(":phone", "$1")
    rows = await conn.fetch(f"EXPLAIN (FORMAT JSON) {sql}", phone)
    return json.dumps(json.loads(rows[0][0]))


async def test_the_queue_end_of_a_number_without_plans_is_one_index_lookup(
    conn: asyncpg.Connection,
) -> None:
    user_id = await make_user(conn)
    plan_id = await make_plan(conn)
    await conn.execute(
        "INSERT INTO currentactiveplans (user_id, plan_id, phone_number, valid_from, valid_to,"
        " status) SELECT $1, $2, (8000000000 + i % $4::integer)::text, now(),"
        " now() + interval '28 days' + i * interval '1 second', 'active'"
        " FROM generate_series(1, $3::integer) AS i",
        user_id,
        plan_id,
        OTHER_PLANS,
        OTHER_NUMBERS,
    )
    await conn.execute("ANALYZE currentactiveplans")
    first_recharge = "9123456789"  # no plan on this number yet

    plan = await _plan_of_queue_end(conn, first_recharge)
    assert QUEUE_INDEX in plan, plan
    assert "idx_currentactiveplans_valid_to" not in plan, plan
    assert await conn.fetchval(QUEUE_END_SQL.replace(":phone", "$1"), first_recharge) is None

    # Without it (this test's own database), PostgreSQL walks every covering plan
    # backwards by valid_to: the test tells the two apart.
    await conn.execute(f"DROP INDEX {QUEUE_INDEX}")
    assert "idx_currentactiveplans_valid_to" in await _plan_of_queue_end(conn, first_recharge)
