"""Brute-force protection for Login, Register, VerifyOtp, VerifyMfa, IssueServiceToken,
password resets and the contact codes (VerifyContact, StartContactChange,
ConfirmContactChange, SendContactCode).

State lives in PostgreSQL (``auth_throttle``), so every server process sharing the
database enforces the same limits; each call is one atomic statement (no
read-modify-write races). The policy and its trade-off are in docs/security.md.

Usage around a credential check::

    keys = keys_for("login", account=email, peer=peer_ip(client_peer(context)))
    await throttle.check(keys)          # ResourceExhausted while any key is blocked
    if not password_ok:
        await throttle.failure(keys)
        raise Unauthenticated(...)
    await throttle.success(keys)

Three keys per attempt:

- ``account_peer`` (this account from this peer): 5 failures / 15 min -> 15 min block.
  Stops guessing one account from one place.
- ``peer`` (any account from this peer): 50 failures / 15 min -> 15 min block. Stops
  one place spraying many accounts. Never reset by a success.
- ``account`` (this account from anywhere): 20 failures / 15 min -> a 60 s cool-down.
  Slows distributed guessing; short on purpose so an attacker who knows a victim's
  e-mail can slow the victim down but never lock them out for long.

Blocks expire by time; when a block ends the key starts a fresh window. Nothing needs
an administrator to unlock.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from server.auth import throttle_queries as q
from server.core.db import Database
from server.core.errors import ResourceExhausted
from server.core.peers import peer_bucket

#: Actions with their own counters (a login failure does not count against OTPs).
#: ``register``: sign-ups refused because the e-mail or phone is taken (the answer that
#: would let a caller enumerate accounts); ``contact_code``: wrong contact codes;
#: ``contact_send``: every contact code sent (so nobody's inbox can be flooded);
#: ``contact_form``: every ContentService contact form submitted (server/content).
ACTIONS: Final = frozenset(
    {
        "login",
        "otp",
        "mfa",
        "service_token",
        "password_reset",
        "register",
        "contact_code",
        "contact_send",
        "contact_form",
    }
)

#: Scope names: the keys of a policy mapping.
ACCOUNT_PEER: Final = "account_peer"
PEER: Final = "peer"
ACCOUNT: Final = "account"
SCOPES: Final = (ACCOUNT_PEER, PEER, ACCOUNT)

#: The ``ErrorInfo.reason`` callers see; ``retry_after_seconds`` is in its metadata.
REASON: Final = "TOO_MANY_ATTEMPTS"


@dataclass(frozen=True)
class Limit:
    """``max_failures`` within ``window_seconds`` blocks the key for ``block_seconds``."""

    max_failures: int
    window_seconds: int
    block_seconds: int

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.window_seconds < 1 or self.block_seconds < 1:
            raise ValueError("throttle limits must be positive")


DEFAULT_POLICY: Final[Mapping[str, Limit]] = {
    ACCOUNT_PEER: Limit(max_failures=5, window_seconds=15 * 60, block_seconds=15 * 60),
    PEER: Limit(max_failures=50, window_seconds=15 * 60, block_seconds=15 * 60),
    ACCOUNT: Limit(max_failures=20, window_seconds=15 * 60, block_seconds=60),
}


@dataclass(frozen=True)
class ThrottleKey:
    """One counter: ``key`` is what is stored (hashed; no e-mail, phone or IP)."""

    action: str
    scope: str
    key: str


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def normalise_account(account: str) -> str:
    """The account identifier as counted: trimmed and lower-cased."""
    return account.strip().lower()


def keys_for(action: str, *, account: str | None, peer: str | None) -> list[ThrottleKey]:
    """The counters one attempt touches: (account, peer), (peer) and (account).

    A missing account or peer drops the keys that need it. Identifiers are hashed
    (SHA-256) after normalisation, so the table holds no e-mails, phones or addresses.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown throttle action {action!r}")
    account_id = normalise_account(account) if account else ""
    peer_id = peer_bucket(peer.strip()) if peer and peer.strip() else ""
    keys: list[ThrottleKey] = []
    if account_id and peer_id:
        keys.append(_key(action, ACCOUNT_PEER, _digest("account", account_id, "peer", peer_id)))
    if peer_id:
        keys.append(_key(action, PEER, _digest("peer", peer_id)))
    if account_id:
        keys.append(_key(action, ACCOUNT, _digest("account", account_id)))
    return keys


