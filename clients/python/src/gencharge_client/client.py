"""The clients: :class:`AsyncClient` (grpc.aio) and :class:`Client` (blocking).

Both expose every service as an attribute (``client.recharge``, ``client.wallet``,
``client.auth``...; see ``gencharge_client.v1.services``) plus logins, credentials views
and the BatchRecharge helper. :class:`Client` runs an :class:`AsyncClient` on a
private event loop thread: one implementation of credentials, retries and errors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

import grpc

from gencharge_client import credentials as creds
from gencharge_client._runner import Runner
from gencharge_client._transport import Metadata, Transport
from gencharge_client.batch import DEFAULT_MAX_IN_FLIGHT, BatchOutcome, Items, OnProgress
from gencharge_client.batch import batch_recharge as _batch_recharge
from gencharge_client.retry import DEFAULT_RETRY, RetryPolicy
from gencharge_client.v1.services import AsyncServices, AuthService, SyncServices

P = ParamSpec("P")
T = TypeVar("T")
ChannelOptions = Sequence[tuple[str, Any]]


def open_channel(
    target: str, tls: bool | grpc.ChannelCredentials, options: ChannelOptions
) -> grpc.aio.Channel:
    """A grpc.aio channel to ``target``: plaintext, TLS with the system roots
    (``tls=True``) or the given channel credentials."""
    if tls is False:
        return grpc.aio.insecure_channel(target, options=options)
    channel_credentials = grpc.ssl_channel_credentials() if tls is True else tls
    return grpc.aio.secure_channel(target, channel_credentials, options=options)


F = TypeVar("F", bound=Callable[..., Any])


def _named_like(function: F, original: Callable[..., Any]) -> F:
    """``function`` with the name and docstring of ``original`` (help() shows them)."""
    function.__name__ = original.__name__
    function.__qualname__ = original.__name__
    function.__doc__ = original.__doc__
    return function


def _over_auth(
    function: Callable[Concatenate[AuthService, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]]:
    """An AsyncClient method calling a credentials function with the client's
    AuthService (no credentials needed: it is how they are obtained)."""

    async def call(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await function(self.transport.auth, *args, **kwargs)

    return _named_like(call, function)


class AsyncClient(AsyncServices):
    """The async GenCharge client.

    ``AsyncClient("api.example.com:443", tls=True, credentials=...)`` opens a channel;
    ``channel=`` uses yours instead. ``credentials`` authorizes every call (see
    :mod:`gencharge_client.credentials`); :meth:`with_credentials` gives a view with
    other credentials over the same connection (a BFF: one client, one view per end
    user). ``retry`` is the default :class:`RetryPolicy`; ``metadata`` is sent with
    every call.
    """

    def __init__(
        self,
        target: str = "",
        *,
        credentials: creds.Credentials | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        tls: bool | grpc.ChannelCredentials = False,
        channel: grpc.aio.Channel | None = None,
        options: ChannelOptions = (),
        metadata: Metadata = (),
        _transport: Transport | None = None,
    ) -> None:
        self._owns_channel = False
        if _transport is None:
            if channel is None:
                if not target:
                    raise ValueError("give a target (host:port) or a channel")
                channel = open_channel(target, tls, options)
                self._owns_channel = True
            _transport = Transport(channel, credentials=credentials, retry=retry, metadata=metadata)
        self.transport = _transport
        super().__init__(_transport)

    # --- views ------------------------------------------------------------------------

    @property
    def credentials(self) -> creds.Credentials | None:
        return self.transport.credentials

    def with_credentials(self, credentials: creds.Credentials | None) -> AsyncClient:
        """This connection with other credentials (closing the view closes nothing)."""
        return AsyncClient(_transport=self.transport.with_credentials(credentials))

    def with_retry(self, retry: RetryPolicy) -> AsyncClient:
        """This connection with another default retry policy."""
        return AsyncClient(_transport=self.transport.with_retry(retry))

    # --- logins (gencharge_client.credentials, over this connection) -----------------

    login = _over_auth(creds.login)
    login_admin = _over_auth(creds.login_admin)
    request_otp = _over_auth(creds.request_otp)
    login_otp = _over_auth(creds.login_otp)

    # --- helpers ----------------------------------------------------------------------

    def batch_recharge(
        self,
        items: Items,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        on_progress: OnProgress | None = None,
        retry: RetryPolicy | None = None,
        metadata: Metadata = (),
        timeout: float | None = None,
    ) -> AsyncIterator[BatchOutcome]:
        """Recharge every item over BatchRecharge (service accounts with the scope
        ``recharges.write``): at most ``max_in_flight`` unanswered, outcomes in order,
        resumed with the same request ids if the stream breaks. See
        :mod:`gencharge_client.batch`."""
        return _batch_recharge(
            self.transport,
            items,
            max_in_flight=max_in_flight,
            on_progress=on_progress,
            retry=retry,
            metadata=metadata,
            timeout=timeout,
        )

    # --- lifetime ---------------------------------------------------------------------

    async def close(self) -> None:
        """Close the channel this client opened (views and given channels stay open)."""
        if self._owns_channel:
            await self.transport.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncClient(credentials={self.transport.credentials!r})"


def _blocking(
    method: Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[Client, P], T]:
    """A Client method that runs the AsyncClient method of the same name."""

    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._runner.run(method(self._async, *args, **kwargs))

    return _named_like(call, method)


def _iterating(
    method: Callable[Concatenate[AsyncClient, P], AsyncIterator[T]],
) -> Callable[Concatenate[Client, P], Iterator[T]]:
    """A Client method iterating, through the loop, what the AsyncClient method yields
    (the items it reads, it reads on the loop thread: give ones that do not block)."""

    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return self._runner.iterate(method(self._async, *args, **kwargs))

    return _named_like(call, method)


async def _open_async(**kwargs: Any) -> AsyncClient:
    """An AsyncClient made on the runner's loop (its channel belongs to that loop)."""
    return AsyncClient(**kwargs)


