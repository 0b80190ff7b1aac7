"""Domain errors and their one mapping to gRPC status codes.

Domain code raises these; it never touches grpc objects (nor does this module: each
error names its canonical ``google.rpc.Code``, which is its gRPC status code). The
request interceptor turns
them into a gRPC status with ``google.rpc.Status`` details: an ``ErrorInfo`` (a stable,
machine-readable ``reason`` in domain ``gencharge.v1``) and, for bad input, a
``BadRequest`` with one field violation per offending field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

ERROR_DOMAIN = "gencharge.v1"


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
        names = ", ".join(v.field for v in violations)
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


def to_status_proto(error: DomainError) -> status_pb2.Status:
    """The ``google.rpc.Status`` for a domain error."""
    status = status_pb2.Status(code=error.code, message=error.message)
    status.details.append(
        _pack(
            error_details_pb2.ErrorInfo(
                reason=error.reason, domain=ERROR_DOMAIN, metadata=dict(error.metadata)
            )
        )
    )
    if isinstance(error, InvalidArgument) and error.violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in error.violations
            ]
        )
        status.details.append(_pack(bad_request))
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
