"""How one call runs: credentials, request ids, deadlines, retries and typed errors.

Every RPC wrapper (``_calls``) goes through a :class:`Transport`; the sync client runs
the same code on its private loop. The rules come from the RPC table
(``gencharge_client.v1.methods``) and the :class:`~gencharge_client.retry.RetryPolicy`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf.message import Message

from gencharge_client.errors import GenChargeError, Unauthenticated, from_rpc_error
from gencharge_client.retry import DEFAULT_RETRY, RetryPolicy
from gencharge_client.v1.methods import Kind, Method

if TYPE_CHECKING:
    from gencharge_client.credentials import Credentials
    from gencharge_client.v1.services import AuthService

M = TypeVar("M", bound=Message)
Metadata = Sequence[tuple[str, str]]

AUTHORIZATION = "authorization"


def with_request_id(method: Method, request: M) -> tuple[M, str]:
    """The request with its ``request_id`` filled (a UUID4, if the caller left it
    empty), and that id; an RPC without the field is returned as it is, with ""."""
    if not method.request_id:
        return request, ""
    current: str = getattr(request, "request_id", "")
    if current:
        return request, current
    filled = type(request)()
    filled.CopyFrom(request)
    request_id = str(uuid.uuid4())
    setattr(filled, "request_id", request_id)  # noqa: B010 (a field, typed per message)
    return filled, request_id


class _Shared:
    """What every view of one connection shares: the channel and its callables."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self._callables: dict[str, Any] = {}

    def callable(self, method: Method) -> Any:
        """The channel's multi-callable for ``method`` (made once, by streaming kind)."""
        found = self._callables.get(method.path)
        if found is None:
            make = {
                Kind.UNARY_UNARY: self.channel.unary_unary,
                Kind.UNARY_STREAM: self.channel.unary_stream,
                Kind.STREAM_STREAM: self.channel.stream_stream,
            }[method.kind]
            found = self._callables[method.path] = make(
                method.path,
                request_serializer=_serialize,
                response_deserializer=method.response_type.FromString,
            )
        return found


class _Attempts:
    """The attempts of one logical call: after a failure, :meth:`again` returns when the
    call may be tried again (a renewed token, or after the backoff) and raises the
    error when not."""

    def __init__(self, transport: Transport, method: Method, policy: RetryPolicy) -> None:
        self.transport = transport
        self.method = method
        self.policy = policy
        self.failures = 0
        self.renewed = False

    def progressed(self) -> None:
        """The call got somewhere (a stream answered): count failures afresh."""
        self.failures, self.renewed = 0, False

    async def again(self, error: GenChargeError, token: str) -> None:
        if not self.renewed and await self.transport.recover(error, token):
            self.renewed = True  # one replay with a renewed token, not an attempt
            return
        self.failures += 1
        if self.failures >= self.policy.max_attempts or not self.policy.retryable(
            self.method, error
        ):
            raise error
        await asyncio.sleep(self.policy.backoff(self.failures, error))


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


