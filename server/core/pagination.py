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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.sql.elements import ColumnElement

from server.core.errors import InvalidArgument

SelectT = TypeVar("SelectT", bound=Select[Any])

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


def time_page(rows: Sequence[Any], page: Page, at: str, key: str) -> tuple[list[Any], str]:
    """This page of ``rows`` (fetched with page.fetch) and the token of the next one,
    keyed on the last row's (``at``, ``key``) columns as :func:`time_keyset` reads it."""
    items, more = split(list(rows), page)
    last = items[-1] if items else None
    position = [getattr(last, at).isoformat(), getattr(last, key)] if last else None
    return items, page.next_token(position, more)


def keyset_query(
    query: SelectT,
    time_column: ColumnElement[Any],
    id_column: ColumnElement[Any],
    after: tuple[datetime, Any] | None,
    limit: int,
    *,
    newest_first: bool,
) -> SelectT:
    """``query`` ordered by (time, id), newest or earliest first, from just past the
    keyset position ``after`` (for queries modules), at most ``limit`` rows."""
    if after is not None:
        at, key = after
        if newest_first:
            beyond = or_(time_column < at, and_(time_column == at, id_column < key))
        else:
            beyond = or_(time_column > at, and_(time_column == at, id_column > key))
        query = query.where(beyond)
    order = (time_column.desc(), id_column.desc()) if newest_first else (time_column, id_column)
    return query.order_by(*order).limit(limit)


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


def position(after: Any, *kinds: type) -> tuple[Any, ...] | None:
    """A keyset position of a token issued by :meth:`Page.next_token` with a list of
    values of these ``kinds`` (``str``, ``int``, ``bool``); INVALID_ARGUMENT
    ``page_token`` for anything else. ``int`` never accepts a bool."""
    if after is None:
        return None
    if not isinstance(after, list) or len(after) != len(kinds):
        raise InvalidArgument.field("page_token", "is not a token this service issued")
    for value, kind in zip(after, kinds, strict=True):
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise InvalidArgument.field("page_token", "is not a token this service issued")
    return tuple(after)


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
