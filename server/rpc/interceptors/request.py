"""The outermost interceptor: request id, access log, and the one error mapping.

- Takes the caller's ``x-request-id`` (if well-formed) or makes one, puts it in the
  logging context and sends it back as trailing metadata.
- Maps :class:`server.core.errors.DomainError` to its gRPC status with ``google.rpc.Status``
  details; any other exception becomes INTERNAL with no internals leaked (the log has
  the traceback under the same request id).
- Resolves the caller's address once (server/core/peers.py: the TCP peer, or the client a
  trusted proxy forwarded) for throttling, sessions, audit and the log.
- Writes one access-log line per call: method, code, duration, peer (and the proxy's
  address when the call came through one).

The wrapped handler of a method is built once and reused (:class:`WrappedHandlers`):
everything that differs between calls is read from the call's own context.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeAlias

import grpc
from grpc_status import rpc_status
from pymongo import errors as mongo_errors
from sqlalchemy import exc as sa_exc

from server.core.errors import DomainError, Unavailable, internal_status, to_status_proto
from server.core.logs import request_id_var, rpc_method_var
from server.core.peers import Network, client_peer_var, resolve

log = logging.getLogger("gencharge.rpc")

_OWN_PREFIX = "/gencharge."
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]"


def _new_request_id() -> str:
    """What ``uuid.uuid4().hex`` returns (random, version 4, RFC 4122 variant), without
    building a UUID object."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return raw.hex()


def _request_id(metadata: Iterable[tuple[str, Any]] | None) -> str:
    for key, value in metadata or ():
        if key == "x-request-id" and isinstance(value, str) and _REQUEST_ID.match(value):
            return value
    return _new_request_id()


def _unavailable(exc: BaseException) -> bool:
    """A database that is down, unreachable or saturated: the caller may retry."""
    return isinstance(
        exc,
        sa_exc.TimeoutError
        | sa_exc.OperationalError
        | sa_exc.InterfaceError
        | mongo_errors.ConnectionFailure
        | OSError,
    ) or (isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated)


async def _abort_for(exc: BaseException, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    request_id = request_id_var.get()
    if isinstance(exc, DomainError):
        status = rpc_status.to_status(to_status_proto(exc))
    elif _unavailable(exc):
        log.warning("dependency unavailable", extra={"error": type(exc).__name__})
        status = rpc_status.to_status(
            to_status_proto(
                Unavailable(
                    "the service is temporarily unavailable; retry with backoff",
                    reason="DEPENDENCY_UNAVAILABLE",
                )
            )
        )
    else:
        log.exception("unhandled error")
        status = rpc_status.to_status(internal_status(request_id))
    await context.abort(
        status.code,
        status.details,
        (*status.trailing_metadata, ("x-request-id", request_id)),
    )


#: ``google.rpc.Code`` value -> ``grpc.StatusCode`` (domain errors carry the former).
GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}


class _Call:
    """Per-call bookkeeping shared by the four handler shapes."""

    def __init__(self, method: str, request_id: str, proxies: Sequence[Network]) -> None:
        self.method = method
        self.request_id = request_id
        self.proxies = proxies
        self.peer = ""
        self.direct_peer = ""
        self.started = time.perf_counter()
        self.code = grpc.StatusCode.OK

    def enter(self) -> None:
        request_id_var.set(self.request_id)
        rpc_method_var.set(self.method)

    def start(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.enter()
        # Read while the call is alive: after a client drops a stream, grpcio tears the
        # call down and context.peer() in finish() crashed the process (SIGSEGV).
        self.direct_peer = context.peer()
        self.peer = resolve(context, self.proxies, direct=self.direct_peer)
        client_peer_var.set(self.peer)
        # Sent with the status (errors add it to their own trailing metadata).
        context.set_trailing_metadata((("x-request-id", self.request_id),))

    def failed(self, exc: BaseException) -> None:
        if isinstance(exc, DomainError):
            self.code = GRPC_CODES[exc.code]
        elif _unavailable(exc):
            self.code = grpc.StatusCode.UNAVAILABLE
        elif isinstance(exc, grpc.aio.AbortError):
            self.code = grpc.StatusCode.UNKNOWN  # refined by the context's code below
        else:
            self.code = grpc.StatusCode.INTERNAL

    def finish(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        code = context.code() if self.code is grpc.StatusCode.UNKNOWN else self.code
        name = code.name if isinstance(code, grpc.StatusCode) else str(code or "OK")
        level = logging.INFO if name in ("OK", "None") else logging.WARNING
        if not log.isEnabledFor(level):
            return
        extra: dict[str, Any] = {
            "code": name,
            "duration_ms": round((time.perf_counter() - self.started) * 1000, 3),
            "peer": self.peer,
        }
        if self.direct_peer != self.peer:
            extra["proxy"] = self.direct_peer
        log.log(level, "rpc finished", extra=extra)


class WrappedHandlers:
    """Each method's wrapped handler, built once by ``wrap(handler, method)``: an
    interceptor's wrapping depends only on the method and the handler it wraps (the
    same object on every call), so building it per call was wasted work. A method whose
    inner handler changes gets a new wrapping."""

    def __init__(self, wrap: Callable[[Handler, str], Handler]) -> None:
        self._wrap = wrap
        self._handlers: dict[str, tuple[Handler, Handler]] = {}

    def get(self, handler: Handler, method: str) -> Handler:
        cached = self._handlers.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, method)
        self._handlers[method] = (handler, wrapped)
        return wrapped


class RequestInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, trusted_proxies: Sequence[Network] = ()) -> None:
        proxies = tuple(trusted_proxies)
        self._handlers = WrappedHandlers(lambda handler, method: _wrap(handler, method, proxies))

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if not method.startswith(_OWN_PREFIX):
            # Health checks and reflection: served as they are, not access-logged.
            return handler
        return self._handlers.get(handler, method)


def rebuild(
    handler: Handler, unary: Any, streaming: Any, *, request_deserializer: Any = None
) -> Handler:
    """``handler`` with its behaviour replaced (``unary`` or ``streaming``, by its
    shape) and, when given, its request deserializer."""
    common = {
        "request_deserializer": request_deserializer or handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary, **common)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming, **common)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary, **common)
    return grpc.stream_stream_rpc_method_handler(streaming, **common)


def _call(
    method: str, proxies: Sequence[Network], context: grpc.aio.ServicerContext[Any, Any]
) -> _Call:
    """The call's bookkeeping, started: its request id is the caller's ``x-request-id``
    (if well-formed) or a new one."""
    call = _Call(method, _request_id(context.invocation_metadata()), proxies)
    call.start(context)
    return call


def _wrap(handler: Handler, method: str, proxies: Sequence[Network]) -> Handler:
    # In a grpc.aio server these are coroutine functions / async generator functions.
    inner_unary: Any = handler.unary_unary or handler.stream_unary
    inner_stream: Any = handler.unary_stream or handler.stream_stream

    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        call = _call(method, proxies, context)
        try:
            assert inner_unary is not None
            return await inner_unary(request, context)
        except grpc.aio.AbortError as exc:
            call.failed(exc)
            raise
        except Exception as exc:
            call.failed(exc)
            await _abort_for(exc, context)
        finally:
            call.finish(context)

    async def streaming(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        call = _call(method, proxies, context)
        try:
            assert inner_stream is not None
            async for response in inner_stream(request, context):
                yield response
        except grpc.aio.AbortError as exc:
            call.failed(exc)
            raise
        except Exception as exc:
            call.failed(exc)
            await _abort_for(exc, context)
        finally:
            call.finish(context)

    return rebuild(handler, unary, streaming)
