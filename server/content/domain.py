"""ContentService rules: content items (MongoDB ``Content``) and the contact form
(MongoDB ``ContactForm``). No grpc here.

Each function takes the MongoDB database as ``mongo=``. A change names its audit event
with :func:`~server.audit.scope.audit_change`; the servicer runs it inside a
PostgreSQL transaction (``Database.transaction()``) so the event is written to the
outbox just after the MongoDB write and committed with it: a failed MongoDB write
leaves no event (the call's SECURITY "failed" event instead). MongoDB and PostgreSQL
share no transaction, so one gap remains: PostgreSQL failing at that very commit
leaves the MongoDB change without its event (the caller then sees the error).

Times are stored at millisecond precision (what BSON dates hold), so what a call
returns is what a later read returns.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from bson import ObjectId

from server.audit.scope import audit_change
from server.auth.identifiers import normalize_email
from server.auth.principal import Principal
from server.content import queries
from server.content.queries import Mongo
from server.core import pagination
from server.core.errors import FieldViolation, InvalidArgument, NotFound
from server.core.pagination import Page

MAX_TITLE: Final = 200
#: A body as compact JSON (UTF-8); a long policy page fits several times over.
MAX_BODY_BYTES: Final = 512 * 1024
#: A ListContent page stops early (with a next-page token) before its bodies pass
#: this, so a page always fits a response (GENCHARGE_MAX_MESSAGE_BYTES, 4 MiB).
MAX_PAGE_BODY_BYTES: Final = 2 * 1024 * 1024
MAX_NAME: Final = 100
MAX_DESCRIPTION: Final = 5000
#: Attempts at a fresh content id when the counter fell behind the stored ids.
_ID_ATTEMPTS: Final = 3

NEW: Final = "new"
IN_PROGRESS: Final = "in_progress"
RESOLVED: Final = "resolved"
CONTACT_FORM_STATUSES: Final = (NEW, IN_PROGRESS, RESOLVED)

#: UpdateContent's writable paths, and the output-only ones.
CONTENT_PATHS: Final = ("content_type_id", "title", "body")
CONTENT_OUTPUT_ONLY: Final = frozenset(
    {"content_id", "content_type_name", "created_by", "updated_at"}
)

#: Any control character (C0, DEL, C1): refused in single-line fields.
_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f]")
#: In a message body: tab, line feed and carriage return are text.
_CONTROL_IN_TEXT: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_OBJECT_ID: Final = re.compile("[0-9a-f]{24}")


@dataclass(frozen=True)
class ContentItem:
    content_id: int
    content_type_id: int
    content_type_name: str
    title: str
    body: Mapping[str, Any]
    created_by: int | None
    updated_at: datetime | None
    #: The body's size as compact UTF-8 JSON (what caches and pages are weighed by).
    body_bytes: int = 0


@dataclass(frozen=True)
class ContentDraft:
    """The writable fields of a request's Content (``content_type_id`` 0: not given)."""

    content_type_id: int
    title: str
    body: Mapping[str, Any]


@dataclass(frozen=True)
class ContactFormEntry:
    contact_form_id: str
    name: str
    email: str
    description: str
    status: str
    created_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True)
class ContactFormIn:
    name: str
    email: str
    description: str


def to_millis(moment: datetime) -> datetime:
    """``moment`` cut to whole milliseconds (BSON date precision)."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


# ------------------------------------------------------------------------ content


def json_bytes(value: Any) -> int:
    """Size of ``value`` as compact JSON in UTF-8."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode())


def _content_item(doc: Mapping[str, Any], type_name: str) -> ContentItem:
    body = doc.get("body")
    body = body if isinstance(body, Mapping) else {}
    created_by = doc.get("created_by")
    return ContentItem(
        content_id=int(doc["content_id"]),
        content_type_id=int(doc.get("content_type_id") or 0),
        content_type_name=type_name,
        title=str(doc.get("title") or ""),
        body=body,
        created_by=created_by if isinstance(created_by, int) else None,
        updated_at=doc.get("updated_at") if isinstance(doc.get("updated_at"), datetime) else None,
        body_bytes=json_bytes(body),
    )


def _content_not_found(content_id: int) -> NotFound:
    return NotFound(
        f"content {content_id} not found",
        reason="CONTENT_NOT_FOUND",
        metadata={"content_id": str(content_id)},
    )


def _check_id(field: str, value: int) -> None:
    if value <= 0:
        raise InvalidArgument.field(field, "must be a positive id")


def content_filter(content_type_id: int) -> int | None:
    """ListContent's type filter: 0 is every type; a negative id is refused."""
    if content_type_id < 0:
        raise InvalidArgument.field("content_type_id", "must be a positive id, or 0 for all")
    return content_type_id or None


