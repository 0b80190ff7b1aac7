"""The per-process cache of ContentService's public reads (GetContent, ListContent).

Each read is kept under its key (an item id; a list page's type, size and position)
for ``ttl_seconds`` by the cache's ``clock`` (``time.monotonic`` unless a test injects
its own), misses included (an unknown id is asked again only after the ttl), at most
``max_items`` keys weighing at most ``max_bytes`` together (``weigh`` tells a value's
weight; the least recently used go first; a value heavier than the budget is served
but not kept).

Changes made on this process are visible at once: the admin RPCs call
:meth:`ContentCache.invalidate` after their change is stored, which forgets every key
(content changes are rare; reads are many). Changes made through another process or
replica are visible there within ``ttl_seconds`` (``GENCHARGE_CONTENT_CACHE_SECONDS``);
0 turns the cache off.

Concurrent misses of one key share one load; a load that began before an invalidation
is returned to its callers but not kept.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Final

#: Seconds from any fixed point, never going back (``time.monotonic``).
Clock = Callable[[], float]

DEFAULT_MAX_ITEMS: Final = 4096
DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024


@dataclass(frozen=True)
class _Entry:
    value: Any
    loaded_at: float
    epoch: int
    weight: int


class ContentCache:
    def __init__(
        self,
        ttl_seconds: float,
        *,
        clock: Clock = time.monotonic,
        max_items: int = DEFAULT_MAX_ITEMS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        weigh: Callable[[Any], int] = lambda value: 0,
    ) -> None:
        self._ttl = ttl_seconds
        self._clock = clock
        self._max = max_items
        self._max_bytes = max_bytes
        self._weigh = weigh
        self._bytes = 0
        self._items: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._loading: dict[Hashable, tuple[int, asyncio.Future[Any]]] = {}
        self._epoch = 0
        #: How many loads ran (for tests and metrics).
        self.loads = 0

    def invalidate(self) -> None:
        """Forget everything: the next read of any key loads it again."""
        self._epoch += 1
        self._items.clear()
        self._bytes = 0

    @property
    def size(self) -> tuple[int, int]:
        """(keys kept, their weight)."""
        return len(self._items), self._bytes

    def _drop(self, key: Hashable) -> None:
        entry = self._items.pop(key)
        self._bytes -= entry.weight

    async def get(self, key: Hashable, load: Callable[[], Awaitable[Any]]) -> Any:
        """The cached value of ``key``, or what ``load()`` returns (then kept)."""
        if self._ttl <= 0:
            self.loads += 1
            return await load()
        entry = self._items.get(key)
        if entry is not None:
            if entry.epoch == self._epoch and self._clock() - entry.loaded_at < self._ttl:
                self._items.move_to_end(key)
                return entry.value
            self._drop(key)
        pending = self._loading.get(key)
        if pending is None or pending[0] != self._epoch:
            future = asyncio.ensure_future(self._load(key, load))
            future.add_done_callback(_retrieve)
            pending = (self._epoch, future)
            self._loading[key] = pending
        # Shielded: a caller that gives up does not cancel the load the others wait for.
        return await asyncio.shield(pending[1])

    async def _load(self, key: Hashable, load: Callable[[], Awaitable[Any]]) -> Any:
        epoch = self._epoch
        loaded_at = self._clock()
        try:
            self.loads += 1
            value = await load()
        finally:
            current = self._loading.get(key)
            if current is not None and current[0] == epoch:
                del self._loading[key]
        weight = self._weigh(value)
        if epoch == self._epoch and weight <= self._max_bytes:
            if key in self._items:
                self._drop(key)
            self._items[key] = _Entry(value, loaded_at, epoch, weight)
            self._bytes += weight
            while len(self._items) > self._max or self._bytes > self._max_bytes:
                self._drop(next(iter(self._items)))
        return value


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a failed load's error as seen: every waiter may have given up on it."""
    if not future.cancelled():
        future.exception()
