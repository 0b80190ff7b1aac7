"""Password hashing with argon2id.

Parameters follow the OWASP Password Storage Cheat Sheet minimum for argon2id
(m=19 MiB, t=2, p=1); we use 19 MiB and t=2. Hashes are self-describing PHC strings,
so parameters can be raised later and old hashes still verify (see needs_rehash).
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def hash_password(password: str) -> str:
    """Return an argon2id PHC string for ``password``."""
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches ``password_hash``; never raises on a bad hash."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _HASHER.check_needs_rehash(password_hash)