class Transport:
    """One connection seen with some credentials and a retry policy. Views made by
    :meth:`with_credentials` share the connection."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        credentials: Credentials | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        metadata: Metadata = (),
        _shared: _Shared | None = None,
    ) -> None:
        self._shared = _shared or _Shared(channel)
        self.credentials = credentials
        self.retry = retry
        self.metadata = tuple(metadata)
        self._auth: AuthService | None = None

    @property
    def channel(self) -> grpc.aio.Channel:
        return self._shared.channel

    def with_credentials(self, credentials: Credentials | None) -> Transport:
        return Transport(
            self.channel,
            credentials=credentials,
            retry=self.retry,
            metadata=self.metadata,
            _shared=self._shared,
        )

    def with_retry(self, retry: RetryPolicy) -> Transport:
        return Transport(
            self.channel,
            credentials=self.credentials,
            retry=retry,
            metadata=self.metadata,
            _shared=self._shared,
        )

    @property
    def auth(self) -> AuthService:
        """AuthService over this connection without credentials (what credentials use
        to log in, refresh and issue tokens)."""
        if self._auth is None:
            from gencharge_client.v1.services import AuthService

            self._auth = AuthService(self.with_credentials(None))
        return self._auth

    async def headers(self, metadata: Metadata) -> tuple[list[tuple[str, str]], str]:
        """The call's metadata (the bearer token first) and the token sent ("": none)."""
        headers = [*self.metadata, *metadata]
        token = ""
        if self.credentials is not None:
            token = await self.credentials.get_access_token(self.auth)
            headers.insert(0, (AUTHORIZATION, f"Bearer {token}"))
        return headers, token

    def attempts(self, method: Method, policy: RetryPolicy | None = None) -> _Attempts:
        """A retry budget for one logical call of ``method``."""
        return _Attempts(self, method, policy or self.retry)

    async def recover(self, error: GenChargeError, token: str) -> bool:
        """After an UNAUTHENTICATED answer to ``token``: may a renewed token help?"""
        if self.credentials is None or not token or not isinstance(error, Unauthenticated):
            return False
        return await self.credentials.token_rejected(token, error, self.auth)

    # --- the three kinds of call ------------------------------------------------------

    async def unary(
        self,
        method: Method,
        request: M,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
        retry: RetryPolicy | None = None,
    ) -> Message:
        """One logical unary call: attempts until success, a final error, or the policy's
        last attempt; one request_id for all of them."""
        policy = retry or self.retry
        request, request_id = with_request_id(method, request)
        call = self._shared.callable(method)
        deadline = timeout if timeout is not None else policy.timeout
        attempts = self.attempts(method, policy)
        while True:
            headers, token = await self.headers(metadata)
            try:
                response: Message = await call(request, timeout=deadline, metadata=headers)
                return response
            except grpc.aio.AioRpcError as exc:
                error = from_rpc_error(exc, request_id=request_id)
            await attempts.again(error, token)

    async def server_stream(
        self,
        method: Method,
        request: M,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
        retry: RetryPolicy | None = None,
    ) -> AsyncIterator[Message]:
        """The responses of a server-streaming call. Before the first response arrives
        the call is retried (or its token renewed) like a unary one; after it, a failure
        is raised (a stream is not resumed half-way)."""
        policy = retry or self.retry
        request, request_id = with_request_id(method, request)
        open_call = self._shared.callable(method)
        deadline = timeout if timeout is not None else policy.stream_timeout
        attempts = self.attempts(method, policy)
        while True:
            headers, token = await self.headers(metadata)
            call = open_call(request, timeout=deadline, metadata=headers)
            started = False
            try:
                async for response in call:
                    started = True
                    yield response
                return
            except grpc.aio.AioRpcError as exc:
                error = from_rpc_error(exc, request_id=request_id)
            finally:
                call.cancel()
            if started:
                raise error
            await attempts.again(error, token)

    async def bidi_stream(
        self,
        method: Method,
        requests: AsyncIterable[M],
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> AsyncIterator[Message]:
        """The responses of a bidirectional call over ``requests``, as sent (request ids
        are the caller's: see :func:`gencharge_client.batch.batch_recharge` for a
        stream that fills them and resumes). Errors are typed; nothing is retried."""
        headers, _ = await self.headers(metadata)
        call = self.open_bidi(method, headers, timeout, requests)
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None
        finally:
            call.cancel()

    def open_bidi(
        self,
        method: Method,
        headers: Metadata,
        timeout: float | None,
        requests: AsyncIterable[Any] | None = None,
    ) -> grpc.aio.StreamStreamCall[Any, Any]:
        """Open a bidirectional call with these headers (from :meth:`headers`); without
        ``requests`` the caller writes with ``call.write`` and ``call.done_writing``."""
        source = aiter(requests) if requests is not None else None
        call: grpc.aio.StreamStreamCall[Any, Any] = self._shared.callable(method)(
            source, timeout=timeout, metadata=list(headers)
        )
        return call
