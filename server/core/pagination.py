"""AIP-158 pagination: page sizes and opaque, filter-bound page tokens.

A page token carries the last key of the previous page (keyset pagination: stable
under inserts, no OFFSET scans) and a fingerprint of the request's filters, so a token
replayed with other filters is rejected with INVALID_ARGUMENT instead of silently
returning a wrong page.

Tokens are signed (HMAC-SHA256, truncated to 128 bits) with a key the server derives
from its data-encryption key at start-up (:func:`use_signing_key`; every worker and
replica sharing that key accepts the others' tokens). A token the service did not
issue, or one altered by a byte, is INVALID_ARGUMENT before anything in it is read, so
a forged keyset value never reaches a query; the keyset readers check their values
all the same.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.sql.elements import ColumnElement

from server.core.errors import InvalidArgument
from server.core.validation import INT4_MAX

SelectT = TypeVar("SelectT", bound=Select[Any])

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
#: The HKDF label of the token-signing key (server/core/crypto.py ``derive_key``).
SIGNING_KEY_LABEL = b"gencharge/page-token/v1"
#: Longer tokens were not issued here: refused before any decoding.
MAX_TOKEN_CHARS = 1024
_TAG_BYTES = 16
_NOT_OURS = "is not a token this service issued"


class _Signer:
    """The process's token key: random until the server sets the derived one."""

    key = secrets.token_bytes(32)

    @classmethod
    def tag(cls, payload: bytes) -> bytes:
        return hmac.new(cls.key, payload, hashlib.sha256).digest()[:_TAG_BYTES]


def use_signing_key(key: bytes) -> None:
    """Sign and verify page tokens with ``key`` (at least 32 bytes) from now on."""
    if len(key) < 32:
        raise ValueError("a page-token key must be at least 32 bytes")
    _Signer.key = key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode((text + "=" * (-len(text) % 4)).encode("ascii"))


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
        payload = raw.encode()
        return f"{_b64(payload)}.{_b64(_Signer.tag(payload))}"


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


def _row_id(key: Any) -> int:
    if not isinstance(key, int) or isinstance(key, bool) or not 0 < key <= INT4_MAX:
        raise TypeError
    return key


def id_keyset(after: Any) -> int | None:
    """The id position of an id-ordered keyset token (an ``integer`` row id)."""
    if after is None:
        return None
    try:
        return _row_id(after)
    except TypeError:
        raise InvalidArgument.field("page_token", _NOT_OURS) from None


def time_keyset(after: Any) -> tuple[datetime, int] | None:
    """The (timestamp, id) position of a newest-first keyset token ([isoformat, id])."""
    if after is None:
        return None
    try:
        at, key = after
        if not isinstance(at, str):
            raise TypeError
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None:
            raise ValueError
        return moment, _row_id(key)
    except (TypeError, ValueError):
        raise InvalidArgument.field("page_token", _NOT_OURS) from None


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
        if len(token) > MAX_TOKEN_CHARS:
            raise ValueError("too long")
        body, tag = token.split(".")
        payload = _unb64(body)
        if not hmac.compare_digest(_unb64(tag), _Signer.tag(payload)):
            raise ValueError("bad signature")
        data = json.loads(payload.decode())
        after, token_fp = data["a"], data["f"]
    except (ValueError, KeyError, TypeError, UnicodeError) as exc:
        raise InvalidArgument.field("page_token", _NOT_OURS) from exc
    if token_fp != fp:
        raise InvalidArgument.field(
            "page_token", "was issued for different filters; start again without a token"
        )
    return Page(size, after, fp)
