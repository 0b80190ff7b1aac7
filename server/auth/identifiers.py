"""Normalising and validating e-mail addresses and phone numbers.

Phone numbers are Indian mobile numbers (the service sells INR recharges). Accepted
forms: ``9876543210``, ``09876543210``, ``919876543210``, ``+91 98765 43210``,
``+91-98765-43210``; stored as the 10-digit national number, as the DDS samples are.

Only ASCII digits count as digits. Python's ``\\d`` and ``str.isdigit`` also match
other scripts' digits (Devanagari ``९२१०...``, Arabic-Indic, full-width), which would
let ``९८७६५४३२१०`` pass as a second, distinct spelling of ``9876543210`` and dodge the
uniqueness of phone numbers; the patterns here are ASCII-only, so such input is
refused. Separators are ASCII too (space, tab, ``-``, ``(``, ``)``, ``.``).
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}")
_SEPARATORS = re.compile(r"[ \t\-().]")
_NATIONAL = re.compile(r"[6-9][0-9]{9}")


def normalize_email(value: str) -> str | None:
    """Lower-cased, trimmed address, or None if it is not a plausible address."""
    email = value.strip().lower()
    if len(email) > 254 or not _EMAIL.fullmatch(email) or ".." in email:
        return None
    return email


def normalize_phone(value: str) -> str | None:
    """The 10-digit national mobile number, or None if it is not one."""
    digits = _SEPARATORS.sub("", value.strip())
    if digits.startswith("+91"):
        digits = digits[3:]
    elif len(digits) == 12 and digits.startswith("91"):
        digits = digits[2:]
    elif len(digits) == 11 and digits.startswith("0"):
        digits = digits[1:]
    return digits if _NATIONAL.fullmatch(digits) else None
