"""Audit events and redaction (server/audit/outbox.py): pure unit tests, no servers."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

import pytest

from server.audit.outbox import AuditEvent, redact


def _event(n: int = 0, **changes: Any) -> AuditEvent:
    fields: dict[str, Any] = {
        "actor": "user:12",
        "table_name": "users",
        "action_type": "UPDATE",
        "details": {"user_id": 12, "n": n},
        "rpc": "/gencharge.v1.AuthService/UpdateMe",
        "request_id": f"req-{n}",
    }
    return AuditEvent(**(fields | changes))


class Colour(Enum):
    RED = "red"


def test_redact_secrets_at_any_depth_and_makes_json() -> None:
    when = datetime(2026, 11, 1, 10, 30, tzinfo=UTC)
    uid = UUID("12345678-1234-5678-1234-567812345678")
    details = {
        "password": "hunter2",
        "newPassword": "x",
        "refresh_token": "abc",
        "client_secret": "s",
        "otp": "123456",
        "otpCode": "123456",
        "code": "654321",
        "password_hash": "$argon2id$...",
        "totp_secret": "JBSWY3DP",
        "Authorization": "Bearer x",
        "upi_pin": "1234",
        "cvv": "123",
        "card_number": "4111111111111111",
        "credentials": {"token": {"nested": "deep"}, "name": "ok"},
        "items": [{"pin": "0000", "qty": 2}, b"raw", 3],
        "referral_code": "ASHA100",
        "pincode": "560001",
        "amount": Decimal("199.00"),
        "at": when,
        "id": uid,
        "blob": b"\x00\x01",
        "colour": Colour.RED,
        "tags": ("a", "b"),
        "big": 2**70,
        "nan": float("nan"),
        "a.b": 1,
        "$where": 2,
        7: "int key",
    }
    assert redact(details) == {
        "password": "[REDACTED]",
        "newPassword": "[REDACTED]",
        "refresh_token": "[REDACTED]",
        "client_secret": "[REDACTED]",
        "otp": "[REDACTED]",
        "otpCode": "[REDACTED]",
        "code": "[REDACTED]",
        "password_hash": "[REDACTED]",
        "totp_secret": "[REDACTED]",
        "Authorization": "[REDACTED]",
        "upi_pin": "[REDACTED]",
        "cvv": "[REDACTED]",
        "card_number": "[REDACTED]",
        "credentials": {"token": "[REDACTED]", "name": "ok"},
        "items": [{"pin": "[REDACTED]", "qty": 2}, 3],
        "referral_code": "ASHA100",
        "pincode": "560001",
        "amount": "199.00",
        "at": "2026-11-01T10:30:00+00:00",
        "id": str(uid),
        "colour": "red",
        "tags": ["a", "b"],
        "big": str(2**70),
        "nan": "nan",
        "a_b": 1,
        "_where": 2,
        "7": "int key",
    }


def test_event_rejects_what_the_validator_would() -> None:
    with pytest.raises(ValueError, match="action_type"):
        _event(action_type="TRUNCATE")
    with pytest.raises(ValueError, match="outcome"):
        _event(outcome="maybe")
    with pytest.raises(ValueError, match="actor"):
        _event(actor="")
    naive = _event(occurred_at=datetime(2026, 1, 1, 12, 0))
    assert naive.occurred_at.tzinfo is UTC


# ------------------------------------------------------------------- outbox + relay
