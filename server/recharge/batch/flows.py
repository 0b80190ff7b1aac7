"""BatchRecharge items: each runs as a unary wallet Recharge would, in an audit scope
of its own (server/recharge/batch/servicer.py explains the stream)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from server.audit.outbox import AuditEvent, record_standalone
from server.audit.scope import AuditScope, current_scope
from server.auth.principal import Principal
from server.core.errors import code_name
from server.recharge import flows as recharge
from server.recharge.domain import Order, RechargeResult
from server.recharge.flows import Recharger

log = logging.getLogger("gencharge.recharge.batch")


def item_scope(call: AuditScope | None, index: int, who: Principal, request_id: str) -> AuditScope:
    """The audit scope of item ``index``: the call's actor, RPC and peer, request id
    ``<x-request-id>/<index>``."""
    if call is None:
        return AuditScope(
            actor=who.subject, rpc="", request_id=f"{request_id}/{index}", peer=None, mutating=True
        )
    return AuditScope(
        actor=call.actor,
        rpc=call.rpc,
        request_id=f"{call.request_id}/{index}",
        peer=call.peer,
        mutating=True,
    )


async def run_item(
    r: Recharger, who: Principal, order: Order, fingerprint: str, slots: asyncio.Semaphore
) -> RechargeResult:
    """One item (wallet-paid), once ``slots`` has room."""
    async with slots:
        return await recharge.recharge(r, who, order, fingerprint, source="recharge")


async def record_failure(
    r: Recharger, code: int, reason: str | None, *, item_request_id: str, user_id: int
) -> None:
    """The SECURITY event of a failed item (a failed unary Recharge gets one too)."""
    scope = current_scope.get()
    if scope is None:
        return
    details: dict[str, Any] = {
        "status": code_name(code),
        "item_request_id": item_request_id,
        "user_id": user_id,
    }
    if reason is not None:
        details["reason"] = reason
    try:
        await record_standalone(
            r.db.engine,
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
