"""The callable RPC attributes of the generated service classes (``v1/services.py``).

``client.recharge.recharge`` is a :class:`UnaryMethod` typed with its request and
response; paginated lists are :class:`PagedMethod` (one page when called, every item
with ``.items``); streams are :class:`ServerStreamMethod` and :class:`BidiStreamMethod`.
The ``Sync*`` twins run the same objects on the sync client's loop (:func:`sync`).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any, Generic, TypedDict, TypeVar, Unpack, cast, overload

from google.protobuf.message import Message

from gencharge_client._runner import Runner, from_sync
from gencharge_client._transport import Metadata, Transport
from gencharge_client.retry import RetryPolicy
from gencharge_client.v1.methods import Method

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)
Item = TypeVar("Item", bound=Message)


class CallOptions(TypedDict, total=False):
    """Options of one call: ``timeout``, each attempt's deadline in seconds (default: the
    retry policy's); ``metadata``, extra headers; ``retry``, this call's policy."""

    timeout: float | None
    metadata: Metadata
    retry: RetryPolicy | None


class StreamOptions(TypedDict, total=False):
    """Options of a bidirectional stream: its deadline and extra headers."""

    timeout: float | None
    metadata: Metadata


class _Rpc(Generic[Req, Resp]):
    def __init__(self, transport: Transport, method: Method) -> None:
        self.transport = transport
        self.method = method

    def _request(self, request: Req | None) -> Req:
        if request is None:
            return cast(Req, self.method.request_type())
        return request

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.method.path}>"


class UnaryMethod(_Rpc[Req, Resp]):
    """``await service.method(request)``: one logical call (retried where safe)."""

    async def __call__(self, request: Req | None = None, /, **options: Unpack[CallOptions]) -> Resp:
        response = await self.transport.unary(self.method, self._request(request), **options)
        return cast(Resp, response)


class PagedMethod(UnaryMethod[Req, Resp], Generic[Req, Resp, Item]):
    """A paginated list (AIP-158): calling it returns one page; :meth:`pages` and
    :meth:`items` follow ``next_page_token`` to the end."""

    async def pages(
        self, request: Req | None = None, /, **options: Unpack[CallOptions]
    ) -> AsyncIterator[Resp]:
        """Every page, from the request's ``page_token`` (usually empty) to the last."""
        current = type(self._request(request))()
        current.CopyFrom(self._request(request))
        while True:
            page = await self(current, **options)
            yield page
            token: str = getattr(page, "next_page_token", "")
            if not token:
                return
            setattr(current, "page_token", token)  # noqa: B010 (a field of the request)

    async def items(
        self, request: Req | None = None, /, **options: Unpack[CallOptions]
    ) -> AsyncIterator[Item]:
        """Every item of every page, in the list's order."""
        field = self.method.items_field
        assert field is not None, self.method.path
        async for page in self.pages(request, **options):
            for item in getattr(page, field):
                yield cast(Item, item)


class ServerStreamMethod(_Rpc[Req, Resp]):
    """``async for response in service.method(request)``: a server-streaming call."""

    def __call__(
        self, request: Req | None = None, /, **options: Unpack[CallOptions]
    ) -> AsyncIterator[Resp]:
        responses = self.transport.server_stream(self.method, self._request(request), **options)
        return cast(AsyncIterator[Resp], responses)


class BidiStreamMethod(_Rpc[Req, Resp]):
    """``async for response in service.method(requests)``: a bidirectional stream."""

    def __call__(
        self, requests: AsyncIterable[Req] | Iterable[Req], /, **options: Unpack[StreamOptions]
    ) -> AsyncIterator[Resp]:
        source = requests if isinstance(requests, AsyncIterable) else from_sync(requests)
        responses = self.transport.bidi_stream(self.method, source, **options)
        return cast(AsyncIterator[Resp], responses)


# --- sync twins -------------------------------------------------------------------------------

Inner = TypeVar("Inner", bound=_Rpc[Any, Any])


class _SyncTwin(Generic[Inner]):
    """An async RPC attribute run on the sync client's loop."""

    def __init__(self, inner: Inner, runner: Runner) -> None:
        self.inner = inner
        self.runner = runner

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.inner.method.path}>"


class SyncUnaryMethod(_SyncTwin[UnaryMethod[Req, Resp]], Generic[Req, Resp]):
    """``service.method(request)``: one logical call (retried where safe)."""

    def __call__(self, request: Req | None = None, /, **options: Unpack[CallOptions]) -> Resp:
        return self.runner.run(self.inner(request, **options))


class SyncPagedMethod(SyncUnaryMethod[Req, Resp], Generic[Req, Resp, Item]):
    """A paginated list: one page when called; :meth:`pages` and :meth:`items` iterate."""

    def __init__(self, inner: PagedMethod[Req, Resp, Item], runner: Runner) -> None:
        super().__init__(inner, runner)
        self.paged = inner

    def pages(
        self, request: Req | None = None, /, **options: Unpack[CallOptions]
    ) -> Iterator[Resp]:
        return self.runner.iterate(self.paged.pages(request, **options))

    def items(
        self, request: Req | None = None, /, **options: Unpack[CallOptions]
    ) -> Iterator[Item]:
        return self.runner.iterate(self.paged.items(request, **options))


class SyncServerStreamMethod(_SyncTwin[ServerStreamMethod[Req, Resp]], Generic[Req, Resp]):
    def __call__(
        self, request: Req | None = None, /, **options: Unpack[CallOptions]
    ) -> Iterator[Resp]:
        return self.runner.iterate(self.inner(request, **options))


class SyncBidiStreamMethod(_SyncTwin[BidiStreamMethod[Req, Resp]], Generic[Req, Resp]):
    def __call__(
        self, requests: Iterable[Req], /, **options: Unpack[StreamOptions]
    ) -> Iterator[Resp]:
        return self.runner.iterate(self.inner(requests, **options))


@overload
def sync(
    inner: PagedMethod[Req, Resp, Item], runner: Runner
) -> SyncPagedMethod[Req, Resp, Item]: ...


@overload
def sync(inner: UnaryMethod[Req, Resp], runner: Runner) -> SyncUnaryMethod[Req, Resp]: ...


@overload
def sync(
    inner: ServerStreamMethod[Req, Resp], runner: Runner
) -> SyncServerStreamMethod[Req, Resp]: ...


@overload
def sync(inner: BidiStreamMethod[Req, Resp], runner: Runner) -> SyncBidiStreamMethod[Req, Resp]: ...


def sync(
    inner: _Rpc[Req, Resp], runner: Runner
) -> (
    SyncUnaryMethod[Req, Resp] | SyncServerStreamMethod[Req, Resp] | SyncBidiStreamMethod[Req, Resp]
):
    """The sync twin of an async RPC attribute."""
    if isinstance(inner, PagedMethod):
        return SyncPagedMethod(inner, runner)
    if isinstance(inner, UnaryMethod):
        return SyncUnaryMethod(inner, runner)
    if isinstance(inner, ServerStreamMethod):
        return SyncServerStreamMethod(inner, runner)
    if isinstance(inner, BidiStreamMethod):
        return SyncBidiStreamMethod(inner, runner)
    raise TypeError(f"no sync twin for {inner!r}")
