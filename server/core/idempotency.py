"""Idempotency keys (AIP-155) for every money-moving RPC.

Inside the business transaction, :func:`claim` inserts ``(caller, request_id)``:

- a new key: the caller goes on with the work and calls :func:`complete` with what it
  produced, in the same transaction, so the key exists if and only if the work does;
- a concurrent duplicate blocks on the primary key until the first transaction ends:
  if that committed, it finds the completed key; if it rolled back, it proceeds itself;
- a replay with the same request gets the stored result (the caller rebuilds the
  original response from it); with different parameters it is INVALID_ARGUMENT.

Keys are scoped to the caller (two callers may use the same request_id) and kept at
least ``IDEMPOTENCY_TTL`` (24 hours); the scheduler purges expired keys.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from google.protobuf.message import Message
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from server.core.schema import idempotency_keys

IDEMPOTENCY_TTL = timedelta(hours=24)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")


@dataclass(frozen=True)
class Replay:
    """A completed earlier call with the same key and the same request."""

    result: Mapping[str, Any]


def validate_request_id(request_id: str, field: str = "request_id") -> None:
    if not _REQUEST_ID.match(request_id):
        raise InvalidArgument.field(
            field, "must be 8-128 characters of letters, digits, '.', '_', ':' or '-' (a UUID)"
        )


def request_hash(request: Message, *, ignore: tuple[str, ...] = ("request_id",)) -> str:
    """A fingerprint of the request without its idempotency key."""
    copy = type(request)()
    copy.CopyFrom(request)
    for name in ignore:
        copy.ClearField(name)
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


def text_hash(text: str) -> str:
    """A fingerprint for a request identified by a string (e.g. "bill:12")."""
    return hashlib.sha256(text.encode()).hexdigest()


async def claim(
    conn: AsyncConnection, *, caller: str, request_id: str, rpc: str, fingerprint: str
) -> Replay | None:
    """Claim the key for this transaction; None means "new: do the work"."""
    validate_request_id(request_id)
    inserted = await conn.execute(
        insert(idempotency_keys)
        .values(
            caller=caller,
            request_id=request_id,
            rpc=rpc,
            request_hash=fingerprint,
            expires_at=func.now() + IDEMPOTENCY_TTL,
        )
        .on_conflict_do_nothing()
        .returning(idempotency_keys.c.request_id)
    )
    if inserted.first() is not None:
        return None
    row = (
        await conn.execute(
            select(idempotency_keys).where(
                idempotency_keys.c.caller == caller, idempotency_keys.c.request_id == request_id
            )
        )
    ).one()
    if row.rpc != rpc or row.request_hash != fingerprint:
        raise AlreadyExists(
            "request_id was already used for a different request; use a new request_id",
            reason="IDEMPOTENCY_KEY_REUSED",
            metadata={"request_id": request_id},
        )
    if row.result is None:
        # Only keys claimed for an external call are ever committed without a result.
        raise FailedPrecondition(
            "the original request is still in progress; retry shortly", reason="IN_PROGRESS"
        )
    return Replay(row.result)


async def lookup(
    conn: AsyncConnection, *, caller: str, request_id: str, rpc: str, fingerprint: str
) -> Replay | None:
    """The completed earlier call with this key, without claiming it (None: unused or
    still in progress); the same key for a different request is ALREADY_EXISTS."""
    validate_request_id(request_id)
    row = (
        await conn.execute(
            select(idempotency_keys).where(
                idempotency_keys.c.caller == caller, idempotency_keys.c.request_id == request_id
            )
        )
    ).one_or_none()
    if row is None or row.result is None:
        return None
    if row.rpc != rpc or row.request_hash != fingerprint:
        raise AlreadyExists(
            "request_id was already used for a different request; use a new request_id",
            reason="IDEMPOTENCY_KEY_REUSED",
            metadata={"request_id": request_id},
        )
    return Replay(row.result)


async def complete(
    conn: AsyncConnection, *, caller: str, request_id: str, result: Mapping[str, Any]
) -> None:
    await conn.execute(
        update(idempotency_keys)
        .where(idempotency_keys.c.caller == caller, idempotency_keys.c.request_id == request_id)
        .values(result=dict(result))
    )


async def purge_expired(conn: AsyncConnection) -> int:
    result = await conn.execute(
        delete(idempotency_keys).where(idempotency_keys.c.expires_at < func.now())
    )
    return int(result.rowcount)


async def forget(conn: AsyncConnection, keys: list[tuple[str, str]]) -> None:
    """Delete these ``(caller, request_id)`` keys whatever their state: the work they
    recorded was undone (e.g. a bill's payment that failed), so the key may run again."""
    for caller, request_id in keys:
        await conn.execute(
            delete(idempotency_keys).where(
                idempotency_keys.c.caller == caller, idempotency_keys.c.request_id == request_id
            )
        )


# --- calls that reach an external system (payment gateway) -------------------------------
#
# A gateway charge must not be repeated, and must not happen inside a database
# transaction. Such calls claim their key in a transaction of its own first (result
# NULL = "in progress"), then call the gateway, then either complete the key together
# with the money movement, or release it when the payment was declined (nothing is left
# behind, and the same key may be retried). A duplicate arriving while the first is in
# progress gets FAILED_PRECONDITION (IN_PROGRESS) and should retry shortly.


async def claim_for_external_call(
    conn: AsyncConnection, *, caller: str, request_id: str, rpc: str, fingerprint: str
) -> Replay | None:
    """Like :func:`claim`, in a transaction that the caller commits before the external
    call; raises FAILED_PRECONDITION while another call with this key is in progress."""
    return await claim(conn, caller=caller, request_id=request_id, rpc=rpc, fingerprint=fingerprint)


async def release(conn: AsyncConnection, *, caller: str, request_id: str) -> None:
    """Forget an in-progress key whose work produced nothing (e.g. a declined payment)."""
    await conn.execute(
        delete(idempotency_keys).where(
            idempotency_keys.c.caller == caller,
            idempotency_keys.c.request_id == request_id,
            idempotency_keys.c.result.is_(None),
        )
    )


async def reclaim(
    conn: AsyncConnection, *, caller: str, request_id: str, rpc: str, fingerprint: str
) -> None:
    """Claim the key "in progress" again if it is gone, in the transaction that records
    an external call's outcome: the key was released (the outcome looked unknown, or the
    recovery job found no charge) while the charge went through after all. An existing
    key is left as it is."""
    await conn.execute(
        insert(idempotency_keys)
        .values(
            caller=caller,
            request_id=request_id,
            rpc=rpc,
            request_hash=fingerprint,
            expires_at=func.now() + IDEMPOTENCY_TTL,
        )
        .on_conflict_do_nothing()
    )


async def stored_result(
    conn: AsyncConnection, *, caller: str, request_id: str
) -> Mapping[str, Any] | None:
    """The result the key ``(caller, request_id)`` recorded (None: no key, or still in
    progress), whatever request it was for."""
    result = await conn.execute(
        select(idempotency_keys.c.result).where(
            idempotency_keys.c.caller == caller, idempotency_keys.c.request_id == request_id
        )
    )
    value: Mapping[str, Any] | None = result.scalar_one_or_none()
    return value
