"""AIP-158 pagination: page sizes and opaque, filter-bound page tokens.

A page token carries the last key of the previous page (keyset pagination: stable
under inserts, no OFFSET scans) and a fingerprint of the request's filters, so a token
replayed with other filters is rejected with INVALID_ARGUMENT instead of silently
returning a wrong page.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


@dataclass(frozen=True)
class Page:
    size: int
    after: Any
    fingerprint: str

    @property
    def fetch(self) -> int:
        """Rows to fetch: one more than the page, to learn whether another page exists."""
        return self.size + 1

    def next_token(self, last_key: Any, has_more: bool) -> str:
        """The token for the page after this one ("" on the last page)."""
        if not has_more:
            return ""
        raw = json.dumps({"a": last_key, "f": self.fingerprint}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def split(rows: list[Any], page: Page) -> tuple[list[Any], bool]:
    """The rows of this page, and whether more exist (rows were fetched with page.fetch)."""
    return rows[: page.size], len(rows) > page.size


def time_keyset(after: Any) -> tuple[datetime, int] | None:
    """The (timestamp, id) position of a newest-first keyset token ([isoformat, id])."""
    if after is None:
        return None
    try:
        at, key = after
        if not isinstance(at, str) or not isinstance(key, int) or isinstance(key, bool):
            raise TypeError
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None:
            raise ValueError
    except (TypeError, ValueError):
        raise InvalidArgument.field("page_token", "is not a token this service issued") from None
    return moment, key


def fingerprint(filters: dict[str, Any]) -> str:
    canonical = json.dumps(filters, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def parse(requested_size: int, token: str, filters: dict[str, Any]) -> Page:
    """Validate ``page_size``/``page_token`` against the request's ``filters``."""
    size = page_size(requested_size)
    fp = fingerprint(filters)
    if not token:
        return Page(size, None, fp)
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
        after, token_fp = data["a"], data["f"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidArgument.field("page_token", "is not a token this service issued") from exc
    if token_fp != fp:
        raise InvalidArgument.field(
            "page_token", "was issued for different filters; start again without a token"
        )
    return Page(size, after, fp)
