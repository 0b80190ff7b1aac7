"""BatchRecharge and BatchRechargeChunks: the bidirectional streams for internal services.

Every BatchRecharge request message is one wallet-paid recharge with its own ``request_id`` (the
idempotency key, scoped to the calling service like a unary ``Recharge``) and its own
``user_id`` (the customer whose wallet pays). Every response answers the request at the
same position, in order, with the recharge or the ``google.rpc.Status`` the unary call
would have failed with; a failed item never ends the stream.

Throughput comes from group commit: up to :data:`WINDOW` items of a stream are in
flight at once; each is checked and priced in its own task, and the stream's
:class:`~server.recharge.group.GroupCommitter` writes the priced items in groups,
one statement and one transaction per group, in stream order (server/recharge/group.py explains the
window; at most ``db_pool_size`` groups of all streams are written at once). The stream
pays the per-call gRPC cost once and the database one commit per group. The window
also bounds memory: a slot is freed only when its response has been sent, so a slow
item at the head holds at most ``WINDOW`` finished results behind it, and reading stops
(gRPC flow control pushes back on the client) while the window is full.

Audit: the call's scope holds one event, so each item runs in a copy of the context
with an audit scope of its own (same actor, RPC and peer; request id
``<x-request-id>/<index>``): a successful item writes its own outbox row in its own
transaction, and a failed item gets its own SECURITY event (outcome "failed"), as a
failed unary Recharge does. The call's own scope is marked written, so the stream adds
no extra, empty event of its own.

BatchRechargeChunks runs the same items the same way; only the framing differs: a
request message carries up to :data:`MAX_CHUNK` items, and each response message the
answers that are ready in order (those of one written group, usually), so the stream
pays gRPC's per-message cost (a system call or two each way, about 40 % of a
BatchRecharge item's server CPU in `make profile`) once per message instead of once
per item.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import grpc
from google.rpc import code_pb2

from gencharge.v1 import recharge_service_pb2 as pb
from server.audit.scope import current_scope
from server.auth.principal import Principal, principal
from server.core.errors import DomainError, InvalidArgument, internal_status, to_status_proto
from server.core.idempotency import request_hash
from server.core.logs import request_id_var
from server.recharge import convert
from server.recharge.batch import flows
from server.recharge.flows import Recharger
from server.recharge.group import MAX_GROUP, GroupCommitter

log = logging.getLogger("gencharge.recharge.batch")

#: Items of one stream in flight at once (running or finished but not yet sent): room
#: for a group being written and the next one gathering behind it.
WINDOW = 2 * MAX_GROUP
#: Items in one BatchRechargeChunks message at most (and answers in one response).
MAX_CHUNK = 500

Context = grpc.aio.ServicerContext[Any, Any]
_ItemTask = asyncio.Task[pb.BatchRechargeResponse]


class BatchRpcs:
    """BatchRecharge: a part of the RechargeService servicer, composed in
    server/rpc/services.py."""

    _recharger: Recharger
    _batch_slots: asyncio.Semaphore

    async def BatchRecharge(
        self, request_iterator: AsyncIterable[pb.BatchRechargeRequest], context: Context
    ) -> AsyncIterator[pb.BatchRechargeResponse]:
        async for answers in self._answers(request_iterator, most=1):
            yield answers[0]

    async def BatchRechargeChunks(
        self, request_iterator: AsyncIterable[pb.BatchRechargeChunksRequest], context: Context
    ) -> AsyncIterator[pb.BatchRechargeChunksResponse]:
        async def items() -> AsyncIterator[pb.BatchRechargeRequest]:
            async for chunk in request_iterator:
                if not 1 <= len(chunk.items) <= MAX_CHUNK:
                    raise InvalidArgument.field(
                        "items", f"1 to {MAX_CHUNK} items per message, not {len(chunk.items)}"
                    )
                for item in chunk.items:
                    yield item

        async for answers in self._answers(items(), most=MAX_CHUNK):
            yield pb.BatchRechargeChunksResponse(results=answers)

    async def _answers(
        self, items: AsyncIterable[pb.BatchRechargeRequest], *, most: int
    ) -> AsyncIterator[list[pb.BatchRechargeResponse]]:
        """Run the stream's items; yield their answers in stream order, each time the
        next one is ready, with up to ``most`` of the consecutive ones ready after it.
        A failure of ``items`` itself ends the stream once the items read before it
        are answered."""
        who = principal()
        call_scope = current_scope.get()
        if call_scope is not None:
            # Every item writes its own event; the stream itself adds none.
            call_scope.written = True
        window = asyncio.Semaphore(WINDOW)
        committer = GroupCommitter(self._recharger.db, ordered=True, slots=self._batch_slots)
        started: deque[_ItemTask] = deque()
        arrived = asyncio.Event()
        reading = True

        async def read() -> None:
            nonlocal reading
            try:
                index = 0
                async for request in items:
                    await window.acquire()
                    item_context = contextvars.copy_context()
                    scope = flows.item_scope(call_scope, index, who, request_id_var.get())
                    item_context.run(current_scope.set, scope)
                    started.append(
                        asyncio.create_task(
                            self._run_item(who, index, request, committer), context=item_context
                        )
                    )
                    arrived.set()
                    index += 1
            finally:
                reading = False
                arrived.set()

        reader = asyncio.create_task(read())
        try:
            while True:
                if not started:
                    if not reading:
                        break
                    arrived.clear()
                    await arrived.wait()
                    continue
                answers = [await started[0]]
                started.popleft()
                while started and started[0].done() and len(answers) < most:
                    answers.append(started.popleft().result())
                yield answers
                for _ in answers:
                    window.release()
            await reader  # the request stream's own failure (e.g. cancelled), if any
        finally:
            for pending in (reader, *started):
                pending.cancel()

    async def _run_item(
        self,
        who: Principal,
        index: int,
        request: pb.BatchRechargeRequest,
        committer: GroupCommitter,
    ) -> pb.BatchRechargeResponse:
        """One item, as a unary wallet Recharge would run it; never raises."""
        response = pb.BatchRechargeResponse(index=index, request_id=request.request_id)
        failure: tuple[int, str | None] | None = None
        try:
            result = await flows.run_item(
                self._recharger,
                who,
                index,
                convert.batch_order(request),
                request_hash(request),
                committer,
            )
            response.recharge.CopyFrom(convert.recharge_message(result))
        except DomainError as exc:
            response.error.CopyFrom(to_status_proto(exc))
            failure = (exc.code, exc.reason)
        except Exception:
            log.exception("batch item %d failed", index, extra={"item_index": index})
            response.error.CopyFrom(internal_status(request_id_var.get()))
            failure = (code_pb2.INTERNAL, None)
        finally:
            committer.done(index)  # refused before it was priced: the next items may go
        if failure is not None:
            await flows.record_failure(
                self._recharger,
                *failure,
                item_request_id=request.request_id,
                user_id=request.user_id,
            )
        return response
