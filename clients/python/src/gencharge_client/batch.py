"""``batch_recharge``: many wallet-paid recharges over one BatchRecharge stream.

The helper takes an iterable (or async iterable) of ``BatchRechargeRequest`` items,
keeps at most ``max_in_flight`` of them unanswered at the server, and yields
``BatchOutcome(item, result)`` in the items' order: ``result`` is the ``Recharge``, or
the item's typed error (``InsufficientFunds``, ``NotFound``...; a failed item does not
end the stream). Each item gets its ``request_id`` once (a UUID4 unless it has one).

If the stream breaks (``UNAVAILABLE``, e.g. a dropped connection), a new stream is
opened and the unanswered items are sent again with the same request ids: the server
answers an item it already applied with the original result, so a dropped connection
never debits twice. Consecutive breaks without progress are bounded by the retry
policy's ``max_attempts``, with its backoff between them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import grpc

from gencharge_client._runner import from_sync
from gencharge_client._transport import Metadata, Transport, with_request_id
from gencharge_client.errors import GenChargeError, from_rpc_error, from_status
from gencharge_client.retry import RetryPolicy
from gencharge_client.v1 import recharge_service_pb2 as recharge_pb
from gencharge_client.v1.methods import METHODS

BATCH_RECHARGE = METHODS["/gencharge.v1.RechargeService/BatchRecharge"]
DEFAULT_MAX_IN_FLIGHT = 64


class BatchOutcome(NamedTuple):
    """One item's answer: ``result`` is the ``Recharge`` or the item's typed error."""

    item: recharge_pb.BatchRechargeRequest
    result: recharge_pb.Recharge | GenChargeError

    @property
    def ok(self) -> bool:
        return not isinstance(self.result, GenChargeError)


@dataclass
class BatchProgress:
    """Counts so far, handed to ``on_progress`` after every answered item."""

    #: Items taken from the input and sent (each counted once, however often resent).
    sent: int = 0
    #: Items answered: succeeded + failed.
    completed: int = 0
    succeeded: int = 0
    failed: int = 0
    #: Streams reopened after a break.
    reconnects: int = 0
    #: Items sent again on a reopened stream (same request ids).
    resent: int = 0

    @property
    def in_flight(self) -> int:
        return self.sent - self.completed


class BatchProtocolError(RuntimeError):
    """The server answered out of order or ended the stream with items unanswered."""


Items = Iterable[recharge_pb.BatchRechargeRequest] | AsyncIterable[recharge_pb.BatchRechargeRequest]
OnProgress = Callable[[BatchProgress], None]


class _Batch:
    """The state of one batch across its streams."""

    def __init__(self, items: Items, max_in_flight: int) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        source = items if isinstance(items, AsyncIterable) else from_sync(items)
        self.source = aiter(source)
        self.max_in_flight = max_in_flight
        #: Sent (or about to be) and not yet answered, in order.
        self.pending: deque[recharge_pb.BatchRechargeRequest] = deque()
        self.exhausted = False
        self.source_error: BaseException | None = None
        self.room = asyncio.Event()
        self.progress = BatchProgress()

    @property
    def done(self) -> bool:
        return self.exhausted and not self.pending

    async def write(self, call: grpc.aio.StreamStreamCall[Any, Any]) -> None:
        """Resend what is unanswered, then feed new items while there is room."""
        try:
            for item in list(self.pending):
                self.progress.resent += 1
                await call.write(item)
            while not self.exhausted:
                while len(self.pending) >= self.max_in_flight:
                    self.room.clear()
                    await self.room.wait()
                try:
                    item = await anext(self.source)
                except StopAsyncIteration:
                    self.exhausted = True
                    break
                except BaseException as exc:
                    self.source_error = exc
                    call.cancel()
                    return
                item, _ = with_request_id(BATCH_RECHARGE, item)
                self.pending.append(item)
                self.progress.sent += 1
                await call.write(item)
            await call.done_writing()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            return  # the call ended: the reader sees why

    def answer(self, response: recharge_pb.BatchRechargeResponse) -> BatchOutcome:
        if not self.pending:
            raise BatchProtocolError("an answer to no request")
        item = self.pending.popleft()
        self.room.set()
        if response.request_id != item.request_id:
            raise BatchProtocolError(
                f"answer for {response.request_id!r} where {item.request_id!r} was due"
            )
        result: recharge_pb.Recharge | GenChargeError
        if response.WhichOneof("result") == "recharge":
            result = response.recharge
            self.progress.succeeded += 1
        else:
            result = from_status(response.error, request_id=item.request_id)
            self.progress.failed += 1
        self.progress.completed += 1
        return BatchOutcome(item, result)


async def batch_recharge(
    transport: Transport,
    items: Items,
    *,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    on_progress: OnProgress | None = None,
    retry: RetryPolicy | None = None,
    metadata: Metadata = (),
    timeout: float | None = None,
) -> AsyncIterator[BatchOutcome]:
    """Stream ``items`` through BatchRecharge; yield each item's outcome in order."""
    batch = _Batch(items, max_in_flight)
    attempts = transport.attempts(BATCH_RECHARGE, retry)
    while not batch.done:
        headers, token = await transport.headers(metadata)
        call = transport.open_bidi(BATCH_RECHARGE, headers, timeout)
        writer = asyncio.create_task(batch.write(call))
        try:
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    break
                outcome = batch.answer(cast(recharge_pb.BatchRechargeResponse, response))
                attempts.progressed()
                if on_progress is not None:
                    on_progress(batch.progress)
                yield outcome
            await writer
            if not batch.done:
                raise BatchProtocolError(f"the stream ended with {len(batch.pending)} unanswered")
            return
        except grpc.aio.AioRpcError as exc:
            error = from_rpc_error(exc)
        except asyncio.CancelledError:
            if batch.source_error is not None:
                raise batch.source_error from None
            raise
        finally:
            writer.cancel()
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        if batch.source_error is not None:
            raise batch.source_error
        await attempts.again(error, token)
        batch.progress.reconnects += 1
