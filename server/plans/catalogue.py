"""The in-process plan/offer catalogue used by the recharge hot path.

Every plan and every offer (any status), with their group / offer-type names, is loaded
in two queries (one read-only connection of the ``Database``) and kept in dictionaries
of :class:`~server.plans.domain.PlanInfo` / :class:`~server.plans.domain.OfferInfo`. A
snapshot is used for ``ttl_seconds`` by the catalogue's ``clock`` (``time.monotonic``
unless a test injects its own); the first lookup after that reloads it (one reload at a
time: concurrent callers wait for it and then share its result).

Changes made on this process are visible at once: the admin RPCs call
:meth:`Catalogue.invalidate` after they commit. Changes made on another replica are
visible within ``ttl_seconds``, or sooner for ids this snapshot does not know: a
lookup miss reloads the snapshot (at most once per ``ttl_seconds``, so a flood of
lookups for ids that do not exist cannot turn into a flood of reloads).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from server.core.db import Database
from server.plans import queries
from server.plans.domain import OfferInfo, PlanInfo

__all__ = ["Catalogue", "Clock", "OfferInfo", "PlanInfo"]

#: Seconds from any fixed point, never going back (``time.monotonic``).
Clock = Callable[[], float]


@dataclass(frozen=True)
class _Snapshot:
    plans: Mapping[int, PlanInfo]
    offers: Mapping[int, OfferInfo]
    loaded_at: float  # by the catalogue's clock
    epoch: int  # the invalidation epoch it was loaded in


class Catalogue:
    """All plans and offers of the database, cached for ``ttl_seconds``."""

    def __init__(self, db: Database, ttl_seconds: float, *, clock: Clock = time.monotonic) -> None:
        self._db = db
        self._ttl = ttl_seconds
        self._clock = clock
        self._snapshot: _Snapshot | None = None
        self._epoch = 0
        self._lock = asyncio.Lock()
        self._last_miss_reload: float | None = None
        #: How many times the snapshot was loaded (for tests and metrics).
        self.loads = 0

    async def plan(self, plan_id: int) -> PlanInfo | None:
        """The plan with this id, whatever its status; None if there is none."""
        snapshot = await self._current()
        info = snapshot.plans.get(plan_id)
        if info is None:
            snapshot = await self._reload_after_miss(snapshot)
            info = snapshot.plans.get(plan_id)
        return info

    async def offer(self, offer_id: int) -> OfferInfo | None:
        """The offer with this id, whatever its status; None if there is none."""
        snapshot = await self._current()
        info = snapshot.offers.get(offer_id)
        if info is None:
            snapshot = await self._reload_after_miss(snapshot)
            info = snapshot.offers.get(offer_id)
        return info

    @property
    def clock(self) -> Clock:
        """The clock this catalogue ages its snapshot by: the server's (tests inject a
        fake one); other per-process caches built beside it share it."""
        return self._clock

    def invalidate(self) -> None:
        """Forget the snapshot: the next lookup reloads (call after committing a change).

        A reload already under way when this is called may have read the old rows, so
        its result counts as stale too.
        """
        self._epoch += 1

    def _fresh(self, snapshot: _Snapshot | None) -> bool:
        return (
            snapshot is not None
            and snapshot.epoch == self._epoch
            and self._clock() - snapshot.loaded_at < self._ttl
        )

    async def _current(self) -> _Snapshot:
        snapshot = self._snapshot
        if snapshot is not None and self._fresh(snapshot):
            return snapshot
        asked_at = self._clock()
        async with self._lock:
            # Someone else may have reloaded while we waited for the lock: a snapshot
            # loaded after we asked is good enough for us, whatever the ttl.
            snapshot = self._snapshot
            if snapshot is not None and (
                self._fresh(snapshot)
                or (snapshot.loaded_at >= asked_at and snapshot.epoch == self._epoch)
            ):
                return snapshot
            return await self._load()

    async def _reload_after_miss(self, seen: _Snapshot) -> _Snapshot:
        async with self._lock:
            snapshot = self._snapshot
            assert snapshot is not None
            if snapshot is not seen:
                return snapshot  # reloaded while we waited: use that
            now = self._clock()
            if self._last_miss_reload is not None and now - self._last_miss_reload < self._ttl:
                return snapshot
            self._last_miss_reload = now
            return await self._load()

    async def _load(self) -> _Snapshot:
        """Load everything; call with the lock held."""
        epoch = self._epoch
        loaded_at = self._clock()
        async with self._db.read_only() as conn:
            plan_rows = await queries.all_plans(conn)
            offer_rows = await queries.all_offers(conn)
        snapshot = _Snapshot(
            plans={r.plan_id: PlanInfo.from_row(r) for r in plan_rows},
            offers={r.offer_id: OfferInfo.from_row(r) for r in offer_rows},
            loaded_at=loaded_at,
            epoch=epoch,
        )
        self._snapshot = snapshot
        self.loads += 1
        return snapshot
