"""Audit events and the PostgreSQL outbox they are written to.

An event is written with :func:`record` on the connection of the transaction that makes
the change, so the event exists if and only if the change commits. Calls that were
denied or failed have no business transaction left (it rolled back); their security
events are written with :func:`record_standalone` in a short transaction of their own.
:class:`server.audit.relay.AuditRelay` ships the outbox to MongoDB ``AuditLog``.

Details never carry secrets: :func:`redact` replaces the values of secret-looking keys
and turns the rest into plain JSON (stored as JSONB, then as BSON in MongoDB).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any, Final
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.audit import queries

ACTION_TYPES: Final = ("INSERT", "UPDATE", "DELETE", "SECURITY")
OUTCOMES: Final = ("ok", "denied", "failed")
REDACTED: Final = "[REDACTED]"
TRUNCATED: Final = "[TRUNCATED]"

#: A key containing one of these anywhere (case-insensitive) is secret.
_SECRET_SUBSTRINGS: Final = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "authorization",
    "totp",
    "cardnumber",
    "card_number",
    "api_key",
    "apikey",
    "private_key",
)
#: A key with one of these as a whole word (``otp_code``, ``otpCode``, ``pin``,
#: ``password_hash``) is secret; as words they do not hit ``pincode`` or ``hashtag``.
_SECRET_WORDS: Final = frozenset({"otp", "code", "hash", "hashed", "pin", "cvv", "cvc"})
#: Well-known keys that contain a secret word but are not secrets.
_NOT_SECRET: Final = frozenset(
    {
        "referral_code",
        "country_code",
        "currency_code",
        "status_code",
        "error_code",
        "reason_code",
        "promo_code",
        "offer_code",
    }
)
_WORD_SPLIT: Final = re.compile(r"[^a-z0-9]+")
_CAMEL: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_MAX_DEPTH: Final = 32
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class AuditEvent:
    """One audited action.

    ``actor`` is who acted: ``"user:12"``, ``"admin:1"``, ``"service:<client_id>"``,
    ``"system:scheduler"`` (background jobs) or ``"anonymous"``. ``action_type`` is
    INSERT, UPDATE or DELETE for a change to ``table_name``, SECURITY for a denied or
    failed call. ``outcome`` is ok, denied or failed. ``details`` are redacted when the
    event is recorded.
    """

    actor: str
    table_name: str
    action_type: str
    details: Mapping[str, Any]
    rpc: str = ""
    request_id: str = ""
    outcome: str = "ok"
    peer: str | None = None
    occurred_at: datetime = field(default_factory=_utc_now)
    #: The customer the event is about; None: derived (:func:`customer_of`).
    customer_id: int | None = None

    def __post_init__(self) -> None:
        # Checked here, not in MongoDB: an event the AuditLog validator rejects would
        # stay in the outbox and hold the relay up, so it must never be written.
        if not self.actor:
            raise ValueError("audit event needs an actor")
        if not self.table_name:
            raise ValueError("audit event needs a table_name")
        if self.action_type not in ACTION_TYPES:
            raise ValueError(f"audit action_type must be one of {ACTION_TYPES}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"audit outcome must be one of {OUTCOMES}")
        if self.occurred_at.tzinfo is None:
            object.__setattr__(self, "occurred_at", self.occurred_at.replace(tzinfo=UTC))
        if self.customer_id is None:
            object.__setattr__(self, "customer_id", customer_of(self.actor, self.details))

    def to_json(self) -> dict[str, Any]:
        """The outbox row's ``event`` (JSON), details redacted."""
        return {
            "actor": self.actor,
            "table_name": self.table_name,
            "action_type": self.action_type,
            "details": redact(self.details),
            "rpc": self.rpc,
            "request_id": self.request_id,
            "outcome": self.outcome,
            "peer": self.peer,
            "occurred_at": self.occurred_at.astimezone(UTC).isoformat(),
            "customer_id": self.customer_id,
        }


def _customer_number(value: Any) -> int | None:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _INT64_MAX:
        return value
    return None


def customer_of(actor: str, details: Mapping[str, Any]) -> int | None:
    """The customer an event is about, for ``ListAuditLogs`` by customer: the
    ``user_id`` its details name (an admin's refund, block or export of that customer,
    a job's change to their plan), else the acting customer (``actor`` ``user:<id>``),
    else None (an event about no customer: an admin's catalogue change)."""
    named = _customer_number(details.get("user_id")) if isinstance(details, Mapping) else None
    if named is not None:
        return named
    kind, _, ident = actor.partition(":")
    return _customer_number(ident) if kind == "user" else None


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """Whether a details key names a secret (its value is then redacted). Remembered per
    key: the keys are few (the code's own), and every audited call asks again."""
    words = [w for w in _WORD_SPLIT.split(_CAMEL.sub("_", key).lower()) if w]
    if "_".join(words) in _NOT_SECRET:
        return False
    lowered = key.lower()
    if any(marker in lowered for marker in _SECRET_SUBSTRINGS):
        return True
    return any(word in _SECRET_WORDS for word in words)


_DROP = object()


def _safe_key(key: object) -> str:
    # MongoDB field names must not start with "$" nor contain "." in every operation.
    text = str(key).replace(".", "_")
    return "_" + text[1:] if text.startswith("$") else text


def _json_safe(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if _INT64_MIN <= value <= _INT64_MAX else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Enum):
        return _json_safe(value.value, depth)
    if isinstance(value, bytes | bytearray | memoryview):
        return _DROP
    if depth >= _MAX_DEPTH:
        return TRUNCATED
    if isinstance(value, Mapping):
        return _redact_mapping(value, depth + 1)
    if isinstance(value, list | tuple | set | frozenset):
        items = (_json_safe(item, depth + 1) for item in value)
        return [item for item in items if item is not _DROP]
    return str(value)


def _redact_mapping(details: Mapping[Any, Any], depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for raw_key, value in details.items():
        key = _safe_key(raw_key)
        if is_secret_key(key):
            out[key] = REDACTED
            continue
        safe = _json_safe(value, depth)
        if safe is not _DROP:
            out[key] = safe
    return out


def redact(details: Mapping[Any, Any]) -> dict[str, Any]:
    """A JSON-safe copy of ``details`` without secrets.

    - The value of every secret-looking key (password, secret, token, otp, code, hash,
      totp, authorization, pin, cvv, card_number, ...), at any depth, becomes
      ``"[REDACTED]"``, whatever it was (a nested object too). Well-known harmless
      codes (``referral_code``, ``country_code``, ``currency_code``, ``status_code``,
      ``error_code``, ...) are kept.
    - Decimal -> str, datetime/date/time -> ISO 8601, UUID -> str, Enum -> its value,
      tuples and sets -> lists, ints beyond int64 and non-finite floats -> str, other
      objects -> ``str()``; bytes are dropped (keys and list items alike).
    - Keys become strings; ``.`` in a key becomes ``_`` and a leading ``$`` becomes
      ``_`` (MongoDB field names). Nesting deeper than 32 levels is cut.
    """
    return _redact_mapping(details, 0)


async def record(conn: AsyncConnection, event: AuditEvent) -> None:
    """Write ``event`` (redacted) into the outbox in the caller's transaction."""
    await queries.insert_event(conn, event.to_json())


async def record_standalone(engine: AsyncEngine, event: AuditEvent) -> None:
    """Write ``event`` in a short transaction of its own (denied or failed calls)."""
    async with engine.begin() as conn:
        await queries.insert_event(conn, event.to_json())
