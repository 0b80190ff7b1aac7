"""The audit scope of one RPC: which change it made, written with that change.

The access interceptor opens a scope per call (who, which RPC, request id, peer).
Domain code names the change it makes with :func:`audit_change` inside its database
transaction; :func:`server.core.db.transaction` writes that event into the outbox just
before it commits, so the event exists if and only if the change does. A mutating
call that named no change (e.g. one that only touched MongoDB) still gets one event,
written by the interceptor after the call succeeds.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.core.db import Database


@dataclass
class PendingChange:
    table_name: str
    action_type: str
    details: Mapping[str, Any]
    customer_id: int | None = None


@dataclass
class AuditScope:
    actor: str
    rpc: str
    request_id: str
    peer: str | None
    mutating: bool
    pending: PendingChange | None = None
    written: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


current_scope: ContextVar[AuditScope | None] = ContextVar("audit_scope", default=None)

#: The actor of the changes the scheduler makes on its own (server/ops/scheduler.py).
SCHEDULER_ACTOR = "system:scheduler"
#: Details lists longer than this are cut (the event says how many there were).
MAX_LISTED_IDS = 500


#: The actor of changes made with the ``gencharge`` command (server/ops/cli.py).
CLI_ACTOR = "system:cli"


@contextmanager
def job_scope(
    job: str, request_id: str = "", *, actor: str = SCHEDULER_ACTOR
) -> Iterator[AuditScope]:
    """The audit scope of one unit of work outside RPCs: the changes it names are
    recorded like an RPC's, with ``actor`` (the scheduler by default), ``rpc`` set to
    ``<scheduler|cli>/<job>`` and ``request_id`` (the work's idempotency key, or a
    fresh ``<job>-<uuid>``), in the same transaction as the change."""
    kind = "cli" if actor == CLI_ACTOR else "scheduler"
    with scoped(
        AuditScope(
            actor=actor,
            rpc=f"{kind}/{job}",
            request_id=request_id or f"{job}-{uuid.uuid4().hex}",
            peer=None,
            mutating=True,
        )
    ) as scope:
        yield scope


@contextmanager
def scoped(scope: AuditScope) -> Iterator[AuditScope]:
    """``scope`` is the current audit scope inside the block (the previous one after)."""
    token = current_scope.set(scope)
    try:
        yield scope
    finally:
        current_scope.reset(token)


def current_rpc() -> str:
    """The method of the running call (``/gencharge.v1.RechargeService/Recharge``), or
    ``scheduler/<job>`` / ``cli/<job>`` outside RPCs: what idempotency keys record as
    their ``rpc``. Money-moving code always runs in a scope; outside one it is an error."""
    scope = current_scope.get()
    if scope is None:
        raise LookupError("no audit scope: run this inside an RPC or a job_scope()")
    return scope.rpc


def listed(ids: list[int]) -> dict[str, object]:
    """``{"ids": [...], "count": n}`` for event details, the list cut at MAX_LISTED_IDS
    (``"truncated": true`` then)."""
    out: dict[str, object] = {"count": len(ids), "ids": ids[:MAX_LISTED_IDS]}
    if len(ids) > MAX_LISTED_IDS:
        out["truncated"] = True
    return out


def audit_change(
    table_name: str,
    action_type: str,
    details: Mapping[str, Any],
    *,
    customer_id: int | None = None,
) -> None:
    """Name the change this call makes (INSERT/UPDATE/DELETE on ``table_name``).

    Call it inside the transaction that makes the change. One event per call: a later
    call replaces an earlier, unwritten one. ``customer_id`` names the customer the
    change is about (what ``ListAuditLogs`` filters on); by default it is the integer
    ``user_id`` of ``details``, else the acting customer
    (server/audit/outbox.py ``customer_of``).
    """
    scope = current_scope.get()
    if scope is not None and not scope.written:
        scope.pending = PendingChange(table_name, action_type, dict(details), customer_id)


def set_actor(actor: str) -> None:
    """Name the actor once it is known (e.g. Login: the user who just logged in)."""
    scope = current_scope.get()
    if scope is not None:
        scope.actor = actor


def unit_of_work(engine: AsyncEngine) -> Database:
    """The service's unit of work: every ``transaction()`` writes the audit event the
    call named into the outbox just before it commits."""
    return Database(engine, before_commit=flush)


async def flush(conn: AsyncConnection) -> None:
    """Write the pending event into the outbox on ``conn`` (before its commit)."""
    scope = current_scope.get()
    if scope is None or scope.pending is None or scope.written:
        return
    from server.audit.outbox import AuditEvent, record

    change = scope.pending
    await record(
        conn,
        AuditEvent(
            actor=scope.actor,
            table_name=change.table_name,
            action_type=change.action_type,
            details=change.details,
            rpc=scope.rpc,
            request_id=scope.request_id,
            peer=scope.peer,
            customer_id=change.customer_id,
        ),
    )
    scope.written = True


def take_event(
    table_name: str, action_type: str, details: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The outbox JSON of this call's event, for code that writes it in its own SQL
    statement (hot paths: one round trip). Marks the event written; None outside RPCs."""
    event = event_json(table_name, action_type, details)
    if event is not None:
        mark_written()
    return event


def event_json(
    table_name: str, action_type: str, details: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Like :func:`take_event`, without marking the event written: for a statement
    that may write nothing (it reports why instead of raising); call
    :func:`mark_written` once it did write. None outside RPCs or once written."""
    scope = current_scope.get()
    if scope is None or scope.written:
        return None
    from server.audit.outbox import AuditEvent

    return AuditEvent(
        actor=scope.actor,
        table_name=table_name,
        action_type=action_type,
        details=details,
        rpc=scope.rpc,
        request_id=scope.request_id,
        peer=scope.peer,
    ).to_json()


def mark_written() -> None:
    """The call's event was written by the call's own statement (:func:`event_json`)."""
    scope = current_scope.get()
    if scope is not None:
        scope.written = True
