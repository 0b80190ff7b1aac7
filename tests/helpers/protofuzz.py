"""Hypothesis strategies for protobuf messages, built from their descriptors.

``messages(descriptor)`` draws a message of that type with every field kind the
contract uses: integers at and beyond the edges of int32/int64 and of PostgreSQL's
``integer`` column, small ids that hit real rows, floats with NaN and infinities,
strings with NUL, control and non-BMP characters (and occasionally long ones), random
enum numbers (defined or not: proto3 enums are open), nested messages to a bounded
depth, repeated and map fields, oneofs (at most one member set) and proto3
``optional`` fields. Well-known types get their own edges: ``Timestamp`` seconds far
outside the representable range and nanos out of range, ``FieldMask`` paths that are
real field names, garbage or very many, ``Struct`` values with nested lists and odd
keys.

``hints`` (field name -> strategy of values or messages) lets a test mix realistic
values (its caller's own phone number, a plan that exists, a Money in INR) into the
draw of fields with that name, so calls reach past the first checks as well as fail
at them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)

#: Integers that break naive code: the int32/int64 edges, PostgreSQL integer's edge and
#: just past it, JavaScript's safe-integer edge, 2**40 (the issue's Timestamp seconds).
_EDGES = (0, 1, -1, 2, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**32, 2**40, 2**53, 2**63 - 1)

_F = FieldDescriptor
_INT_RANGES = {
    _F.TYPE_INT32: INT32,
    _F.TYPE_SINT32: INT32,
    _F.TYPE_SFIXED32: INT32,
    _F.TYPE_INT64: INT64,
    _F.TYPE_SINT64: INT64,
    _F.TYPE_SFIXED64: INT64,
    _F.TYPE_UINT32: UINT32,
    _F.TYPE_FIXED32: UINT32,
    _F.TYPE_UINT64: UINT64,
    _F.TYPE_FIXED64: UINT64,
}

#: Characters that have broken servers: NUL (PostgreSQL text cannot hold it), other
#: controls, a lone combining mark, bidi override, BOM, a non-BMP emoji, '$' and '.'
#: (MongoDB key syntax), quotes and backslash, '%' and '_' (LIKE patterns).
_NASTY = "\x00\x01\x07\x08\x0b\x1b\x7f\u0301\u202e\ufeff\U0001f600$.'\"\\%_\n\t"


def integers(kind: int) -> st.SearchStrategy[int]:
    low, high = _INT_RANGES[kind]
    edges = [v for v in _EDGES if low <= v <= high] + [low, high]
    return st.one_of(
        st.sampled_from(edges),
        st.integers(0, 12),  # small ids: rows that exist
        st.integers(low, high),
    )


def texts() -> st.SearchStrategy[str]:
    """Mostly strings a domain may accept (so calls get past the first check), often
    odd ones: any Unicode, NUL and controls, very long."""
    printable = st.characters(exclude_categories=("Cs", "Cc"))
    return st.one_of(
        st.just(""),
        st.text(alphabet="abcdefghij_0123456789", min_size=1, max_size=12),
        st.text(alphabet=printable, min_size=1, max_size=24),
        st.text(max_size=24),
        st.text(alphabet=st.sampled_from(_NASTY + "ab1@ "), max_size=12),
        st.sampled_from([65, 129, 256, 1025, 4097, 70_000]).map(lambda n: "x" * n),
    )


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in _INT_RANGES:
        return integers(kind)
    if kind == _F.TYPE_BOOL:
        return st.booleans()
    if kind in (_F.TYPE_FLOAT, _F.TYPE_DOUBLE):
        width = 32 if kind == _F.TYPE_FLOAT else 64
        return st.floats(width=width, allow_nan=True, allow_infinity=True)
    if kind == _F.TYPE_STRING:
        return texts()
    if kind == _F.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == _F.TYPE_ENUM:
        defined = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(defined), st.integers(*INT32))
    raise AssertionError(f"no strategy for {field.full_name} (type {kind})")


def _timestamp(cls: type[Message]) -> st.SearchStrategy[Message]:
    seconds = st.one_of(
        st.integers(-62135596800, 253402300799),  # 0001-01-01 .. 9999-12-31
        st.sampled_from([0, 1, -1, 2**31, 2**40, -(2**40), 2**62, -(2**63), 2**63 - 1]),
        # The range's edges, and one past each.
        st.sampled_from([-62135596800, 253402300799, 253402300800, -62135596801]),
        st.integers(-1, 2_000_000_000),
    )
    nanos = st.one_of(st.just(0), st.integers(0, 999_999_999), st.integers(*INT32))
    return st.builds(cls, seconds=seconds, nanos=nanos)


def _field_mask(cls: type[Message], names: list[str]) -> st.SearchStrategy[Message]:
    path = st.one_of(st.sampled_from(names or ["name"]), texts())
    return st.one_of(
        st.builds(cls, paths=st.lists(path, max_size=4)),
        # Very many paths: nothing of them may be echoed without bound.
        st.integers(50, 3000).map(lambda n: cls(paths=[f"no_such_field_{i}" for i in range(n)])),
    )


def _json_values(depth: int) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.floats(),  # NaN and infinities too: JSON has neither
        texts(),
    )
    if depth <= 0:
        return scalars
    inner = _json_values(depth - 1)
    return st.one_of(
        scalars,
        st.lists(inner, max_size=3),
        st.dictionaries(texts(), inner, max_size=3),
    )


def _struct(cls: type[Message]) -> st.SearchStrategy[Message]:
    def build(value: dict[str, Any]) -> Message:
        message = cls()
        message.update(value)  # type: ignore[attr-defined]
        return message

    return st.dictionaries(texts(), _json_values(2), max_size=4).map(build)


class _Builder:
    def __init__(self, hints: Mapping[str, st.SearchStrategy[Any]], max_depth: int) -> None:
        self._hints = hints
        self._max_depth = max_depth

    def message(
        self, descriptor: Descriptor, depth: int = 0, mask_of: Descriptor | None = None
    ) -> st.SearchStrategy[Message]:
        cls = message_factory.GetMessageClass(descriptor)
        name = descriptor.full_name
        if name == "google.protobuf.Timestamp":
            return _timestamp(cls)
        if name == "google.protobuf.FieldMask":
            names = _field_names(mask_of) if mask_of is not None else []
            return _field_mask(cls, names)
        if name == "google.protobuf.Struct":
            return _struct(cls)
        return self._plain(descriptor, cls, depth)

    def _plain(
        self, descriptor: Descriptor, cls: type[Message], depth: int
    ) -> st.SearchStrategy[Message]:
        # The message a FieldMask in this message names: its sibling message field.
        siblings = [f.message_type for f in descriptor.fields if f.message_type is not None]
        masked = next((m for m in siblings if not m.full_name.startswith("google.protobuf.")), None)

        @st.composite
        def draw_message(draw: st.DrawFn) -> Message:
            message = cls()
            oneof_choice: dict[str, str | None] = {}
            for oneof in descriptor.oneofs:
                names = [f.name for f in oneof.fields]
                oneof_choice[oneof.name] = draw(st.sampled_from([None, *names]))
            for field in descriptor.fields:
                oneof = field.containing_oneof
                if oneof is not None and oneof_choice[oneof.name] != field.name:
                    continue
                if oneof is None and not draw(self._presence(field)):
                    continue  # left at its default
                self._set(draw, message, field, depth, masked)
            return message

        return draw_message()

    def _presence(self, field: FieldDescriptor) -> st.SearchStrategy[bool]:
        """Whether a field is set: a field with a hint usually is (so that requests
        with several required fields are often whole), any other one half the time."""
        if field.name in self._hints:
            return st.sampled_from([True, True, True, False])
        return st.booleans()

    def _value(
        self, field: FieldDescriptor, depth: int, masked: Descriptor | None
    ) -> st.SearchStrategy[Any]:
        if field.message_type is not None:
            base = self.message(field.message_type, depth + 1, masked)
        else:
            base = _scalar(field)
        hint = self._hints.get(field.name)
        if hint is not None and field.type == FieldDescriptor.TYPE_STRING:
            # A hint named like an id field may be an integer where a message spells the
            # field as text (AdminService ListAuditLogsRequest.user_id: "user:12").
            hint = hint.map(lambda v: v if isinstance(v, str) else f"user:{v}")
        return base if hint is None else st.one_of(hint, hint, base)  # 2 in 3 realistic

    def _set(
        self,
        draw: st.DrawFn,
        message: Message,
        field: FieldDescriptor,
        depth: int,
        masked: Descriptor | None,
    ) -> None:
        target = getattr(message, field.name) if field.is_repeated else None
        too_deep = depth >= self._max_depth
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            if too_deep:
                return
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            entries = draw(
                st.dictionaries(
                    _scalar(key_field), self._value(value_field, depth, masked), max_size=3
                )
            )
            for key, value in entries.items():
                if value_field.message_type is not None:
                    target[key].CopyFrom(value)  # type: ignore[index]
                else:
                    target[key] = value  # type: ignore[index]
            return
        if field.message_type is not None and too_deep:
            return
        if field.is_repeated:
            values = draw(st.lists(self._value(field, depth, masked), max_size=4))
            if field.message_type is not None:
                for value in values:
                    target.add().CopyFrom(value)  # type: ignore[union-attr]
            else:
                target.extend(values)  # type: ignore[union-attr]
            return
        value = draw(self._value(field, depth, masked))
        if field.message_type is not None:
            getattr(message, field.name).CopyFrom(value)
        else:
            setattr(message, field.name, value)


def _field_names(descriptor: Descriptor) -> list[str]:
    names = [f.name for f in descriptor.fields]
    for f in descriptor.fields:
        if f.message_type is not None and not f.message_type.full_name.startswith("google."):
            names += [f"{f.name}.{inner.name}" for inner in f.message_type.fields]
    return names


def messages(
    descriptor: Descriptor,
    *,
    hints: Mapping[str, st.SearchStrategy[Any]] | None = None,
    max_depth: int = 3,
) -> st.SearchStrategy[Message]:
    """Messages of ``descriptor``'s type (see the module docstring)."""
    return _Builder(hints or {}, max_depth).message(descriptor)
