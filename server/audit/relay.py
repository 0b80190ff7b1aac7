"""The audit relay: ships the PostgreSQL outbox to MongoDB ``AuditLog`` in batches.

One batch is one PostgreSQL transaction:

1. ``SELECT ... FROM audit_outbox ORDER BY outbox_id LIMIT n FOR UPDATE SKIP LOCKED``
2. ``AuditLog.insert_many(documents, ordered=False)``, ``audit_id = str(event_id)``
3. ``DELETE`` the shipped rows, commit.

A crash or error between 2 and 3 leaves the rows in the outbox, so they are shipped
again (at least once); the unique index on ``AuditLog.audit_id`` turns the second
insert into a duplicate-key error, which is ignored, so each event is stored once.
``event_id`` is a UUID the database draws when the event is written, never reused:
the outbox sequence (``outbox_id``, order only) may go back after a restore or a
failover without a new event ever passing for one already shipped.
``SKIP LOCKED`` lets a relay run in every replica: each takes a different batch.

While MongoDB (or PostgreSQL) is down the relay logs one warning, backs off
exponentially (up to ``max_backoff`` seconds) and tries again; events wait in the
outbox, which only needs PostgreSQL, so nothing is lost and callers are not slowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError
from sqlalchemy.ext.asyncio import AsyncEngine

from migrations.mongo.collections import AUDIT_LOG
from server.audit import queries
from server.audit.outbox import customer_of

log = logging.getLogger(__name__)

Document = dict[str, Any]

#: MongoDB DuplicateKey.
_DUPLICATE_KEY: Final = 11000


class AuditShipError(Exception):
    """MongoDB refused part of a batch for a reason other than "already shipped"."""


def to_document(event_id: UUID, event: Mapping[str, Any], queued_at: datetime) -> Document:
    """The ``AuditLog`` document of one outbox row (``audit_id`` is its ``event_id``)."""
    occurred = event.get("occurred_at")
    created_at = queued_at
    if isinstance(occurred, str):
        with contextlib.suppress(ValueError):
            created_at = datetime.fromisoformat(occurred)
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    details = event.get("details")
    peer = event.get("peer")
    actor = str(event.get("actor") or "anonymous")
    customer = event.get("customer_id")
    if "customer_id" not in event:  # queued before events named their customer
        customer = customer_of(actor, details if isinstance(details, dict) else {})
    return {
        "audit_id": str(event_id),
        "user_id": actor,
        "table_name": str(event.get("table_name") or ""),
        "action_type": str(event.get("action_type") or ""),
        "details": details if isinstance(details, dict) else {},
        "created_at": created_at,
        "rpc": str(event.get("rpc") or ""),
        "request_id": str(event.get("request_id") or ""),
        "outcome": str(event.get("outcome") or "ok"),
        "peer": None if peer is None else str(peer),
        "customer_id": (
            customer
            if isinstance(customer, int) and not isinstance(customer, bool) and customer > 0
            else None
        ),
    }


def _is_audit_id_duplicate(error: Mapping[str, Any]) -> bool:
    if error.get("code") != _DUPLICATE_KEY:
        return False
    pattern = error.get("keyPattern")
    if isinstance(pattern, Mapping):
        return list(pattern) == ["audit_id"]
    return "audit_id" in str(error.get("errmsg", ""))  # servers without keyPattern


class AuditRelay:
    """Ships ``audit_outbox`` to MongoDB ``AuditLog``; safe to run in every replica.

    ``start()`` runs the loop as a background task; ``await stop()`` ends it and makes
    one last best-effort attempt; ``wake()`` asks for a prompt batch (e.g. after a
    commit) instead of waiting up to ``interval``.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        mongo_db: AsyncDatabase[Document],
        *,
        batch_size: int = 500,
        interval: float = 0.5,
        max_backoff: float = 30.0,
        stop_timeout: float = 2.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.engine = engine
        self.collection: AsyncCollection[Document] = mongo_db[AUDIT_LOG]
        self.batch_size = batch_size
        self.interval = interval
        self.max_backoff = max_backoff
        self.stop_timeout = stop_timeout
        #: Events this relay shipped (duplicates of earlier attempts included).
        self.shipped_total = 0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._failing = False
        #: Consecutive failed attempts of the loop (0 while shipping works).
        self.failed_attempts = 0

    # ----------------------------------------------------------------- one batch

    async def ship_once(self) -> int:
        """Ship one batch (up to ``batch_size`` events); return how many."""
        async with self.engine.begin() as conn:
            rows = (await conn.execute(queries.claim_batch(self.batch_size))).all()
            if not rows:
                return 0
            documents = [to_document(row[0], row[1], row[2]) for row in rows]
            await self._insert(documents)
            await queries.delete_shipped(conn, [row[0] for row in rows])
        self.shipped_total += len(rows)
        return len(rows)

    async def _insert(self, documents: list[Document]) -> None:
        try:
            await self.collection.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            details = exc.details
            others = [e for e in details.get("writeErrors", []) if not _is_audit_id_duplicate(e)]
            if others or details.get("writeConcernErrors"):
                first = others[0] if others else details["writeConcernErrors"][0]
                raise AuditShipError(
                    f"AuditLog refused {len(others)} of {len(documents)} events: "
                    f"code {first.get('code')}: {first.get('errmsg')}"
                ) from exc
            # Every error is "audit_id already stored": an earlier attempt got there.

    async def backlog(self) -> int:
        """Events waiting in the outbox (including any batch being shipped now)."""
        async with self.engine.connect() as conn:
            return await queries.count(conn)

    # ----------------------------------------------------------------- the loop

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the background loop (no-op when it runs already)."""
        if self.running:
            return
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="audit-relay")

    def wake(self) -> None:
        """Ship soon: cuts the idle wait short (not the back-off of an outage)."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop the loop, then try once more to ship what is left (best effort).

        Each phase is bounded by ``stop_timeout``; events not shipped stay in the
        outbox for the next relay.
        """
        task, self._task = self._task, None
        self._stopping = True
        self._wake.set()
        if task is not None:
            try:
                await asyncio.wait_for(task, self.stop_timeout)  # cancels it on timeout
            except TimeoutError:
                pass
            except Exception:  # pragma: no cover - _run never raises
                log.exception("audit relay loop failed")
        try:
            await asyncio.wait_for(self._drain(), self.stop_timeout)
        except TimeoutError:
            log.warning("audit relay: final shipment timed out; events stay in the outbox")
        except Exception as exc:
            log.warning(
                "audit relay: final shipment failed; events stay in the outbox",
                extra={"error": repr(exc)},
            )

    async def _drain(self) -> None:
        while await self.ship_once() >= self.batch_size:
            pass

    async def _run(self) -> None:
        while not self._stopping:
            try:
                shipped = await self.ship_once()
            except Exception as exc:
                self.failed_attempts += 1
                exponent = min(self.failed_attempts, 30)
                delay = min(self.max_backoff, self.interval * 2**exponent)
                if not self._failing:
                    self._failing = True
                    log.warning(
                        "audit relay: cannot ship, retrying with back-off; "
                        "events wait in the outbox",
                        extra={"error": repr(exc)},
                    )
                else:
                    log.debug("audit relay: still failing", extra={"error": repr(exc)})
                await self._pause(delay, wakeable=False)
                continue
            if self._failing:
                self._failing = False
                log.info(
                    "audit relay: shipping again",
                    extra={"failed_attempts": self.failed_attempts},
                )
            self.failed_attempts = 0
            if shipped < self.batch_size:
                await self._pause(self.interval, wakeable=True)

    async def _pause(self, seconds: float, *, wakeable: bool) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self._stopping:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return
            self._wake.clear()
            if wakeable:
                return
