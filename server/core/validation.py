"""Bad input stops here: one check of every request message, by its descriptor, against
the limits of what stores and reads it, before any handler sees it.

The rules follow the field's kind, not its RPC, so a new RPC is covered the day it is
written:

- **ids**: an integer field named ``id``, ``*_id``, ``*_ids`` or ``created_by`` is a row
  id. Every id column behind the API is PostgreSQL ``integer`` (server/core/schema.py
  ``_id_column`` and the foreign keys to it; tests/unit/test_validation.py checks
  this), so an id must fit it: -2**31..2**31-1. A larger one would fail in the
  database ("integer out of range") instead of being NOT_FOUND or refused. Zero and
  negative ids that fit are the domains' to refuse ("must be a positive id"), with
  the request's other violations.
- **timestamps**: a ``google.protobuf.Timestamp`` must be inside the range the type
  defines (0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999999Z, nanos
  0..999,999,999), which is also what Python's ``datetime`` holds; PostgreSQL's
  ``timestamptz`` holds more.
- **strings**: no NUL (PostgreSQL ``text`` cannot hold it) and no other control
  character except tab, line feed and carriage return; at most
  :data:`MAX_STRING_CHARS` characters, or a field's own bound in
  :data:`LONG_STRING_FIELDS`. (UTF-8 validity is checked by the protobuf
  runtime while parsing: proto3 ``string`` fields refuse invalid UTF-8.)
- **field masks**: at most :data:`MAX_MASK_PATHS` paths of at most
  :data:`MAX_PATH_CHARS` characters each (which paths exist is the domain's rule).
- **structs** (free-form JSON, stored as ``jsonb`` or BSON): at most
  :data:`MAX_STRUCT_DEPTH` levels, finite numbers only (JSON has no NaN or Infinity),
  keys and strings as above.

Domain rules (a plan id that exists, a price within bounds, which mask paths are
writable) stay in the domains; this module only guarantees that what reaches them
fits the types they hand to the databases. Violations are INVALID_ARGUMENT with one
field violation per offending field (path like ``plan.benefits.data_mb`` or
``recipient_ids[3]``), at most ``errors.MAX_VIOLATIONS`` (what a status carries), and
never echo the offending value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any, Final

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from server.core.errors import MAX_VIOLATIONS, FieldViolation, InvalidArgument

#: PostgreSQL ``integer``: the type of every id column the API names.
INT4_MIN: Final = -(2**31)
INT4_MAX: Final = 2**31 - 1
#: ``google.protobuf.Timestamp``'s documented range, in seconds since the epoch.
MIN_TIMESTAMP_SECONDS: Final = -62_135_596_800  # 0001-01-01T00:00:00Z
MAX_TIMESTAMP_SECONDS: Final = 253_402_300_799  # 9999-12-31T23:59:59Z
MAX_NANOS: Final = 999_999_999
#: The longest string any request field may carry (names, e-mails, descriptions,
#: tokens...); domains set tighter limits where they have one.
MAX_STRING_CHARS: Final = 4096
#: Request fields whose strings may be longer than MAX_STRING_CHARS, by full field
#: name, with their own bound (for a Struct field: each string in it); their domains
#: check them further (the contact form's message, a content page's body).
LONG_STRING_FIELDS: Final[dict[str, int]] = {
    "gencharge.v1.SubmitContactFormRequest.description": 5000,
    "gencharge.v1.Content.body": 512 * 1024,
}
MAX_MASK_PATHS: Final = 64
MAX_PATH_CHARS: Final = 128
MAX_STRUCT_DEPTH: Final = 16

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_F = FieldDescriptor
_INTEGERS: Final = frozenset(
    {
        _F.TYPE_INT32,
        _F.TYPE_INT64,
        _F.TYPE_UINT32,
        _F.TYPE_UINT64,
        _F.TYPE_SINT32,
        _F.TYPE_SINT64,
        _F.TYPE_FIXED32,
        _F.TYPE_FIXED64,
        _F.TYPE_SFIXED32,
        _F.TYPE_SFIXED64,
    }
)


def is_id_field(field: FieldDescriptor) -> bool:
    """Whether ``field`` holds row ids (by the naming rule in the module docstring)."""
    name = field.name
    return field.type in _INTEGERS and (
        name == "id" or name.endswith(("_id", "_ids")) or name == "created_by"
    )


def check_request(message: Message) -> None:
    """INVALID_ARGUMENT naming every field of ``message`` (nested ones included) that
    breaks a rule of this module; nothing when it keeps them all."""
    violations: list[FieldViolation] = []
    for violation in _walk(message, ""):
        violations.append(violation)
        if len(violations) >= MAX_VIOLATIONS:
            break
    if violations:
        raise InvalidArgument.of(violations)


_ID_RANGE = f"is not a valid id (ids are 1 to {INT4_MAX})"


def _walk(message: Message, prefix: str) -> Iterator[FieldViolation]:
    special = _WELL_KNOWN.get(message.DESCRIPTOR.full_name)
    if special is not None:
        yield from special(message, prefix.rstrip("."))
        return
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            yield from _map(field, value, path)
        elif field.is_repeated:
            for index, item in enumerate(value):
                yield from _value(field, item, f"{path}[{index}]")
        else:
            yield from _value(field, value, path, LONG_STRING_FIELDS.get(field.full_name))


def _map(field: FieldDescriptor, entries: Any, path: str) -> Iterator[FieldViolation]:
    entry = field.message_type
    assert entry is not None  # a map field's entry message
    key_field = entry.fields_by_name["key"]
    value_field = entry.fields_by_name["value"]
    for key in entries:
        where = f"{path}[{_short(key)}]"
        yield from _value(key_field, key, where)
        yield from _value(value_field, entries[key], where)


def _value(
    field: FieldDescriptor, value: Any, path: str, limit: int | None = None
) -> Iterator[FieldViolation]:
    if field.message_type is not None:
        if limit is not None and field.message_type.full_name in _JSON_TYPES:
            yield from _json(value, path, 0, limit)
        else:
            yield from _walk(value, f"{path}.")
    elif field.type == _F.TYPE_STRING:
        yield from _string(value, path, limit or MAX_STRING_CHARS)
    elif is_id_field(field) and not INT4_MIN <= value <= INT4_MAX:
        yield FieldViolation(path, _ID_RANGE)


def _string(value: str, path: str, limit: int = MAX_STRING_CHARS) -> Iterator[FieldViolation]:
    if len(value) > limit:
        yield FieldViolation(path, f"must be at most {limit} characters")
    elif (found := _CONTROL.search(value)) is not None:
        yield FieldViolation(
            path, f"must not contain control characters (U+{ord(found.group()):04X})"
        )


def _timestamp(message: Message, path: str) -> Iterator[FieldViolation]:
    seconds: int = message.seconds  # type: ignore[attr-defined]
    nanos: int = message.nanos  # type: ignore[attr-defined]
    if not MIN_TIMESTAMP_SECONDS <= seconds <= MAX_TIMESTAMP_SECONDS:
        yield FieldViolation(path, "must be between 0001-01-01 and 9999-12-31 (UTC)")
    elif not 0 <= nanos <= MAX_NANOS:
        yield FieldViolation(path, f"nanos must be between 0 and {MAX_NANOS}")


def _field_mask(message: Message, path: str) -> Iterator[FieldViolation]:
    paths: list[str] = list(message.paths)  # type: ignore[attr-defined]
    if len(paths) > MAX_MASK_PATHS:
        yield FieldViolation(path, f"may name at most {MAX_MASK_PATHS} paths")
        return
    for index, item in enumerate(paths):
        if len(item) > MAX_PATH_CHARS:
            yield FieldViolation(
                f"{path}.paths[{index}]", f"must be at most {MAX_PATH_CHARS} characters"
            )
        else:
            yield from _string(item, f"{path}.paths[{index}]")


def _struct(message: Message, path: str) -> Iterator[FieldViolation]:
    yield from _json(message, path, 0)


def _json(
    message: Message, path: str, depth: int, limit: int = MAX_STRING_CHARS
) -> Iterator[FieldViolation]:
    """A Struct, Value or ListValue: bounded depth, strings (and keys) as above (string
    values at most ``limit`` characters)."""
    if depth > MAX_STRUCT_DEPTH:
        yield FieldViolation(path, f"nests deeper than {MAX_STRUCT_DEPTH} levels")
        return
    name = message.DESCRIPTOR.full_name
    if name == "google.protobuf.Struct":
        for key, value in message.fields.items():  # type: ignore[attr-defined]
            where = f"{path}[{_short(key)}]"
            yield from _string(key, where)
            yield from _json(value, where, depth + 1, limit)
    elif name == "google.protobuf.ListValue":
        for index, value in enumerate(message.values):  # type: ignore[attr-defined]
            yield from _json(value, f"{path}[{index}]", depth + 1, limit)
    else:  # google.protobuf.Value
        kind = message.WhichOneof("kind")
        if kind == "string_value":
            yield from _string(message.string_value, path, limit)  # type: ignore[attr-defined]
        elif kind == "number_value" and not math.isfinite(message.number_value):  # type: ignore[attr-defined]
            yield FieldViolation(path, "must be a finite number (JSON has no NaN or Infinity)")
        elif kind in ("struct_value", "list_value"):
            yield from _json(getattr(message, kind), path, depth + 1, limit)


def _short(key: object) -> str:
    """A map key or struct key as shown in a field path: never long, never raw."""
    text = str(key)
    text = _CONTROL.sub("?", text)
    return text if len(text) <= 32 else text[:32] + "..."


_JSON_TYPES: Final = frozenset(
    {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}
)

_WELL_KNOWN = {
    "google.protobuf.Timestamp": _timestamp,
    "google.protobuf.FieldMask": _field_mask,
    "google.protobuf.Struct": _struct,
    "google.protobuf.Value": _struct,
    "google.protobuf.ListValue": _struct,
}