async def list_content(
    content_type_id: int | None, page: Page, *, mongo: Mongo
) -> tuple[list[ContentItem], str]:
    """One page of content, most recently updated first, and the next page's token."""
    after = pagination.time_keyset(page.after)
    docs = await queries.content_page(mongo, content_type_id, after, page.fetch)
    names = await queries.content_type_names(mongo) if docs else {}
    items = [
        _content_item(doc, names.get(int(doc.get("content_type_id") or 0), ""))
        for doc in docs
        if isinstance(doc.get("content_id"), int) and isinstance(doc.get("updated_at"), datetime)
    ]
    # Large bodies: end the page early (never before its first item); the token
    # continues after the last item returned.
    total = 0
    for index, item in enumerate(items[: page.size]):
        total += item.body_bytes
        if index and total > MAX_PAGE_BODY_BYTES:
            kept = items[:index]
            last = kept[-1]
            assert last.updated_at is not None
            position = [last.updated_at.isoformat(), last.content_id]
            return kept, page.next_token(position, True)
    return pagination.time_page(items, page, "updated_at", "content_id")


async def find_content(content_id: int, *, mongo: Mongo) -> ContentItem | None:
    """The item, or None (a read the cache may keep, misses included)."""
    if content_id <= 0:
        return None
    doc = await queries.find_content(mongo, content_id)
    if doc is None:
        return None
    name = await queries.content_type_name(mongo, int(doc.get("content_type_id") or 0))
    return _content_item(doc, name or "")


def check_content_id(content_id: int) -> None:
    _check_id("content_id", content_id)


def require_content(content_id: int, item: ContentItem | None) -> ContentItem:
    if item is None:
        raise _content_not_found(content_id)
    return item


def _title(value: str, path: str, violations: list[FieldViolation]) -> str:
    title = value.strip()
    if not title:
        violations.append(FieldViolation(path, "required"))
    elif len(title) > MAX_TITLE:
        violations.append(FieldViolation(path, f"must be at most {MAX_TITLE} characters"))
    elif _CONTROL.search(title):
        violations.append(FieldViolation(path, "must not contain control characters"))
    return title


def _bad_key(value: Any) -> bool:
    """Whether a body (nested) has a key MongoDB does not store as plain data."""
    if isinstance(value, Mapping):
        return any(
            not key or key.startswith("$") or "." in key or _bad_key(item)
            for key, item in value.items()
        )
    if isinstance(value, list):
        return any(_bad_key(item) for item in value)
    return False


def _body(value: Mapping[str, Any], path: str, violations: list[FieldViolation]) -> None:
    if _bad_key(value):
        violations.append(
            FieldViolation(path, "keys must be non-empty and must not start with $ or contain .")
        )
    elif json_bytes(value) > MAX_BODY_BYTES:
        violations.append(FieldViolation(path, f"must be at most {MAX_BODY_BYTES} bytes as JSON"))


async def _type_name(content_type_id: int, *, mongo: Mongo) -> str:
    name = await queries.content_type_name(mongo, content_type_id)
    if name is None:
        raise NotFound(
            f"content type {content_type_id} not found",
            reason="CONTENT_TYPE_NOT_FOUND",
            metadata={"content_type_id": str(content_type_id)},
        )
    return name


async def create_content(
    draft: ContentDraft, who: Principal, now: datetime, *, mongo: Mongo
) -> ContentItem:
    """A new item with a fresh ``content_id``, ``created_by`` the calling admin."""
    violations: list[FieldViolation] = []
    if draft.content_type_id <= 0:
        violations.append(FieldViolation("content.content_type_id", "must be a positive id"))
    title = _title(draft.title, "content.title", violations)
    _body(draft.body, "content.body", violations)
    if violations:
        raise InvalidArgument.of(violations)
    type_name = await _type_name(draft.content_type_id, mongo=mongo)
    doc: dict[str, Any] = {
        "content_type_id": draft.content_type_id,
        "title": title,
        "body": dict(draft.body),
        "created_by": who.numeric_id if who.kind == "admin" else None,
        "updated_at": to_millis(now),
    }
    for attempt in range(_ID_ATTEMPTS):
        if attempt:
            await queries.raise_content_counter(mongo)
        doc["content_id"] = await queries.next_content_id(mongo)
        if await queries.insert_content(mongo, doc):
            break
    else:
        raise RuntimeError("no free content id after raising the counter")
    item = _content_item(doc, type_name)
    audit_change(
        "Content",
        "INSERT",
        {"content_id": item.content_id, "content_type_id": item.content_type_id},
    )
    return item


