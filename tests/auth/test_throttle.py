"""Brute-force limits (server.auth.throttle) against a real PostgreSQL.

The policy under test is the documented default (docs/security.md): per (account, peer)
5 failures / 15 min -> 15 min block; per peer 50 / 15 min -> 15 min; per account
20 / 15 min -> a 60 s cool-down. Time is injected, so no test sleeps.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from google.rpc import code_pb2
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from server.auth.throttle import (
    Limit,
    Throttle,
    ThrottleKey,
    keys_for,
    purge_expired,
)
from server.core import db
from server.core.errors import ResourceExhausted, to_status_proto
from server.core.peers import peer_ip
from server.core.schema import auth_throttle
from tests.helpers.clock import HANG_SECONDS, FakeUtcClock

ROOT = Path(__file__).resolve().parents[2]
VICTIM = "victim@example.test"


@pytest.fixture
async def engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    # 100 concurrent failures queue for 15 connections: the pool timeout bounds a hang only.
    engine = db.create_engine(pg_url, pool_size=5, pool_timeout=HANG_SECONDS)
    yield engine
    await engine.dispose()


@pytest.fixture
def clock() -> FakeUtcClock:
    return FakeUtcClock()


@pytest.fixture
def throttle(engine: AsyncEngine, clock: FakeUtcClock) -> Throttle:
    return Throttle(db.Database(engine), clock=clock)


async def blocked(throttle: Throttle, keys: list[ThrottleKey]) -> ResourceExhausted | None:
    try:
        await throttle.check(keys)
    except ResourceExhausted as exc:
        return exc
    return None


async def failures_of(engine: AsyncEngine, key: ThrottleKey) -> int | None:
    async with db.Database(engine).read_only() as conn:
        value = await conn.scalar(
            select(auth_throttle.c.failures).where(auth_throttle.c.throttle_key == key.key)
        )
    return value


async def test_pair_limit_trips_exactly_at_the_threshold(throttle: Throttle) -> None:
    keys = keys_for("login", account=VICTIM, peer="203.0.113.7")
    for _ in range(4):
        await throttle.failure(keys)
        assert await blocked(throttle, keys) is None
    await throttle.failure(keys)  # the 5th
    error = await blocked(throttle, keys)
    assert error is not None
    assert error.code == code_pb2.RESOURCE_EXHAUSTED
    assert error.reason == "TOO_MANY_ATTEMPTS"
    assert error.metadata == {"retry_after_seconds": "900"}
    assert error.message == "too many attempts; try again in 900 seconds"
    assert VICTIM not in error.message
    status = to_status_proto(error)
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]


async def test_block_expires_by_time(throttle: Throttle, clock: FakeUtcClock) -> None:
    keys = keys_for("login", account=VICTIM, peer="203.0.113.7")
    for _ in range(5):
        await throttle.failure(keys)
    clock.advance(600)
    error = await blocked(throttle, keys)
    assert error is not None and error.metadata["retry_after_seconds"] == "300"
    clock.advance(300)
    assert await blocked(throttle, keys) is None
    # A fresh allowance after the block, not an instant re-block.
    for _ in range(4):
        await throttle.failure(keys)
    assert await blocked(throttle, keys) is None
    await throttle.failure(keys)
    assert await blocked(throttle, keys) is not None


async def test_success_resets_the_pair_and_account_counters_not_the_peer(
    engine: AsyncEngine, throttle: Throttle
) -> None:
    pair, peer, account = keys = keys_for("login", account=VICTIM, peer="203.0.113.7")
    assert (pair.scope, peer.scope, account.scope) == ("account_peer", "peer", "account")
    for _ in range(4):
        await throttle.failure(keys)
    await throttle.success(keys)
    assert await failures_of(engine, pair) is None
    assert await failures_of(engine, account) is None
    assert await failures_of(engine, peer) == 4
    for _ in range(4):
        await throttle.failure(keys)
    assert await blocked(throttle, keys) is None
    await throttle.failure(keys)
    assert await blocked(throttle, keys) is not None


async def test_success_never_lifts_a_block_in_force(throttle: Throttle) -> None:
    keys = keys_for("otp", account="+919800000001", peer="203.0.113.7")
    for _ in range(5):
        await throttle.failure(keys)
    await throttle.success(keys)
    assert await blocked(throttle, keys) is not None


async def test_account_cool_down_is_short_so_the_victim_gets_back_in(
    throttle: Throttle, clock: FakeUtcClock
) -> None:
    # 20 attackers, one guess each: no pair or peer limit is near, the account one trips.
    for n in range(20):
        await throttle.failure(keys_for("login", account=VICTIM, peer=f"198.51.100.{n}"))
    victim = keys_for("login", account=VICTIM, peer="203.0.113.99")
    error = await blocked(throttle, victim)
    assert error is not None and error.metadata["retry_after_seconds"] == "60"
    clock.advance(60)
    assert await blocked(throttle, victim) is None  # the victim logs in
    await throttle.success(victim)
    # The attackers need another 20 failures for another minute of cool-down.
    for n in range(19):
        await throttle.failure(keys_for("login", account=VICTIM, peer=f"192.0.2.{n}"))
    assert await blocked(throttle, victim) is None


async def test_account_cool_down_restarts_the_window(
    throttle: Throttle, clock: FakeUtcClock
) -> None:
    for n in range(20):
        await throttle.failure(keys_for("login", account=VICTIM, peer=f"198.51.100.{n}"))
    clock.advance(61)
    victim = keys_for("login", account=VICTIM, peer="203.0.113.99")
    # One more failure after the cool-down does not re-block (no perpetual lock-out).
    await throttle.failure(keys_for("login", account=VICTIM, peer="198.51.100.200"))
    assert await blocked(throttle, victim) is None


async def test_peer_limit_is_independent_of_the_account(throttle: Throttle) -> None:
    sprayer = "198.51.100.10"
    for n in range(49):
        await throttle.failure(keys_for("login", account=f"user{n}@example.test", peer=sprayer))
    fresh_account = keys_for("login", account="someone@example.test", peer=sprayer)
    assert await blocked(throttle, fresh_account) is None
    await throttle.failure(keys_for("login", account="user49@example.test", peer=sprayer))
    error = await blocked(throttle, fresh_account)
    assert error is not None and error.metadata["retry_after_seconds"] == "900"
    # The same accounts from another peer are unaffected.
    assert (
        await blocked(throttle, keys_for("login", account="user1@example.test", peer="203.0.113.5"))
        is None
    )
    # A peer-only check (no account known yet) is blocked too.
    assert await blocked(throttle, keys_for("login", account=None, peer=sprayer)) is not None


async def test_windows_restart_after_expiry(
    engine: AsyncEngine, throttle: Throttle, clock: FakeUtcClock
) -> None:
    keys = keys_for("mfa", account="admin@example.test", peer="203.0.113.7")
    for _ in range(4):
        await throttle.failure(keys)
    clock.advance(15 * 60)  # the window has expired
    await throttle.failure(keys)
    assert await failures_of(engine, keys[0]) == 1
    for _ in range(3):
        await throttle.failure(keys)
    assert await blocked(throttle, keys) is None
    await throttle.failure(keys)  # 5 within the new window
    assert await blocked(throttle, keys) is not None


async def test_actions_count_separately(throttle: Throttle) -> None:
    login = keys_for("login", account=VICTIM, peer="203.0.113.7")
    for _ in range(5):
        await throttle.failure(login)
    assert await blocked(throttle, login) is not None
    assert await blocked(throttle, keys_for("otp", account=VICTIM, peer="203.0.113.7")) is None


async def test_policy_is_configurable(engine: AsyncEngine, clock: FakeUtcClock) -> None:
    strict = Throttle(
        db.Database(engine),
        clock=clock,
        policy={"account_peer": Limit(max_failures=2, window_seconds=60, block_seconds=30)},
    )
    assert strict.policy["peer"] == Limit(50, 900, 900)  # the defaults fill the rest
    keys = keys_for("service_token", account="svc-client-1", peer="10.0.0.8")
    await strict.failure(keys)
    assert await blocked(strict, keys) is None
    await strict.failure(keys)
    error = await blocked(strict, keys)
    assert error is not None and error.metadata["retry_after_seconds"] == "30"
    with pytest.raises(ValueError, match="unknown throttle scopes"):
        Throttle(db.Database(engine), policy={"global": Limit(1, 1, 1)})
    with pytest.raises(ValueError):
        Limit(0, 60, 60)


HIGH = {
    "account_peer": Limit(1000, 900, 900),
    "peer": Limit(1000, 900, 900),
    "account": Limit(1000, 900, 60),
}


async def test_concurrent_failures_from_two_engines_are_all_counted(pg_url: str) -> None:
    """Two engines stand in for two server processes: 40 concurrent failures count 40."""
    engines = [db.create_engine(pg_url, pool_size=10, pool_timeout=HANG_SECONDS) for _ in range(2)]
    try:
        throttles = [Throttle(db.Database(e), policy=HIGH) for e in engines]
        keys = keys_for("login", account=VICTIM, peer="203.0.113.7")
        await asyncio.gather(*(throttles[i % 2].failure(keys) for i in range(40)))
        for key in keys:
            assert await failures_of(engines[0], key) == 40
    finally:
        for e in engines:
            await e.dispose()


async def test_limit_trips_once_under_concurrency(pg_url: str, clock: FakeUtcClock) -> None:
    """With the pair limit at 40, 40 concurrent failures block; 39 do not."""
    policy = {**HIGH, "account_peer": Limit(40, 900, 900)}
    engines = [db.create_engine(pg_url, pool_size=10, pool_timeout=HANG_SECONDS) for _ in range(2)]
    try:
        throttles = [Throttle(db.Database(e), clock=clock, policy=policy) for e in engines]
        keys = keys_for("login", account=VICTIM, peer="203.0.113.7")
        await asyncio.gather(*(throttles[i % 2].failure(keys) for i in range(39)))
        assert await blocked(throttles[0], keys) is None
        await throttles[1].failure(keys)
        assert await blocked(throttles[0], keys) is not None
    finally:
        for e in engines:
            await e.dispose()


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from server.core import db
    from server.auth.throttle import Limit, Throttle, keys_for

    async def main(url: str, n: int) -> None:
        engine = db.create_engine(url, pool_size=10, pool_timeout=60)  # a hang only
        throttle = Throttle(db.Database(engine), policy={
            "account_peer": Limit(1000, 900, 900),
            "peer": Limit(1000, 900, 900),
            "account": Limit(1000, 900, 60),
        })
        keys = keys_for("login", account="Victim@Example.test ", peer="203.0.113.7")
        await throttle.check(keys)  # connect before saying ready
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        await asyncio.gather(*(throttle.failure(keys) for _ in range(n)))
        await engine.dispose()
        print("done", flush=True)

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


async def test_counts_hold_across_os_processes(pg_url: str, engine: AsyncEngine) -> None:
    """A second server process (a real OS process) shares the same counters."""
    throttle = Throttle(db.Database(engine), policy=HIGH)
    keys = keys_for("login", account=VICTIM, peer="203.0.113.7")
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        pg_url,
        "100",
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        line = await asyncio.wait_for(child.stdout.readline(), 60)
        assert line.strip() == b"ready"
        child.stdin.write(b"go\n")
        await child.stdin.drain()
        await asyncio.gather(*(throttle.failure(keys) for _ in range(100)))
        out, _ = await asyncio.wait_for(child.communicate(), 60)
        assert out.strip() == b"done"
        assert child.returncode == 0
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    for key in keys:
        assert await failures_of(engine, key) == 200


def test_keys_are_normalised_and_hashed() -> None:
    a = keys_for("login", account="  Victim@Example.TEST ", peer="203.0.113.7")
    b = keys_for("login", account="victim@example.test", peer="203.0.113.7")
    assert a == b
    for key in a:
        assert "victim" not in key.key.lower() and "203.0.113" not in key.key
        action, scope, digest = key.key.split(":")
        assert (action, scope, len(digest)) == ("login", key.scope, 64)
    assert [k.scope for k in keys_for("otp", account=None, peer="203.0.113.7")] == ["peer"]
    assert [k.scope for k in keys_for("otp", account="+919800000001", peer=None)] == ["account"]
    assert keys_for("otp", account=None, peer=None) == []
    # One IPv6 /64 counts as one peer.
    v6a = keys_for("login", account=None, peer="2001:db8:1:2::1")
    v6b = keys_for("login", account=None, peer="2001:db8:1:2:ffff::9")
    assert v6a == v6b
    with pytest.raises(ValueError):
        keys_for("signup", account="x", peer=None)


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        ("ipv4:127.0.0.1:5555", "127.0.0.1"),
        ("ipv4:203.0.113.7:443", "203.0.113.7"),
        ("ipv6:[::1]:5555", "::1"),
        ("ipv6:%5B::1%5D:5555", "::1"),
        ("ipv6:[2001:db8::7]:50051", "2001:db8::7"),
        ("ipv6:[::ffff:198.51.100.4]:1234", "198.51.100.4"),
        ("ipv6:[fe80::1%25eth0]:1234", "fe80::1"),
        ("unix:/tmp/gencharge.sock", None),
        ("unix-abstract:foo", None),
        ("ipv4:not-an-ip:1", None),
        ("", None),
        ("garbage", None),
    ],
)
def test_peer_ip(peer: str, expected: str | None) -> None:
    assert peer_ip(peer) == expected


async def test_purge_expired(engine: AsyncEngine, throttle: Throttle, clock: FakeUtcClock) -> None:
    idle = keys_for("login", account="idle@example.test", peer="203.0.113.1")
    await throttle.failure(idle)
    blocked_keys = keys_for("login", account="blocked@example.test", peer="203.0.113.2")
    clock.advance(30 * 60)
    for _ in range(5):
        await throttle.failure(blocked_keys)
    clock.advance(10 * 60)
    # The idle counters go; the blocked pair (and its fresh rows) stay.
    assert await purge_expired(db.Database(engine), timedelta(minutes=20), now=clock.now) == 3
    assert await failures_of(engine, idle[0]) is None
    assert await blocked(throttle, blocked_keys) is not None
