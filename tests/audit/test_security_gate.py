"""server/audit/gate.py: the per-address budget of SECURITY events, on a fake clock."""

from __future__ import annotations

from server.audit.gate import SHARED, SecurityEventGate
from tests.helpers.clock import FakeClock

A = "ipv4:203.0.113.5:1234"
B = "ipv6:[2001:db8::1]:443"


def test_budget_per_address_and_one_summary_per_window() -> None:
    clock = FakeClock()
    gate = SecurityEventGate(budget=3, window=10, clock=clock)
    assert [gate.admit(A, "/x") for _ in range(3)] == [True, True, True]
    assert gate.admit(A, "/x") is False
    assert gate.admit(A, "/y") is False
    assert gate.admit(B, "/x") is True  # another address has its own budget
    assert gate.take_summaries() == []  # the window is still open
    clock.advance(10.5)
    assert gate.admit(A, "/x") is True  # a new window; the old one is summarised
    (summary,) = gate.take_summaries()
    assert summary.action_type == "SECURITY" and summary.outcome == "denied"
    assert summary.peer == A
    assert summary.details["suppressed_events"] == 2
    assert summary.details["rpcs"] == [{"rpc": "/x", "count": 1}, {"rpc": "/y", "count": 1}]
    assert gate.take_summaries() == []  # written once


def test_ended_windows_are_summarised_without_further_calls() -> None:
    clock = FakeClock()
    gate = SecurityEventGate(budget=1, window=5, clock=clock)
    gate.admit(A, "/x")
    gate.admit(A, "/x")
    gate.admit(B, "/x")  # within budget: nothing to summarise
    clock.advance(6)
    (summary,) = gate.take_summaries()
    assert summary.details["suppressed_events"] == 1
    # Closing (server shutdown) summarises windows still open.
    gate.admit(A, "/x")
    gate.admit(A, "/z")
    (closing,) = gate.take_summaries(closing=True)
    assert closing.details["rpcs"] == [{"rpc": "/z", "count": 1}]


def test_tracked_addresses_are_bounded() -> None:
    gate = SecurityEventGate(budget=1, window=60, max_peers=2, clock=FakeClock())
    assert gate.admit("ipv4:10.0.0.1:1", "/x") and gate.admit("ipv4:10.0.0.2:1", "/x")
    # Further addresses share one bucket (and calls without an address use it too).
    assert gate.admit("ipv4:10.0.0.3:1", "/x") is True
    assert gate.admit("ipv4:10.0.0.4:1", "/x") is False
    assert gate.admit(None, "/x") is False
    (summary,) = gate.take_summaries(closing=True)
    assert summary.peer is None and summary.details["suppressed_events"] == 2
    assert SHARED == "shared"


def test_ipv6_addresses_share_their_64() -> None:
    gate = SecurityEventGate(budget=2, window=60, clock=FakeClock())
    assert gate.admit("ipv6:[2001:db8:1:2::1]:1", "/x")
    assert gate.admit("ipv6:[2001:db8:1:2::ffff]:1", "/x")
    assert gate.admit("ipv6:[2001:db8:1:2:abcd::9]:1", "/x") is False  # same /64
    assert gate.admit("ipv6:[2001:db8:1:3::1]:1", "/x") is True  # the next /64


def test_ended_windows_make_room_and_unwritten_summaries_come_back() -> None:
    clock = FakeClock()
    gate = SecurityEventGate(budget=1, window=10, max_peers=1, clock=clock)
    gate.admit("ipv4:10.0.0.1:1", "/x")
    gate.admit("ipv4:10.0.0.1:1", "/x")  # suppressed
    clock.advance(11)
    # The table is full, but its only window has ended: the new address gets its own.
    assert gate.admit("ipv4:10.0.0.2:1", "/x") is True
    assert gate.admit("ipv4:10.0.0.2:1", "/x") is False
    (ended,) = gate.take_summaries()
    assert ended.peer == "ipv4:10.0.0.1:1"
    gate.requeue([ended])  # e.g. the database was down
    assert gate.take_summaries() == [ended]
