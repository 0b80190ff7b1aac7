"""Time in tests: fake clocks the test moves by hand, and waits bounded by a deadline.

No test may depend on how fast the machine is:

- a cache, window or TTL under test runs on a fake clock that the test advances
  (``FakeClock`` for ``time.monotonic``-style seconds, ``FakeUtcClock`` for aware
  datetimes), never on real time raced against real work;
- a wait for something asynchronous (a relay shipping, a health change, a background
  tick) polls until a deadline of ``HANG_SECONDS`` and then asserts: the bound only
  catches a hang, it is not a speed requirement.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

T = TypeVar("T")

#: How long a test waits for something that should happen "soon" before calling it a
#: hang. Generous on purpose: a busy CI machine may be slow, never this slow.
HANG_SECONDS = 60.0


class FakeClock:
    """Monotonic seconds (``time.monotonic``'s shape) that move only on ``advance``."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        assert seconds >= 0, "a monotonic clock never goes back"
        self.now += seconds


class FakeUtcClock:
    """Aware UTC datetimes (``datetime.now(UTC)``'s shape) that move only on ``advance``
    (or when a test sets ``now``)."""

    def __init__(self, start: datetime = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)) -> None:
        assert start.tzinfo is not None, "an aware datetime"
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def eventually(
    check: Callable[[], Awaitable[T]],
    *,
    within: float = HANG_SECONDS,
    every: float = 0.05,
) -> T:
    """Call ``check`` until its result is truthy or ``within`` seconds have passed;
    return the last result (the caller asserts on it, so a hang fails the test with
    what was seen last)."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result or time.monotonic() >= deadline:
            return result
        await asyncio.sleep(every)


class SteppedUtcClock:
    """The real UTC time plus a shift that only ``advance`` moves: for a job that compares
    its clock with times the database stored (``now()``), e.g. stepping past a grace
    period at once instead of waiting for it."""

    def __init__(self) -> None:
        self.shift = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.shift

    def advance(self, seconds: float) -> None:
        assert seconds >= 0
        self.shift += timedelta(seconds=seconds)