class Client(SyncServices):
    """The blocking GenCharge client: the same API as :class:`AsyncClient` without
    ``await`` (iterators instead of async iterators). Thread-safe: calls from many
    threads share its private event loop."""

    _runner: Runner
    _async: AsyncClient

    def __init__(
        self,
        target: str = "",
        *,
        credentials: creds.Credentials | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        tls: bool | grpc.ChannelCredentials = False,
        options: ChannelOptions = (),
        metadata: Metadata = (),
        _view_of: Client | None = None,
        _async: AsyncClient | None = None,
    ) -> None:
        if _view_of is not None and _async is not None:
            self._runner = _view_of._runner
            self._owner = False
            self._async = _async
        else:
            self._runner = Runner()
            self._owner = True
            self._async = self._runner.run(
                _open_async(
                    target=target,
                    credentials=credentials,
                    retry=retry,
                    tls=tls,
                    options=options,
                    metadata=metadata,
                )
            )
        super().__init__(self._async, self._runner)

    @property
    def credentials(self) -> creds.Credentials | None:
        return self._async.credentials

    def with_credentials(self, credentials: creds.Credentials | None) -> Client:
        """This connection with other credentials."""
        return Client(_view_of=self, _async=self._async.with_credentials(credentials))

    def with_retry(self, retry: RetryPolicy) -> Client:
        """This connection with another default retry policy."""
        return Client(_view_of=self, _async=self._async.with_retry(retry))

    login = _blocking(AsyncClient.login)
    login_admin = _blocking(AsyncClient.login_admin)
    request_otp = _blocking(AsyncClient.request_otp)
    login_otp = _blocking(AsyncClient.login_otp)

    batch_recharge = _iterating(AsyncClient.batch_recharge)

    def close(self) -> None:
        """Close the connection and stop the loop (views: nothing to close)."""
        if self._owner and not self._runner.closed:
            self._runner.run(self._async.close())
            self._runner.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(credentials={self._async.credentials!r})"
