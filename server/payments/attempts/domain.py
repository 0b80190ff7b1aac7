"""The rules of payment attempts (no grpc, no transactions opened here: every function
takes the connection it works on as ``conn``).

An attempt is one charge through the payment gateway under our reference, written in
the transaction that claims the call's idempotency key, with everything needed to record
its outcome without the original request (``intent``). Its ``state``:

- ``charging``: the key is claimed and the gateway is (or was) being asked; nothing is
  recorded yet. A crash, a failed recording or an unknown gateway outcome leaves it
  here; the recovery job (server/recovery) asks the gateway about it once it is older
  than the grace period.
- ``recorded``: the ledger row exists (``txn_id``) and the key is completed, in the same
  transaction. Recorded at most once: recording locks the row and replays a
  ``recorded`` one.
- ``released``: nothing was captured (declined, or the gateway knows no charge): the
  key was released with it, and the same request_id may charge again under the same
  reference (``charges`` + 1), which the gateway answers idempotently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from server.core import idempotency
from server.core.errors import AlreadyExists
from server.payments.attempts import queries

CHARGING = "charging"
RECORDED = "recorded"
RELEASED = "released"
#: What was charged: a wallet top-up or a recharge (PayBill pays through a recharge).
TOP_UP = "top_up"
RECHARGE = "recharge"


@dataclass(frozen=True)
class Charge:
    """What an attempt charges and under which key: the part of an attempt every kind
    shares. ``intent`` is the kind's own (JSON) record of the order."""

    reference: str
    kind: str
    caller: str
    request_id: str
    rpc: str
    fingerprint: str
    user_id: int
    intent: Mapping[str, Any]


@dataclass(frozen=True)
class Attempt:
    """One ``payment_attempts`` row."""

    charge: Charge
    state: str
    payment_id: str | None
    txn_id: int | None
    charges: int
    checks: int
    next_check_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def reference(self) -> str:
        return self.charge.reference

    @classmethod
    def of(cls, row: Any) -> Attempt:
        return cls(
            Charge(
                row.reference,
                row.kind,
                row.caller,
                row.request_id,
                row.rpc,
                row.request_hash,
                int(row.user_id),
                row.intent,
            ),
            row.state,
            row.payment_id,
            row.txn_id,
            int(row.charges),
            int(row.checks),
            row.next_check_at,
            row.created_at,
            row.updated_at,
        )


async def begin(charge: Charge, *, conn: AsyncConnection) -> Attempt | None:
    """Write the attempt ``charging``, in the transaction that claimed the key. None: go
    on and charge. A ``recorded`` attempt: this reference was charged and recorded
    already (its key expired since): the caller replays it. A reference still
    ``charging`` for a different request: ALREADY_EXISTS ``IDEMPOTENCY_KEY_REUSED`` (its
    outcome is not known yet, so the key may not carry another request)."""
    renewed = await queries.begin(
        conn,
        reference=charge.reference,
        kind=charge.kind,
        caller=charge.caller,
        request_id=charge.request_id,
        rpc=charge.rpc,
        request_hash=charge.fingerprint,
        user_id=charge.user_id,
        intent=charge.intent,
    )
    if renewed:
        return None
    row = await queries.get(conn, charge.reference)
    assert row is not None
    attempt = Attempt.of(row)
    if attempt.state == RECORDED:
        return attempt
    raise AlreadyExists(
        "request_id was already used for a different request whose payment is not settled "
        "yet; use a new request_id",
        reason="IDEMPOTENCY_KEY_REUSED",
        metadata={"request_id": charge.request_id},
    )


async def lock(reference: str, *, conn: AsyncConnection) -> Attempt | None:
    """The attempt, locked until the transaction ends (recording and releasing lock it
    first, so they happen once)."""
    row = await queries.get(conn, reference, for_update=True)
    return Attempt.of(row) if row is not None else None


async def reclaim_key(charge: Charge, *, conn: AsyncConnection) -> None:
    """Make sure the charge's idempotency key exists before it is completed: it was
    released (an unknown gateway outcome, or the recovery job found no charge) while
    the charge went through after all."""
    await idempotency.reclaim(
        conn,
        caller=charge.caller,
        request_id=charge.request_id,
        rpc=charge.rpc,
        fingerprint=charge.fingerprint,
    )


async def recorded(
    attempt: Attempt | None, charge: Charge, *, payment_id: str, txn_id: int, conn: AsyncConnection
) -> None:
    """The charge is now the ledger row ``txn_id`` (called in the recording transaction,
    after the row and the completed key)."""
    if attempt is None:  # claimed before attempts existed (an upgrade in flight)
        return
    await queries.mark_recorded(conn, charge.reference, payment_id=payment_id, txn_id=txn_id)


async def release(
    reference: str, *, payment_id: str | None = None, conn: AsyncConnection
) -> Attempt | None:
    """Nothing was captured: release the key and the attempt. Returns the attempt if it
    was recorded meanwhile (the caller replays it; nothing is released)."""
    attempt = await lock(reference, conn=conn)
    if attempt is None:
        return None
    if attempt.state == RECORDED:
        return attempt
    await idempotency.release(
        conn, caller=attempt.charge.caller, request_id=attempt.charge.request_id
    )
    await queries.mark_released(conn, reference, payment_id=payment_id)
    return None


async def abandon(reference: str, *, conn: AsyncConnection) -> Attempt | None:
    """The gateway's outcome is unknown (no answer): release the key so that the caller
    may retry at once (the same reference charges at most once), but leave the attempt
    ``charging`` for the recovery job to ask the gateway. Returns the attempt if it was
    recorded meanwhile."""
    attempt = await lock(reference, conn=conn)
    if attempt is not None and attempt.state == RECORDED:
        return attempt
    if attempt is not None:
        await idempotency.release(
            conn, caller=attempt.charge.caller, request_id=attempt.charge.request_id
        )
    return None


async def take_due(
    *, now: datetime, grace: timedelta, lease: timedelta, limit: int, conn: AsyncConnection
) -> list[Attempt]:
    """Attempts left ``charging`` that the recovery job should check now, leased to this
    replica for ``lease`` (their ``checks`` counted)."""
    rows = await queries.take_due(conn, now=now, grace=grace, lease_until=now + lease, limit=limit)
    return [Attempt.of(r) for r in rows]


async def back_off(attempt: Attempt, *, until: datetime, error: str, conn: AsyncConnection) -> None:
    """Check the attempt again at ``until`` (it stays ``charging``)."""
    await queries.back_off(
        conn, attempt.reference, until=until, error=error[:200], checks=attempt.checks
    )


async def purge_settled(*, before: datetime, conn: AsyncConnection) -> int:
    """Forget attempts recorded or released before ``before`` (their keys are gone by
    then: the scheduler purges both after the key's lifetime)."""
    return await queries.purge_settled(conn, before=before)
