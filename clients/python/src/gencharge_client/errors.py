"""Typed errors: every failed call raises a :class:`GenChargeError` subclass.

The server sends a ``google.rpc.Status`` in the ``grpc-status-details-bin`` trailer: an
``ErrorInfo`` (a stable ``reason`` in UPPER_SNAKE_CASE, domain ``gencharge.v1``, string
metadata), a ``BadRequest`` with one field violation per bad field for
``INVALID_ARGUMENT``, and sometimes a ``RetryInfo``. The error class is chosen by the
status code (``InvalidArgument``, ``NotFound``...) and, for the reasons a client
branches on, by the reason (``InsufficientFunds`` is a ``FailedPrecondition``); an
unknown reason falls back to its code's class. Branch on classes or on ``reason``,
never on the message text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"
SERVER_REQUEST_ID_KEY = "x-request-id"
ERROR_DOMAIN = "gencharge.v1"

_ERROR_INFO = error_details_pb2.ErrorInfo.DESCRIPTOR.full_name
_BAD_REQUEST = error_details_pb2.BadRequest.DESCRIPTOR.full_name
_RETRY_INFO = error_details_pb2.RetryInfo.DESCRIPTOR.full_name
_CODES_BY_NUMBER: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request (``google.rpc.BadRequest.FieldViolation``)."""

    field: str
    description: str
    reason: str = ""


class GenChargeError(Exception):
    """A failed GenCharge call.

    ``code``: the gRPC status code; ``message``: the server's text (for people, not for
    branching); ``reason``/``domain``/``metadata``: the ``ErrorInfo``; ``field_violations``:
    the ``BadRequest`` entries; ``retry_delay``: seconds from a ``RetryInfo`` or the
    ``retry_after_seconds`` metadata, if any; ``request_id``: the idempotency key the
    call carried (empty for calls without one); ``server_request_id``: the server's id of
    the call (quote it to support).
    """

    #: The status code of this class (subclasses set it).
    CODE: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN
    #: The ErrorInfo reason of this class; empty for a code's class.
    REASON: ClassVar[str] = ""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
        field_violations: Sequence[FieldViolation] = (),
        retry_delay: float | None = None,
        request_id: str = "",
        server_request_id: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.metadata: dict[str, str] = dict(metadata or {})
        self.field_violations: tuple[FieldViolation, ...] = tuple(field_violations)
        self.retry_delay = retry_delay
        self.request_id = request_id
        self.server_request_id = server_request_id

    def __str__(self) -> str:
        reason = f" {self.reason}" if self.reason else ""
        return f"{self.code.name}{reason}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code.name}, reason={self.reason!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )

    def violations_by_field(self) -> dict[str, str]:
        """``{field path: description}`` of the field violations."""
        return {v.field: v.description for v in self.field_violations}


# --- one class per status code ---------------------------------------------------------------


class Cancelled(GenChargeError):
    CODE = grpc.StatusCode.CANCELLED


class Unknown(GenChargeError):
    CODE = grpc.StatusCode.UNKNOWN


class InvalidArgument(GenChargeError):
    """Bad input; ``field_violations`` names each bad field (e.g. ``amount.units_minor``)."""

    CODE = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(GenChargeError):
    CODE = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(GenChargeError):
    CODE = grpc.StatusCode.NOT_FOUND


class AlreadyExists(GenChargeError):
    CODE = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(GenChargeError):
    CODE = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(GenChargeError):
    CODE = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(GenChargeError):
    CODE = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(GenChargeError):
    CODE = grpc.StatusCode.ABORTED


class OutOfRange(GenChargeError):
    CODE = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(GenChargeError):
    CODE = grpc.StatusCode.UNIMPLEMENTED


class Internal(GenChargeError):
    CODE = grpc.StatusCode.INTERNAL


class Unavailable(GenChargeError):
    """The server, a database or the payment gateway could not answer: retry with backoff
    (the SDK does, for calls where that is safe)."""

    CODE = grpc.StatusCode.UNAVAILABLE


class DataLoss(GenChargeError):
    CODE = grpc.StatusCode.DATA_LOSS


class Unauthenticated(GenChargeError):
    CODE = grpc.StatusCode.UNAUTHENTICATED


# --- documented reasons a client branches on --------------------------------------------------


class InsufficientFunds(FailedPrecondition):
    """The wallet cannot pay (metadata may say how much is needed)."""

    REASON = "INSUFFICIENT_FUNDS"


class PriceChanged(FailedPrecondition):
    """The amount to pay differs from ``expected_amount`` (e.g. the quote): quote again."""

    REASON = "PRICE_CHANGED"


class PlanInactive(FailedPrecondition):
    """The plan is no longer sold."""

    REASON = "PLAN_INACTIVE"


class PaymentDeclined(FailedPrecondition):
    """The payment gateway declined the charge."""

    REASON = "PAYMENT_DECLINED"


class InProgress(FailedPrecondition):
    """The same request_id is still being charged or recorded: retry later, same id."""

    REASON = "IN_PROGRESS"


class IdempotencyKeyReused(AlreadyExists):
    """This request_id was used before with a different request."""

    REASON = "IDEMPOTENCY_KEY_REUSED"


class InvalidCredentials(Unauthenticated):
    """Wrong e-mail/phone and password, or wrong client id and secret."""

    REASON = "INVALID_CREDENTIALS"


