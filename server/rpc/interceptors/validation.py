"""Every request message is checked (server/core/validation.py) before its handler runs.

Runs innermost, after the access interceptor has authenticated and authorized the
call (a caller who may not call an RPC learns nothing about its input rules), so a
refused request is INVALID_ARGUMENT, audited like any failed call, and reaches no
domain code.

- Bytes that do not parse as the request type (corrupt wire format, a string that is
  not UTF-8) are INVALID_ARGUMENT ``MALFORMED_REQUEST``; grpcio would answer UNKNOWN
  and quote the parser's exception. The deserializer never raises: it hands the
  handler a :class:`Unparsable` marker, refused here.
- Client-streaming RPCs: an unparsable message ends the stream with that status; each
  parsed message is checked where the servicer reads it (BatchRecharge answers a bad
  item in its place in the stream and goes on).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from server.core.errors import InvalidArgument
from server.core.validation import check_request
from server.rpc.interceptors.request import Continuation, Handler, WrappedHandlers, rebuild

_OWN_PREFIX = "/gencharge."


class Unparsable:
    """Stands for a request message whose bytes did not parse."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def refuse(self) -> InvalidArgument:
        return InvalidArgument(
            f"the request is not a valid {self.type_name} message (corrupt protobuf wire "
            "format, or a string field that is not UTF-8)",
            reason="MALFORMED_REQUEST",
        )


class ValidationInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        self._handlers = WrappedHandlers(lambda handler, method: _wrap(handler))

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(_OWN_PREFIX):
            return handler  # health checks and reflection
        return self._handlers.get(handler, method)


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None
    type_name = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    name = type_name.full_name if type_name is not None else "request"

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError:
            return Unparsable(name)

    return parse


def _checked(request: Any) -> None:
    if isinstance(request, Unparsable):
        raise request.refuse()
    if isinstance(request, Message):
        check_request(request)


async def _parsed(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, Unparsable):
            raise request.refuse()
        yield request


def _wrap(handler: Handler) -> Handler:
    inner_unary: Any = handler.unary_unary or handler.stream_unary
    inner_stream: Any = handler.unary_stream or handler.stream_stream
    streaming_requests = handler.request_streaming

    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if streaming_requests:
            return await inner_unary(_parsed(request), context)
        _checked(request)
        return await inner_unary(request, context)

    async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if streaming_requests:
            request = _parsed(request)
        else:
            _checked(request)
        async for response in inner_stream(request, context):
            yield response

    return rebuild(
        handler, unary, streaming, request_deserializer=_tolerant(handler.request_deserializer)
    )
