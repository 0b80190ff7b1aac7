"""Group commit for one BatchRecharge stream.

Each item task checks and prices its order, then hands the wallet function's parameters
to the stream's :class:`GroupCommitter` and waits for its row. The committer writes the
items it holds as one group (``gencharge_wallet_recharges``, migration 0019): one
statement, one transaction, one commit for up to :data:`MAX_GROUP` items.

The window is adaptive and bounded: when no group is being written, the first item goes
at once (a lone item waits for nothing); while a group is being written, the items that
arrive gather behind it and go as the next group, up to :data:`MAX_GROUP` of them. One
group of a stream is written at a time, and items enter groups in stream order (an item
still being priced holds back the ones after it), so a wallet's recharges within a
stream are applied in stream order, and their ledger rows' txn_ids and balance_after
follow that order.

An item that does not go through writes nothing and is answered with its own outcome
(server/recharge/wallet.py). When the group's statement fails as a whole (a deadlock
with another transaction, a lost connection, an error no check foresaw), nothing of it
was committed, and each of its items is written again alone, in order, so an item's
error is its own and never its neighbours'.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Final

from server.core.db import Database
from server.recharge import queries

log = logging.getLogger("gencharge.recharge.batch")

#: Items written together at most (one transaction).
MAX_GROUP: Final = 64

_Entry = tuple[dict[str, Any], "asyncio.Future[Mapping[str, Any]]"]


class GroupCommitter:
    """The writer of one stream's items (``group``: the parameters they share, caller,
    rpc, key_ttl, source and reward_amount). ``slots`` bounds the groups of all streams
    written at once (each holds a pooled connection)."""

    def __init__(self, db: Database, slots: asyncio.Semaphore) -> None:
        self._db = db
        self._slots = slots
        #: Items handed in but not yet in order (by index; None: an item that never
        #: comes, e.g. refused before pricing).
        self._arrived: dict[int, _Entry | None] = {}
        self._next = 0
        self._queue: list[_Entry] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, index: int, args: dict[str, Any]) -> Mapping[str, Any]:
        """Write item ``index`` (the wallet function's parameters by name) in a group;
        its row."""
        future: asyncio.Future[Mapping[str, Any]] = asyncio.get_running_loop().create_future()
        if index < self._next:
            # Again (priced anew after a wrong assumption): its turn has passed.
            self._queue.append((args, future))
        else:
            self._arrived[index] = (args, future)
        self._advance()
        return await future

    def done(self, index: int) -> None:
        """Item ``index`` needs no (more) writing: the items after it may go."""
        if index >= self._next and index not in self._arrived:
            self._arrived[index] = None
            self._advance()

    def _advance(self) -> None:
        while self._next in self._arrived:
            entry = self._arrived.pop(self._next)
            self._next += 1
            if entry is not None:
                self._queue.append(entry)
        if self._queue and self._writer is None:
            self._writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        try:
            while self._queue:
                group = [e for e in self._queue[:MAX_GROUP] if not e[1].done()]
                del self._queue[:MAX_GROUP]
                if group:
                    async with self._slots:
                        await self._commit(group)
        finally:
            self._writer = None

    async def _commit(self, group: list[_Entry]) -> None:
        shared = group[0][0]
        try:
            async with self._db.driver() as driver:
                rows = await queries.wallet_recharges(driver, shared, [a for a, _ in group])
        except Exception as exc:
            if len(group) > 1:
                log.warning(
                    "a batch group failed; writing its items one by one",
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