class SessionEnded(Unauthenticated):
    """The session was ended (logout, password change, block, restore): log in again.
    For a service token: it was retired; a new one is issued."""

    REASON = "SESSION_ENDED"


class InvalidToken(Unauthenticated):
    """The access token was refused (metadata ``cause`` says why)."""

    REASON = "INVALID_TOKEN"


class TokenExpired(InvalidToken):
    """The access token has expired (``INVALID_TOKEN`` with cause ``expired``): the SDK
    refreshes once and replays the call."""

    CAUSE: ClassVar[str] = "expired"


class InvalidRefreshToken(Unauthenticated):
    """The refresh token is unknown, expired or revoked: log in again."""

    REASON = "INVALID_REFRESH_TOKEN"


class RefreshTokenReused(Unauthenticated):
    """A used refresh token was presented again, so the server ended the session."""

    REASON = "REFRESH_TOKEN_REUSED"


class AccountBlocked(PermissionDenied):
    REASON = "ACCOUNT_BLOCKED"


class MissingScope(PermissionDenied):
    """A service account lacks the scope the RPC needs (metadata ``scope``)."""

    REASON = "MISSING_SCOPE"


class RateLimited(ResourceExhausted):
    """Too many attempts: ``retry_delay`` (from ``retry_after_seconds``) says when to
    try again."""

    REASON = "TOO_MANY_ATTEMPTS"

    @property
    def retry_after(self) -> float | None:
        return self.retry_delay


_CODE_CLASSES: dict[grpc.StatusCode, type[GenChargeError]] = {
    cls.CODE: cls
    for cls in (
        Cancelled,
        Unknown,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        Unimplemented,
        Internal,
        Unavailable,
        DataLoss,
        Unauthenticated,
    )
}

_REASON_CLASSES: dict[tuple[grpc.StatusCode, str], type[GenChargeError]] = {
    (cls.CODE, cls.REASON): cls
    for cls in (
        InsufficientFunds,
        PriceChanged,
        PlanInactive,
        PaymentDeclined,
        InProgress,
        IdempotencyKeyReused,
        InvalidCredentials,
        SessionEnded,
        InvalidToken,
        InvalidRefreshToken,
        RefreshTokenReused,
        AccountBlocked,
        MissingScope,
        RateLimited,
    )
}


def error_class(
    code: grpc.StatusCode, reason: str, metadata: Mapping[str, str]
) -> type[GenChargeError]:
    """The class for a status: the reason's (under its code), else the code's."""
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "retry_after_seconds" in metadata:
        return RateLimited
    cls = _REASON_CLASSES.get((code, reason))
    if cls is InvalidToken and metadata.get("cause") == TokenExpired.CAUSE:
        return TokenExpired
    if cls is not None:
        return cls
    return _CODE_CLASSES.get(code, GenChargeError)


def from_status(
    status: status_pb2.Status, *, request_id: str = "", server_request_id: str = ""
) -> GenChargeError:
    """The typed error of a ``google.rpc.Status`` (a call's, or a BatchRecharge item's)."""
    code = _CODES_BY_NUMBER.get(status.code, grpc.StatusCode.UNKNOWN)
    reason, domain = "", ""
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    retry_delay: float | None = None
    for detail in status.details:
        if detail.TypeName() == _ERROR_INFO:
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.TypeName() == _BAD_REQUEST:
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations += [
                FieldViolation(v.field, v.description, v.reason) for v in bad.field_violations
            ]
        elif detail.TypeName() == _RETRY_INFO:
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_delay = retry.retry_delay.ToTimedelta().total_seconds()
    if retry_delay is None and "retry_after_seconds" in metadata:
        try:
            retry_delay = float(metadata["retry_after_seconds"])
        except ValueError:
            retry_delay = None
    cls = error_class(code, reason, metadata)
    return cls(
        code,
        status.message,
        reason=reason,
        domain=domain,
        metadata=metadata,
        field_violations=violations,
        retry_delay=retry_delay,
        request_id=request_id,
        server_request_id=server_request_id,
    )


#: How grpc.aio reports a call whose own send failed (the connection went away under a
#: stream's write): INTERNAL from the client's core, no status from the server.
_LOCAL_SEND_FAILURE = 'Failed "execute_batch"'


def from_rpc_error(error: grpc.aio.AioRpcError, *, request_id: str = "") -> GenChargeError:
    """The typed error of a failed call (its code, details and trailers). A call that
    failed because its connection dropped is ``Unavailable``, as gRPC reports it when
    the read notices first, also when grpc.aio's own write noticed first (INTERNAL)."""
    code = error.code()
    message = error.details() or ""
    trailers = error.trailing_metadata() or ()
    if (
        code == grpc.StatusCode.INTERNAL
        and not trailers
        and (error.debug_error_string() or "").startswith(_LOCAL_SEND_FAILURE)
    ):
        code, message = grpc.StatusCode.UNAVAILABLE, f"connection lost: {message}"
    status = status_pb2.Status(code=code.value[0], message=message)
    server_request_id = ""
    for key, value in trailers:
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                decoded = status_pb2.Status.FromString(value)
            except DecodeError:
                continue
            if decoded.code == status.code:
                status = decoded
        elif key == SERVER_REQUEST_ID_KEY:
            server_request_id = str(value)
    return from_status(status, request_id=request_id, server_request_id=server_request_id)
