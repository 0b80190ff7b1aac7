"""The per-process read cache of ContentService (server/content/cache.py), on a fake
clock: the window, invalidation, shared loads, loads raced by an invalidation, and its
bounds. No servers needed."""

from __future__ import annotations

import asyncio

import pytest

from server.content.cache import ContentCache
from tests.helpers.clock import FakeClock


class Source:
    """A loader that counts its calls and can be held open."""

    def __init__(self) -> None:
        self.value = "v1"
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()

    async def __call__(self) -> str:
        self.calls += 1
        value = self.value
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        return value


async def test_values_live_for_the_window() -> None:
    clock = FakeClock()
    cache = ContentCache(30, clock=clock)
    source = Source()
    assert await cache.get("k", source) == "v1"
    source.value = "v2"
    clock.advance(29.9)
    assert await cache.get("k", source) == "v1"
    clock.advance(0.1)
    assert await cache.get("k", source) == "v2"
    assert source.calls == 2


async def test_invalidate_forgets_everything_at_once() -> None:
    cache = ContentCache(30, clock=FakeClock())
    source = Source()
    await cache.get("a", source)
    await cache.get("b", source)
    source.value = "v2"
    cache.invalidate()
    assert await cache.get("a", source) == "v2"
    assert await cache.get("b", source) == "v2"
    assert source.calls == 4


async def test_concurrent_misses_share_one_load() -> None:
    cache = ContentCache(30, clock=FakeClock())
    source = Source()
    source.gate = asyncio.Event()
    waiting = [asyncio.create_task(cache.get("k", source)) for _ in range(10)]
    await source.started.wait()
    source.gate.set()
    assert await asyncio.gather(*waiting) == ["v1"] * 10
    assert source.calls == 1


async def test_a_load_raced_by_an_invalidation_is_not_kept() -> None:
    cache = ContentCache(30, clock=FakeClock())
    source = Source()
    source.gate = asyncio.Event()
    stale = asyncio.create_task(cache.get("k", source))
    await source.started.wait()
    source.value = "v2"  # a change commits while the old value is being read ...
    cache.invalidate()  # ... and invalidates
    source.started.clear()
    fresh = asyncio.create_task(cache.get("k", source))  # does not join the stale load
    await source.started.wait()
    source.gate.set()
    assert await stale == "v1"
    assert await fresh == "v2"
    source.gate = None
    assert await cache.get("k", source) == "v2"
    assert source.calls == 2


async def test_a_caller_giving_up_does_not_cancel_the_shared_load() -> None:
    cache = ContentCache(30, clock=FakeClock())
    source = Source()
    source.gate = asyncio.Event()
    first = asyncio.create_task(cache.get("k", source))
    second = asyncio.create_task(cache.get("k", source))
    await source.started.wait()
    first.cancel()
    source.gate.set()
    assert await second == "v1"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_errors_are_not_cached() -> None:
    cache = ContentCache(30, clock=FakeClock())
    calls = 0

    async def failing() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database down")
        return "ok"

    with pytest.raises(RuntimeError):
        await cache.get("k", failing)
    assert await cache.get("k", failing) == "ok"


async def test_bounded_by_keys_and_by_weight() -> None:
    cache = ContentCache(30, clock=FakeClock(), max_items=3, max_bytes=100, weigh=len)
    for key in "abcd":
        await cache.get(key, lambda: asyncio.sleep(0, "x" * 10))
    assert cache.size == (3, 30)  # "a", the least recently used, went first
    await cache.get("big", lambda: asyncio.sleep(0, "y" * 80))
    assert cache.size == (3, 100)
    await cache.get("huge", lambda: asyncio.sleep(0, "z" * 101))  # served, not kept
    assert cache.size == (3, 100)


async def test_zero_window_means_no_cache() -> None:
    cache = ContentCache(0, clock=FakeClock())
    source = Source()
    await cache.get("k", source)
    await cache.get("k", source)
    assert source.calls == 2
