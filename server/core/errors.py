"""Domain errors and their one mapping to gRPC status codes.

Domain code raises these; it never touches grpc objects (nor does this module: each
error names its canonical ``google.rpc.Code``, which is its gRPC status code). The
request interceptor turns
them into a gRPC status with ``google.rpc.Status`` details: an ``ErrorInfo`` (a stable,
machine-readable ``reason`` in domain ``gencharge.v1``) and, for bad input, a
``BadRequest`` with one field violation per offending field.

The status travels in the call's trailing metadata, which clients cap (8 KiB by
default), and its texts may quote what the caller sent; so every text is cut to a
bound here, whatever raised it: the message, each field violation (at most
:data:`MAX_VIOLATIONS` and :data:`MAX_STATUS_BYTES` in all, the rest counted in the
last one) and the ``ErrorInfo`` metadata.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

ERROR_DOMAIN = "gencharge.v1"

#: Bounds on what a status carries, in UTF-8 bytes: ``google.rpc.Status`` travels in
#: the trailers (base64, next to the percent-encoded message), which clients cap at
#: 8 KiB by default.
MAX_MESSAGE_BYTES = 256
MAX_VIOLATIONS = 10
MAX_FIELD_BYTES = 128
MAX_DESCRIPTION_BYTES = 256
MAX_METADATA_ENTRIES = 8
MAX_METADATA_KEY_BYTES = 64
MAX_METADATA_BYTES = 128
#: The whole serialized status: violations past it are dropped (and counted).
MAX_STATUS_BYTES = 3072


def bounded(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, on a character boundary (an
    ellipsis marks the cut)."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", "ignore") + "..."


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


@dataclass
class DomainError(Exception):
    """Base class: a failure the caller can act on. ``message`` is shown to callers."""

    message: str
    reason: str = "ERROR"
    metadata: Mapping[str, str] = field(default_factory=dict)

    #: The canonical status code (``google.rpc.code_pb2``), the gRPC status of the call.
    code: ClassVar[int] = code_pb2.UNKNOWN

    def __str__(self) -> str:
        return self.message


@dataclass
class InvalidArgument(DomainError):
    violations: Sequence[FieldViolation] = ()
    reason: str = "INVALID_ARGUMENT"
    code = code_pb2.INVALID_ARGUMENT

    @classmethod
    def of(cls, violations: Sequence[FieldViolation]) -> InvalidArgument:
        names = ", ".join(dict.fromkeys(v.field for v in violations))
        return cls(f"invalid request: {names}", violations=violations)

    @classmethod
    def field(cls, name: str, description: str) -> InvalidArgument:
        return cls.of([FieldViolation(name, description)])


@dataclass
class NotFound(DomainError):
    reason: str = "NOT_FOUND"
    code = code_pb2.NOT_FOUND


@dataclass
class AlreadyExists(DomainError):
    reason: str = "ALREADY_EXISTS"
    code = code_pb2.ALREADY_EXISTS


@dataclass
class FailedPrecondition(DomainError):
    reason: str = "FAILED_PRECONDITION"
    code = code_pb2.FAILED_PRECONDITION


@dataclass
class PermissionDenied(DomainError):
    reason: str = "PERMISSION_DENIED"
    code = code_pb2.PERMISSION_DENIED


@dataclass
class Unauthenticated(DomainError):
    reason: str = "UNAUTHENTICATED"
    code = code_pb2.UNAUTHENTICATED


@dataclass
class ResourceExhausted(DomainError):
    reason: str = "RESOURCE_EXHAUSTED"
    code = code_pb2.RESOURCE_EXHAUSTED


@dataclass
class Unavailable(DomainError):
    reason: str = "UNAVAILABLE"
    code = code_pb2.UNAVAILABLE


def code_name(code: int) -> str:
    """``INVALID_ARGUMENT`` for ``code_pb2.INVALID_ARGUMENT`` (as logs and audit show it)."""
    return code_pb2.Code.Name(code)


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def _bad_request(violations: Sequence[FieldViolation], keep: int) -> any_pb2.Any:
    """The first ``keep`` violations, each bounded; the last one counts the rest."""
    kept = [
        error_details_pb2.BadRequest.FieldViolation(
            field=bounded(v.field, MAX_FIELD_BYTES),
            description=bounded(v.description, MAX_DESCRIPTION_BYTES),
        )
        for v in violations[:keep]
    ]
    left_out = len(violations) - len(kept)
    if left_out and kept:
        kept[-1].description = (
            bounded(kept[-1].description, MAX_DESCRIPTION_BYTES - 40)
            + f" (and {left_out} more violations)"
        )
    return _pack(error_details_pb2.BadRequest(field_violations=kept))


def to_status_proto(error: DomainError) -> status_pb2.Status:
    """The ``google.rpc.Status`` for a domain error, every text bounded (see the module
    docstring): whatever a caller sent, the status fits in the trailers."""
    metadata = {
        bounded(key, MAX_METADATA_KEY_BYTES): bounded(value, MAX_METADATA_BYTES)
        for key, value in list(error.metadata.items())[:MAX_METADATA_ENTRIES]
    }
    info = error_details_pb2.ErrorInfo(
        reason=bounded(error.reason, MAX_FIELD_BYTES), domain=ERROR_DOMAIN, metadata=metadata
    )
    status = status_pb2.Status(
        code=error.code,
        message=bounded(error.message, MAX_MESSAGE_BYTES),
        details=[_pack(info)],
    )
    if isinstance(error, InvalidArgument) and error.violations:
        keep = min(len(error.violations), MAX_VIOLATIONS)
        while True:
            bad_request = _bad_request(error.violations, keep)
            if keep <= 1 or status.ByteSize() + bad_request.ByteSize() <= MAX_STATUS_BYTES:
                break
            keep -= 1
        status.details.append(bad_request)
    return status


def internal_status(request_id: str) -> status_pb2.Status:
    """What the caller sees for an unexpected failure: no internals, just the request id."""
    return status_pb2.Status(
        code=code_pb2.INTERNAL,
        message=f"internal error; quote request id {request_id} to support",
    )


@dataclass
class Unimplemented(DomainError):
    reason: str = "NOT_IMPLEMENTED"
    code = code_pb2.UNIMPLEMENTED
