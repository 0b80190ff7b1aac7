"""Group commit: wallet recharges written together, one statement and one transaction
per group (``gencharge_wallet_recharges``, migration 0019).

Each recharge is checked and priced by its own task (a unary call, or an item of a
BatchRecharge stream), which hands the wallet function's parameters to a
:class:`GroupCommitter` and waits for its row. The committer writes what it holds as
one group of up to :data:`MAX_GROUP` recharges.

The window is adaptive and bounded: while a writer is free, the first recharge goes at
once (a lone call waits for nothing); while the writers are busy, the recharges that
arrive gather behind them and go as the next group. Under load, groups grow and the
database does one commit, one round trip and one lock pass per group instead of per
recharge; at one call in flight nothing changes.

Two kinds of committer:

- **one per BatchRecharge stream** (``ordered``): one group of the stream is written at
  a time, and items enter groups in stream order (an item still being priced holds
  back the ones after it), so a wallet's recharges within a stream are applied in
  stream order, and their ledger rows' txn_ids and balance_after follow that order;
- **one per server process for unary Recharge calls**: up to :data:`UNARY_WRITERS` groups
  at once
  (concurrent calls have no order among them).

A recharge that does not go through writes nothing and is answered with its own outcome
(server/recharge/wallet.py). When a group's statement fails as a whole (a deadlock with
another transaction, a lost connection, an error no check foresaw), nothing of it was
committed, and each of its recharges is written again alone, in order, so an error is
its own and never its neighbours'.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Final

from server.core.db import Database
from server.recharge import queries

log = logging.getLogger("gencharge.recharge.group")

#: Recharges written together at most (one transaction).
MAX_GROUP: Final = 64
#: Groups of unary Recharge calls written at once (each holds a pooled connection).
#: Fewer writers make larger groups: in `make bench` on 2 cores, 2 writers gave 10 %
#: more recharges/s at 32 in flight than 4 and a p99 of 73-87 ms instead of 111 ms; 1
#: writer did as well as 2, but one slow group (a lock wait) would then hold up every
#: call of the process.
UNARY_WRITERS: Final = 2

_Entry = tuple[dict[str, Any], "asyncio.Future[Mapping[str, Any]]"]


class GroupCommitter:
    """Writes wallet recharges in groups. ``slots`` (optional) bounds the groups of
    several committers written at once (each holds a pooled connection); ``writers``
    bounds this committer's own (1 for an ordered committer)."""

    def __init__(
        self,
        db: Database,
        *,
        ordered: bool,
        writers: int = 1,
        slots: asyncio.Semaphore | None = None,
    ) -> None:
        if ordered and writers != 1:
            raise ValueError("an ordered committer writes one group at a time")
        self._db = db
        self._ordered = ordered
        self._writers = writers
        self._slots = slots
        #: Ordered: recharges handed in ahead of their turn, by index (None: an index
        #: that never comes, e.g. refused before pricing).
        self._arrived: dict[int, _Entry | None] = {}
        self._next = 0
        self._queue: list[_Entry] = []
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, args: dict[str, Any], index: int | None = None) -> Mapping[str, Any]:
        """Write one recharge (the wallet function's parameters by name) in a group;
        its row. An ordered committer takes the item's ``index`` in its stream."""
        future: asyncio.Future[Mapping[str, Any]] = asyncio.get_running_loop().create_future()
        if not self._ordered or index is None or index < self._next:
            # Unordered, or again (priced anew after a wrong assumption): its turn
            # has passed.
            self._queue.append((args, future))
        else:
            self._arrived[index] = (args, future)
        self._advance()
        return await future

    def done(self, index: int) -> None:
        """Ordered: item ``index`` needs no (more) writing; the items after it may go."""
        if index >= self._next and index not in self._arrived:
            self._arrived[index] = None
            self._advance()

    def _advance(self) -> None:
        while self._next in self._arrived:
            entry = self._arrived.pop(self._next)
            self._next += 1
            if entry is not None:
                self._queue.append(entry)
        while self._queue and len(self._running) < self._writers:
            self._running.add(asyncio.create_task(self._write()))

    async def _write(self) -> None:
        try:
            while self._queue:
                group = [e for e in self._queue[:MAX_GROUP] if not e[1].done()]
                del self._queue[:MAX_GROUP]
                if not group:
                    continue
                if self._slots is None:
                    await self._commit(group)
                else:
                    async with self._slots:
                        await self._commit(group)
        finally:
            # Off the list in the same step that found the queue empty: a done callback
            # would run a loop turn later, after the caller woken by the last result
            # may already have handed in its next recharge and found no free writer.
            task = asyncio.current_task()
            if task is not None:
                self._running.discard(task)

    async def _commit(self, group: list[_Entry]) -> None:
        if len(group) == 1:
            await self._alone(*group[0])
            return
        try:
            async with self._db.driver() as driver:
                rows = await queries.wallet_recharges(driver, [a for a, _ in group])
        except Exception as exc:
            log.warning(
                "a group of recharges failed; writing them one by one",
                extra={"items": len(group), "error": type(exc).__name__},
            )
            for args, future in group:
                await self._alone(args, future)
            return
        for (_, future), row in zip(group, rows, strict=True):
            if not future.done():
                future.set_result(row)

    async def _alone(self, args: dict[str, Any], future: asyncio.Future[Mapping[str, Any]]) -> None:
        if future.done():
            return
        try:
            async with self._db.driver() as driver:
                row = await queries.wallet_recharge(driver, args)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(row)
