"""BatchRecharge: the bidirectional stream for internal services.

Every request message is one wallet-paid recharge with its own ``request_id`` (the
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
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import grpc
from google.rpc import code_pb2

from gencharge.v1 import recharge_service_pb2 as pb
from server.audit.scope import current_scope
from server.auth.principal import Principal, principal
from server.core.errors import DomainError, internal_status, to_status_proto
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
        who = principal()
        call_scope = current_scope.get()
        if call_scope is not None:
            # Every item writes its own event; the stream itself adds none.
            call_scope.written = True
        window = asyncio.Semaphore(WINDOW)
        committer = GroupCommitter(self._recharger.db, ordered=True, slots=self._batch_slots)
        results: asyncio.Queue[_ItemTask | None] = asyncio.Queue()
        started: list[_ItemTask] = []

        async def read() -> None:
            try:
                index = 0
                async for request in request_iterator:
                    await window.acquire()
                    item_context = contextvars.copy_context()
                    scope = flows.item_scope(call_scope, index, who, request_id_var.get())
                    item_context.run(current_scope.set, scope)
                    task = asyncio.create_task(
                        self._run_item(who, index, request, committer), context=item_context
                    )
                    started.append(task)
                    results.put_nowait(task)
                    index += 1
            finally:
                results.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (task := await results.get()) is not None:
                response = await task
                started.remove(task)
                yield response
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