def _key(action: str, scope: str, digest: str) -> ThrottleKey:
    return ThrottleKey(action=action, scope=scope, key=f"{action}:{scope}:{digest}")


class Throttle:
    """Failure counters per key in PostgreSQL, shared by every server process."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], datetime] = _utc_now,
        policy: Mapping[str, Limit] | None = None,
    ) -> None:
        merged = dict(DEFAULT_POLICY)
        if policy:
            unknown = set(policy) - set(SCOPES)
            if unknown:
                raise ValueError(f"unknown throttle scopes: {sorted(unknown)}")
            merged.update(policy)
        self._db = db
        self._clock = clock
        self.policy: Mapping[str, Limit] = merged

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the throttle clock must return aware datetimes")
        return now

    async def check(self, keys: Sequence[ThrottleKey]) -> None:
        """Raise ``ResourceExhausted`` while any of ``keys`` is blocked.

        The message is generic (it never says which counter tripped);
        ``retry_after_seconds`` in the error metadata says when to try again.
        """
        if not keys:
            return
        now = self._now()
        async with self._db.read_only() as conn:
            block_ends = await q.blocked_until(conn, _unique(keys), now)
        if not block_ends:
            return
        until = max(block_ends)
        retry_after = max(1, math.ceil((until - now).total_seconds()))
        raise ResourceExhausted(
            f"too many attempts; try again in {retry_after} seconds",
            reason=REASON,
            metadata={"retry_after_seconds": str(retry_after)},
        )

    async def failure(self, keys: Sequence[ThrottleKey]) -> None:
        """Count one failed attempt on every key (one atomic statement)."""
        if not keys:
            return
        now = self._now()
        limits = {
            scope: q.ScopeLimit(
                max_failures=limit.max_failures,
                window_expired_at_or_before=now - timedelta(seconds=limit.window_seconds),
                blocked_until_if_tripped=now + timedelta(seconds=limit.block_seconds),
            )
            for scope, limit in self.policy.items()
        }
        scopes = {k.key: k.scope for k in keys}
        rows: list[q.NewRow] = []
        for key in _unique(keys):
            limit = limits[scopes[key]]
            tripped = limit.max_failures <= 1
            rows.append(
                q.NewRow(
                    throttle_key=key,
                    window_start=limit.blocked_until_if_tripped if tripped else now,
                    failures=0 if tripped else 1,
                    blocked_until=limit.blocked_until_if_tripped if tripped else None,
                )
            )
        async with self._db.side_transaction() as conn:
            await q.record_failures(conn, rows, limits, now)

    async def success(self, keys: Sequence[ThrottleKey]) -> None:
        """Clear the (account, peer) and (account) counters after a good credential.

        The peer-wide counter is kept: one success must not license a peer that is
        spraying other accounts. A block in force is never lifted early.
        """
        cleared = [k for k in keys if k.scope != PEER]
        if not cleared:
            return
        now = self._now()
        async with self._db.side_transaction() as conn:
            await q.clear(conn, _unique(cleared), now)


def _unique(keys: Sequence[ThrottleKey]) -> list[str]:
    """Distinct stored keys in a fixed order, so concurrent statements never deadlock."""
    return sorted({k.key for k in keys})


async def purge_expired(db: Database, older_than: timedelta, *, now: datetime | None = None) -> int:
    """Delete counters idle for ``older_than`` that are not blocked; the number deleted.

    ``older_than`` should exceed the longest window so no live count is forgotten.
    """
    at = now or _utc_now()
    async with db.side_transaction() as conn:
        return await q.purge(conn, at - older_than, at)