def content_mask(paths: Iterable[str]) -> list[str]:
    """The writable paths of an update mask; INVALID_ARGUMENT ``update_mask`` for an
    empty mask, an unknown path or an output-only one."""
    given = list(paths)
    violations: list[FieldViolation] = []
    if not given:
        violations.append(FieldViolation("update_mask", "name at least one field to update"))
    for path in given:
        if path in CONTENT_OUTPUT_ONLY:
            violations.append(FieldViolation("update_mask", f"{path!r} is output only"))
        elif path not in CONTENT_PATHS:
            violations.append(FieldViolation("update_mask", f"unknown field path {path!r}"))
    if violations:
        raise InvalidArgument.of(violations)
    return [path for path in CONTENT_PATHS if path in given]


async def update_content(
    content_id: int,
    draft: ContentDraft,
    paths: Collection[str],
    now: datetime,
    *,
    mongo: Mongo,
) -> ContentItem:
    """Change the fields ``paths`` names (see :func:`content_mask`); ``updated_at`` now."""
    violations: list[FieldViolation] = []
    if content_id <= 0:
        violations.append(FieldViolation("content.content_id", "must be a positive id"))
    try:
        chosen = content_mask(paths)
    except InvalidArgument as exc:
        violations.extend(exc.violations)
        chosen = []
    changes: dict[str, Any] = {}
    if "content_type_id" in chosen:
        if draft.content_type_id <= 0:
            violations.append(FieldViolation("content.content_type_id", "must be a positive id"))
        changes["content_type_id"] = draft.content_type_id
    if "title" in chosen:
        changes["title"] = _title(draft.title, "content.title", violations)
    if "body" in chosen:
        _body(draft.body, "content.body", violations)
        changes["body"] = dict(draft.body)
    if violations:
        raise InvalidArgument.of(violations)
    if "content_type_id" in changes:
        await _type_name(draft.content_type_id, mongo=mongo)
    changes["updated_at"] = to_millis(now)
    doc = await queries.update_content(mongo, content_id, changes)
    if doc is None:
        raise _content_not_found(content_id)
    name = await queries.content_type_name(mongo, int(doc.get("content_type_id") or 0))
    audit_change("Content", "UPDATE", {"content_id": content_id, "fields": chosen})
    return _content_item(doc, name or "")


async def delete_content(content_id: int, *, mongo: Mongo) -> None:
    _check_id("content_id", content_id)
    doc = await queries.delete_content(mongo, content_id)
    if doc is None:
        raise _content_not_found(content_id)
    audit_change(
        "Content",
        "DELETE",
        {"content_id": content_id, "content_type_id": doc.get("content_type_id")},
    )


# ------------------------------------------------------------------ contact forms


def check_contact_form(form: ContactFormIn) -> ContactFormIn:
    """The submission as stored (trimmed; e-mail lower-cased), or INVALID_ARGUMENT with
    one violation per bad field. Descriptions never echo the value."""
    violations: list[FieldViolation] = []
    name = form.name.strip()
    if not name:
        violations.append(FieldViolation("name", "required"))
    elif len(name) > MAX_NAME:
        violations.append(FieldViolation("name", f"must be at most {MAX_NAME} characters"))
    elif _CONTROL.search(name):
        violations.append(FieldViolation("name", "must not contain control characters"))
    email = normalize_email(form.email) if not _CONTROL.search(form.email) else None
    if email is None:
        violations.append(FieldViolation("email", "must be a valid e-mail address"))
    description = form.description.strip()
    if not description:
        violations.append(FieldViolation("description", "required"))
    elif len(description) > MAX_DESCRIPTION:
        violations.append(
            FieldViolation("description", f"must be at most {MAX_DESCRIPTION} characters")
        )
    elif _CONTROL_IN_TEXT.search(description):
        violations.append(
            FieldViolation(
                "description", "must not contain control characters (tab and new lines are fine)"
            )
        )
    if violations:
        raise InvalidArgument.of(violations)
    assert email is not None
    return ContactFormIn(name=name, email=email, description=description)


def _contact_form(doc: Mapping[str, Any]) -> ContactFormEntry:
    created = doc.get("created_at")
    updated = doc.get("updated_at")
    status = doc.get("status")
    return ContactFormEntry(
        contact_form_id=str(doc["_id"]),
        name=str(doc.get("name") or ""),
        email=str(doc.get("email") or ""),
        description=str(doc.get("description") or ""),
        status=status if status in CONTACT_FORM_STATUSES else NEW,
        created_at=created if isinstance(created, datetime) else None,
        updated_at=updated if isinstance(updated, datetime) else created,
    )


