"""BatchRecharge: the bidirectional stream for internal services.

Every request message is one wallet-paid recharge with its own ``request_id`` (the
idempotency key, scoped to the calling service like a unary ``Recharge``) and its own
``user_id`` (the customer whose wallet pays). Every response answers the request at the
same position, in order, with the recharge or the ``google.rpc.Status`` the unary call
would have failed with; a failed item never ends the stream.

Throughput comes from concurrency: up to :data:`WINDOW` items of a stream are in flight
at once (and at most ``db_pool_size`` items of all streams run at once), each as its
own short transaction through :meth:`Recharges.recharge` (the same two
statements as a unary recharge), so the database round trips of many items overlap
while the stream pays the per-call gRPC cost once. The window also bounds memory: a
slot is freed only when its response has been sent, so a slow item at the head holds
at most ``WINDOW`` finished results behind it, and reading stops (gRPC flow control
pushes back on the client) while the window is full.

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
from server.audit.outbox import AuditEvent, record_standalone
from server.audit.scope import AuditScope, current_scope
from server.auth.principal import Principal, principal
from server.core.errors import DomainError, code_name, internal_status, to_status_proto
from server.core.idempotency import request_hash
from server.core.logs import request_id_var
from server.recharge import domain
from server.recharge.rpc_base import RechargeRpcBase

log = logging.getLogger("gencharge.recharge.batch")

RPC = "/gencharge.v1.RechargeService/BatchRecharge"
#: Items of one stream in flight at once (running or finished but not yet sent).
WINDOW = 32

Context = grpc.aio.ServicerContext[Any, Any]
_ItemTask = asyncio.Task[pb.BatchRechargeResponse]


def _item_scope(call: AuditScope | None, index: int) -> AuditScope:
    request_id = request_id_var.get()
    return AuditScope(
        actor=call.actor if call else principal().subject,
        rpc=call.rpc if call else RPC,
        request_id=f"{call.request_id if call else request_id}/{index}",
        peer=call.peer if call else None,
        mutating=True,
    )


class BatchRpcs(RechargeRpcBase):
    _batch_slots: asyncio.Semaphore | None = None

    def _slots(self) -> asyncio.Semaphore:
        """Items of all streams that run at once: no more than the pool's steady
        connections, so batches never push the pool into overflow (connections opened
        and closed per checkout) nor starve unary calls of connections."""
        if self._batch_slots is None:
            self._batch_slots = asyncio.Semaphore(self._resources.settings.db_pool_size)
        return self._batch_slots

    async def BatchRecharge(
        self, request_iterator: AsyncIterable[pb.BatchRechargeRequest], context: Context
    ) -> AsyncIterator[pb.BatchRechargeResponse]:
        who = principal()
        call_scope = current_scope.get()
        if call_scope is not None:
            # Every item writes its own event; the stream itself adds none.
            call_scope.written = True
        window = asyncio.Semaphore(WINDOW)
        results: asyncio.Queue[_ItemTask | None] = asyncio.Queue()
        started: list[_ItemTask] = []

        async def read() -> None:
            try:
                index = 0
                async for request in request_iterator:
                    await window.acquire()
                    item_context = contextvars.copy_context()
                    item_context.run(current_scope.set, _item_scope(call_scope, index))
                    task = asyncio.create_task(
                        self._run_item(who, index, request), context=item_context
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
        self, who: Principal, index: int, request: pb.BatchRechargeRequest
    ) -> pb.BatchRechargeResponse:
        """One item, as a unary wallet Recharge would run it; never raises."""
        from server.recharge.servicer import recharge_message  # servicer imports this module

        response = pb.BatchRechargeResponse(index=index, request_id=request.request_id)
        try:
            order = domain.Order(
                request_id=request.request_id,
                phone_number=request.phone_number,
                plan_id=request.plan_id,
                offer_id=request.offer_id if request.HasField("offer_id") else None,
                payment_method=domain.WALLET,
                payment_details={},
                user_id=request.user_id,
            )
            async with self._slots():
                result = await self._recharges.recharge(
                    who, order, request_hash(request), rpc=RPC, source="recharge"
                )
            response.recharge.CopyFrom(recharge_message(result))
        except DomainError as exc:
            response.error.CopyFrom(to_status_proto(exc))
            await self._record_failure(exc.code, exc.reason, request)
        except Exception:
            log.exception("batch item %d failed", index, extra={"item_index": index})
            response.error.CopyFrom(internal_status(request_id_var.get()))
            await self._record_failure(code_pb2.INTERNAL, None, request)
        return response

    async def _record_failure(
        self, code: int, reason: str | None, request: pb.BatchRechargeRequest
    ) -> None:
        """The SECURITY event of a failed item (a failed unary Recharge gets one too)."""
        scope = current_scope.get()
        if scope is None:
            return
        details: dict[str, Any] = {
            "status": code_name(code),
            "item_request_id": request.request_id,
            "user_id": request.user_id,
        }
        if reason is not None:
            details["reason"] = reason
        try:
            await record_standalone(
                self._resources.engine,
                AuditEvent(
                    actor=scope.actor,
                    table_name="Recharge",  # as the interceptor names a failed Recharge
                    action_type="SECURITY",
                    details=details,
                    rpc=scope.rpc,
                    request_id=scope.request_id,
                    peer=scope.peer,
                    outcome="failed",
                ),
            )
        except Exception:
            log.exception("could not record the audit event of a failed batch item")
