"""BatchRecharge items: each is checked and priced as a unary wallet Recharge is, in an
audit scope of its own, and written with the stream's group (server/recharge/batch/
servicer.py explains the stream, group.py the group commit)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from server.audit.outbox import AuditEvent, record_standalone
from server.audit.scope import AuditScope, current_scope
from server.auth.principal import Principal
from server.core.errors import code_name
from server.recharge import flows as recharge
from server.recharge import wallet
from server.recharge.domain import Order, RechargeResult
from server.recharge.flows import Recharger
from server.recharge.group import GroupCommitter

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
    r: Recharger,
    who: Principal,
    index: int,
    order: Order,
    fingerprint: str,
    committer: GroupCommitter,
) -> RechargeResult:
    """Item ``index`` (wallet-paid), checked and priced as a unary Recharge is, written
    in the stream's next group (server/recharge/group.py)."""
    try:
        item = wallet.prepare(who, order, fingerprint, source="recharge", scope=None)

        async def in_group(args: dict[str, Any]) -> Mapping[str, Any]:
            return await committer.submit(args, index)

        return await recharge.wallet_recharge(r, item, in_group)
    finally:
        committer.done(index)


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
