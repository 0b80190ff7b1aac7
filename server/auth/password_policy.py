"""Password rules (NIST SP 800-63B style): length, not common, not the account's own
e-mail, phone number or name. No composition rules: long passphrases are welcome.

Passwords are NFKC-normalised (:func:`normalize_password`) before they are checked and
before they are hashed, so the same passphrase typed on different keyboards (full-width
forms, composed or decomposed accents) is the same password. Length counts Unicode
code points of the normalised text.

The common-password list (``common_passwords.txt`` beside this module) holds the 30,000
most frequent passwords from zxcvbn-python's MIT-licensed frequency list; see the
attribution at the top of that file.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources

MIN_LENGTH = 8
MAX_LENGTH = 1024
_LIST_FILE = "common_passwords.txt"

TOO_SHORT = f"Use at least {MIN_LENGTH} characters."
TOO_LONG = f"Use at most {MAX_LENGTH} characters."
ONLY_SPACES = "The password cannot be only spaces."
TOO_COMMON = "This password is too common and easy to guess. Choose a less predictable one."
MATCHES_ACCOUNT = "The password must not be your e-mail address, phone number or name."


def normalize_password(password: str) -> str:
    """NFKC form of ``password``; hash this, never the raw input."""
    return unicodedata.normalize("NFKC", password)


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The common-password list, lowercase (loaded once)."""
    text = resources.files("server.auth").joinpath(_LIST_FILE).read_text(encoding="utf-8")
    return frozenset(
        line.casefold() for line in text.splitlines() if line and not line.startswith("#")
    )


def _context_forms(value: str) -> set[str]:
    """Forms of an account attribute the password must not equal (casefolded)."""
    base = normalize_password(value).strip().casefold()
    if not base:
        return set()
    forms = {base}
    if "@" in base:  # an e-mail's local part alone
        local = base.rsplit("@", 1)[0]
        if local:
            forms.add(local)
    digits = "".join(ch for ch in base if ch.isdigit())
    if len(digits) >= 6 and len(digits) >= len(base) - 4:  # a phone number without +, spaces
        forms.add(digits)
    return forms


def password_problem(password: str, *, context: Sequence[str] = ()) -> str | None:
    """None if ``password`` is acceptable, else a user-facing reason (which never
    repeats the password). ``context``: the account's e-mail, phone number, name."""
    if len(password) > 4 * MAX_LENGTH:  # cheap bound before normalising huge input
        return TOO_LONG
    normalized = normalize_password(password)
    if len(normalized) < MIN_LENGTH:
        return TOO_SHORT
    if len(normalized) > MAX_LENGTH:
        return TOO_LONG
    if not normalized.strip():
        return ONLY_SPACES
    folded = normalized.casefold()
    if folded in common_passwords():
        return TOO_COMMON
    for value in context:
        if value and folded in _context_forms(value):
            return MATCHES_ACCOUNT
    return None