async def submit_contact_form(
    form: ContactFormIn, now: datetime, *, mongo: Mongo
) -> ContactFormEntry:
    """Store a checked submission (:func:`check_contact_form`) as ``new``. The audit
    event names the submission only: no name, e-mail or message."""
    oid = ObjectId()
    at = to_millis(now)
    doc = {
        "_id": oid,
        "id": str(oid),
        "name": form.name,
        "email": form.email,
        "description": form.description,
        "status": NEW,
        "created_at": at,
        "updated_at": at,
    }
    await queries.insert_contact_form(mongo, doc)
    audit_change("ContactForm", "INSERT", {"contact_form_id": str(oid)})
    return _contact_form(doc)


def _page_position(after: Any) -> tuple[datetime, ObjectId] | None:
    position = pagination.position(after, str, str)
    if position is None:
        return None
    at_text, id_text = position
    try:
        at = datetime.fromisoformat(at_text)
        if at.tzinfo is None or not _OBJECT_ID.fullmatch(id_text):
            raise ValueError
    except ValueError:
        raise InvalidArgument.field("page_token", "is not a token this service issued") from None
    return at, ObjectId(id_text)


async def list_contact_forms(
    status: str | None, page: Page, *, mongo: Mongo
) -> tuple[list[ContactFormEntry], str]:
    """One page of submissions, newest first, and the next page's token."""
    docs = await queries.contact_form_page(mongo, status, _page_position(page.after), page.fetch)
    entries = [
        _contact_form(doc)
        for doc in docs
        if isinstance(doc.get("_id"), ObjectId) and isinstance(doc.get("created_at"), datetime)
    ]
    items, more = pagination.split(entries, page)
    last = items[-1] if items else None
    position = (
        [last.created_at.isoformat(), last.contact_form_id]
        if last is not None and last.created_at is not None
        else None
    )
    return items, page.next_token(position, more)


#: UpdateContactForm's writable paths, and the output-only ones.
CONTACT_FORM_PATHS: Final = ("status",)
CONTACT_FORM_OUTPUT_ONLY: Final = frozenset(
    {"contact_form_id", "name", "email", "description", "created_at", "updated_at"}
)


async def update_contact_form(
    contact_form_id: str,
    status: str | None,
    paths: Iterable[str],
    now: datetime,
    *,
    mongo: Mongo,
) -> ContactFormEntry:
    """Move a submission to ``status`` (one of :data:`CONTACT_FORM_STATUSES`; None: the
    request's status was unset or unknown), the one path an update mask may name."""
    violations: list[FieldViolation] = []
    text = contact_form_id.lower()
    if not _OBJECT_ID.fullmatch(text):
        violations.append(
            FieldViolation(
                "contact_form.contact_form_id",
                "must be a contact form id (24 hexadecimal digits)",
            )
        )
    given = list(paths)
    if not given:
        violations.append(FieldViolation("update_mask", "name at least one field to update"))
    for path in given:
        if path in CONTACT_FORM_OUTPUT_ONLY:
            violations.append(
                FieldViolation("update_mask", f"{path!r} cannot be changed (submitted data)")
            )
        elif path not in CONTACT_FORM_PATHS:
            violations.append(FieldViolation("update_mask", f"unknown field path {path!r}"))
    if "status" in given and status is None:
        violations.append(
            FieldViolation("contact_form.status", "must be NEW, IN_PROGRESS or RESOLVED")
        )
    if violations:
        raise InvalidArgument.of(violations)
    assert status is not None
    oid = ObjectId(text)
    doc, changed = await queries.set_contact_form_status(mongo, oid, status, to_millis(now))
    if doc is None:
        raise NotFound(
            f"contact form {oid} not found",
            reason="CONTACT_FORM_NOT_FOUND",
            metadata={"contact_form_id": str(oid)},
        )
    details: dict[str, Any] = {"contact_form_id": str(oid), "status": status}
    if changed:
        details["previous_status"] = doc.get("previous_status") or NEW
    audit_change("ContactForm", "UPDATE", details)
    return _contact_form(doc)


def _addresses(emails: Iterable[str | None]) -> list[str]:
    """The addresses as submissions store them (trimmed, lower-case), once each."""
    return sorted({e.strip().lower() for e in emails if e and e.strip()})


async def contact_forms_from(
    emails: Iterable[str | None], *, mongo: Mongo
) -> list[ContactFormEntry]:
    """A customer's submissions, found by their e-mail addresses (a data export), newest
    first. The contact form needs no login, so an address is all that links them."""
    addresses = _addresses(emails)
    if not addresses:
        return []
    return [_contact_form(doc) for doc in await queries.contact_forms_from(mongo, addresses)]


async def erase_contact_forms_from(emails: Iterable[str | None], *, mongo: Mongo) -> int:
    """Delete a customer's submissions (an erasure on request); how many. The caller's
    audit event records the count (never the addresses)."""
    addresses = _addresses(emails)
    return await queries.delete_contact_forms_from(mongo, addresses) if addresses else 0
