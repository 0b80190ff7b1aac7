"""Personal data in audit details, masked for roles without read on "PersonalData".

E-mail addresses keep their first character and their domain (``a***@example.com``);
phone numbers keep their last four digits and a leading ``+`` (``******7890``). Values
are found by their shape anywhere in a string, at any depth, and by their key: a string
under a key naming an e-mail or a phone (``email``, ``to_phone_number``, ``msisdn``,
...) is masked whatever it looks like.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from server.auth.resources import PERSONAL_DATA

#: The permission resource whose read flag shows personal data unmasked.
PII_RESOURCE: Final = PERSONAL_DATA

_EMAIL: Final = re.compile(
    r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)"
)
#: 10 to 15 digits (E.164 allows 15), not inside a longer run of word characters.
_PHONE: Final = re.compile(r"(?<![\w+])(\+?)(\d{6,11})(\d{4})(?!\w)")
_EMAIL_KEYS: Final = ("email", "e_mail", "mail")
_PHONE_KEYS: Final = ("phone", "mobile", "msisdn")


def mask_email(address: str) -> str:
    """``alice@example.com`` -> ``a***@example.com``; other text: ``***``."""
    local, at, domain = address.partition("@")
    if not at or not local:
        return "***"
    return f"{local[0]}***@{domain}"


def mask_phone(number: str) -> str:
    """``9876543210`` -> ``******3210``, ``+919876543210`` -> ``+*********3210``: every
    digit but the last four starred; short values are starred whole."""
    digits = sum(ch.isdigit() for ch in number)
    keep = 4 if digits >= 8 else 0
    out: list[str] = []
    seen = 0
    for ch in number:
        if ch.isdigit():
            seen += 1
            out.append(ch if seen > digits - keep else "*")
        else:
            out.append(ch)
    return "".join(out)


def mask_text(text: str) -> str:
    """Every e-mail address and phone number in ``text`` masked."""
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    return _PHONE.sub(lambda m: m.group(1) + "*" * len(m.group(2)) + m.group(3), text)


def _kind(key: str) -> str | None:
    lowered = key.lower()
    if any(word in lowered for word in _PHONE_KEYS):
        return "phone"
    if any(word in lowered for word in _EMAIL_KEYS):
        return "email"
    return None


def _mask_value(value: Any, kind: str | None) -> Any:
    if isinstance(value, str):
        masked = mask_text(value)
        if kind == "email" and masked == value and value:
            return mask_email(value)
        if kind == "phone" and masked == value and value:
            return mask_phone(value)
        return masked
    if kind == "phone" and isinstance(value, int) and not isinstance(value, bool):
        return mask_phone(str(value))
    if isinstance(value, Mapping):
        return mask_details(value)
    if isinstance(value, list):
        return [_mask_value(item, kind) for item in value]
    return value


def mask_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of JSON-like ``details`` with personal data masked."""
    return {str(key): _mask_value(value, _kind(str(key))) for key, value in details.items()}
