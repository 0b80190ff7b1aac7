"""A per-address budget for SECURITY events, so that a flood of denied calls cannot
turn into a flood of database writes.

Every denied or failed call is worth recording, but one client hammering the API with
bad tokens would otherwise make the service write one outbox row (and one MongoDB
document) per call, at the attacker's rate. The gate admits at most ``budget`` events
per client address per ``window`` seconds; the rest are counted, and when the window
ends one summary event records how many were suppressed and for which RPCs. A warning
is logged the moment suppression starts, so an SRE sees the flood as it happens.

The state is per process (each replica has its own budget) and bounded: at most
``max_peers`` addresses are tracked (IPv6 per /64, as the login limits count them);
beyond that, new addresses share one bucket (and one budget), with a warning.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from server.audit.outbox import AuditEvent
from server.core.peers import peer_bucket, peer_ip

log = logging.getLogger(__name__)

#: The bucket of addresses beyond ``max_peers``, and of calls with no address.
SHARED = "shared"
#: How many of the suppressed RPCs a summary names (the most frequent).
SUMMARY_RPCS = 10


@dataclass
class _Window:
    started: float
    started_at: datetime
    peer: str | None
    admitted: int = 0
    suppressed: Counter[str] = field(default_factory=Counter)


def _shown(key: str, peer: str | None) -> str | None:
    """The peer a window's summary names: the call's own peer string, or none for
    the shared bucket."""
    return None if key == SHARED else peer


class SecurityEventGate:
    def __init__(
        self,
        *,
        budget: int,
        window: float,
        max_peers: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget = budget
        self.window = window
        self._max_peers = max_peers
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._pending: list[AuditEvent] = []
        self._overflowing = False

    def _key(self, peer: str | None, now: float) -> str:
        ip = peer_ip(peer) if peer else None
        if ip is None:
            return SHARED
        key = peer_bucket(ip)  # IPv6 per /64: rotating inside one's block does not help
        if key not in self._windows and len(self._windows) >= self._max_peers:
            self._close_ended(now)  # make room from ended windows first
            if len(self._windows) >= self._max_peers:
                if not self._overflowing:
                    log.warning(
                        "too many addresses with security events; the rest share one budget",
                        extra={"tracked": len(self._windows)},
                    )
                self._overflowing = True
                return SHARED
        self._overflowing = False
        return key

    def admit(self, peer: str | None, rpc: str) -> bool:
        """Whether to record this call's SECURITY event (False: counted instead)."""
        now = self._clock()
        key = self._key(peer, now)
        window = self._windows.get(key)
        if window is None or now - window.started >= self.window:
            if window is not None and window.suppressed:
                self._pending.append(self._summary(window))
            window = self._windows[key] = _Window(now, datetime.now(UTC), _shown(key, peer))
        if window.admitted < self.budget:
            window.admitted += 1
            return True
        if not window.suppressed:
            log.warning(
                "security events from one address suppressed for the rest of the window",
                extra={"peer": key, "budget": self.budget, "window_s": self.window},
            )
        window.suppressed[rpc] += 1
        return False

    def _summary(self, window: _Window) -> AuditEvent:
        total = sum(window.suppressed.values())
        return AuditEvent(
            actor="anonymous",
            table_name="AuditLog",
            action_type="SECURITY",
            details={
                "suppressed_events": total,
                "budget": self.budget,
                "window_seconds": self.window,
                "window_started_at": window.started_at.isoformat(),
                "window_ended_at": (window.started_at + timedelta(seconds=self.window)).isoformat(),
                # A list, not a mapping: RPC names contain dots, which MongoDB keys avoid.
                "rpcs": [
                    {"rpc": rpc, "count": count}
                    for rpc, count in window.suppressed.most_common(SUMMARY_RPCS)
                ],
            },
            peer=window.peer,
            outcome="denied",
        )

    def _close_ended(self, now: float, *, closing: bool = False) -> None:
        for key, window in list(self._windows.items()):
            if closing or now - window.started >= self.window:
                if window.suppressed:
                    self._pending.append(self._summary(window))
                del self._windows[key]

    def take_summaries(self, *, closing: bool = False) -> list[AuditEvent]:
        """Summary events of the windows that ended with suppressed events (all
        windows when ``closing``), and forget the ended windows. Hand back the ones
        that could not be written with :meth:`requeue`."""
        self._close_ended(self._clock(), closing=closing)
        out = list(self._pending)
        self._pending.clear()
        return out

    def requeue(self, events: list[AuditEvent]) -> None:
        """Summaries taken but not written (database down, shutdown): written later."""
        self._pending[:0] = events
