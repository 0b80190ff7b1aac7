"""The sync client's engine: a private event loop on a daemon thread.

The sync :class:`~gencharge_client.Client` runs the async client's code on this loop,
so credentials, retries and errors exist once. Blocking calls wait for the loop's
result; iterators pull one item at a time from the loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterable, AsyncIterator, Coroutine, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class Runner:
    """An event loop running on its own thread until :meth:`close`."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="gencharge-client", daemon=True
        )
        self._thread.start()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and wait for its result (or exception)."""
        if self._closed:
            coroutine.close()
            raise RuntimeError("the client is closed")
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("a sync client call from inside its own event loop")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise

    def iterate(self, iterable: AsyncIterable[T]) -> Iterator[T]:
        """The items of an async iterable, pulled through the loop one at a time."""
        iterator = aiter(iterable)
        try:
            while True:
                try:
                    yield self.run(_next(iterator))
                except StopAsyncIteration:
                    return
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None and not self._closed:
                self.run(close())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


async def _next(iterator: AsyncIterator[T]) -> T:
    return await anext(iterator)


async def from_sync(items: Iterable[T]) -> AsyncIterator[T]:
    """A sync iterable as an async iterator (its items are taken on the loop)."""
    for item in items:
        yield item
