"""Authentication, RBAC, the UNIMPLEMENTED gate and audit, around every gencharge RPC.

Runs inside the request interceptor (which owns request ids, access logs and the error
mapping). Per call, in the RPC's own task:

1. authenticate the bearer token (anonymous without one; a bad one is UNAUTHENTICATED
   even on public RPCs),
2. enforce the RPC's declared access rule (UNAUTHENTICATED / PERMISSION_DENIED),
3. answer UNIMPLEMENTED for contract RPCs no servicer implements yet,
4. run the handler inside an audit scope; a mutating call that succeeded has exactly
   one AuditLog event (written with its change, or here if it named none); denied and
   failed calls are recorded as SECURITY events, within a per-address budget
   (server/audit/gate.py).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.rpc import code_pb2
from sqlalchemy.ext.asyncio import AsyncEngine

from server.audit.gate import SecurityEventGate
from server.audit.outbox import AuditEvent, record_standalone
from server.audit.scope import AuditScope, current_scope
from server.auth.access import AccessRules, Authenticator, PermissionMatrix, Rule, authorize
from server.auth.principal import current_principal
from server.core.errors import DomainError, Unimplemented, code_name
from server.core.logs import request_id_var
from server.core.peers import client_peer
from server.rpc.interceptors.request import Continuation, Handler, WrappedHandlers, rebuild

log = logging.getLogger("gencharge.access")

_DENIED = {code_pb2.UNAUTHENTICATED, code_pb2.PERMISSION_DENIED, code_pb2.RESOURCE_EXHAUSTED}
_NOT_SECURITY = {code_pb2.UNIMPLEMENTED}


class AccessInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        rules: AccessRules,
        authenticator: Authenticator,
        matrix: PermissionMatrix,
        unimplemented: frozenset[str],
        security_gate: SecurityEventGate | None = None,
    ) -> None:
        self._engine = engine
        self._gate = security_gate
        self._rules = rules
        self._authenticator = authenticator
        self._matrix = matrix
        self._unimplemented = unimplemented
        self._handlers = WrappedHandlers(self._wrap)

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if self._rules.get(method) is None:
            return handler  # health, reflection
        return self._handlers.get(handler, method)

    async def _enter(self, rule: Rule, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        scope = AuditScope(
            actor="anonymous",
            rpc=rule.method,
            request_id=request_id_var.get(),
            peer=client_peer(context),
            mutating=rule.mutating,
        )
        current_scope.set(scope)
        authorization = None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                authorization = str(value)
                break
        principal = await self._authenticator.authenticate(authorization)
        current_principal.set(principal)
        scope.actor = principal.subject
        await authorize(rule, principal, self._matrix)
        if rule.method in self._unimplemented:
            raise Unimplemented(f"{rule.method} is part of the contract but not implemented yet")

    async def _succeeded(self, rule: Rule) -> None:
        scope = current_scope.get()
        if scope is None or not rule.mutating or scope.written:
            return
        change = scope.pending
        await record_standalone(
            self._engine,
            AuditEvent(
                actor=scope.actor,
                table_name=change.table_name if change else _table_of(rule),
                action_type=change.action_type if change else "UPDATE",
                details=change.details if change else {},
                rpc=rule.method,
                request_id=scope.request_id,
                peer=scope.peer,
            ),
        )
        scope.written = True

    async def _failed(self, rule: Rule, exc: BaseException) -> None:
        code = exc.code if isinstance(exc, DomainError) else code_pb2.INTERNAL
        if code in _NOT_SECURITY:
            return
        denied = code in _DENIED
        if not denied and not rule.mutating:
            return
        scope = current_scope.get()
        if self._gate is not None and not self._gate.admit(
            scope.peer if scope else None, rule.method
        ):
            return  # over this address's budget: counted in the window's summary
        details: dict[str, Any] = {"status": code_name(code)}
        if isinstance(exc, DomainError):
            details["reason"] = exc.reason
        try:
            await record_standalone(
                self._engine,
                AuditEvent(
                    actor=scope.actor if scope else "anonymous",
                    table_name=_table_of(rule),
                    action_type="SECURITY",
                    details=details,
                    rpc=rule.method,
                    request_id=scope.request_id if scope else "",
                    peer=scope.peer if scope else None,
                    outcome="denied" if denied else "failed",
                ),
            )
        except Exception:
            log.exception("could not record a security event")

    def _wrap(self, handler: Handler, method: str) -> Handler:
        rule = self._rules.get(method)
        assert rule is not None
        inner_unary: Any = handler.unary_unary or handler.stream_unary
        inner_stream: Any = handler.unary_stream or handler.stream_stream

        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                await self._enter(rule, context)
                response = await inner_unary(request, context)
                await self._succeeded(rule)
                return response
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await self._failed(rule, exc)
                raise

        async def streaming(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            try:
                await self._enter(rule, context)
                async for response in inner_stream(request, context):
                    yield response
                await self._succeeded(rule)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await self._failed(rule, exc)
                raise

        return rebuild(handler, unary, streaming)


def _table_of(rule: Rule) -> str:
    if rule.resource:
        return rule.resource
    service = rule.method.split("/")[1].rsplit(".", 1)[-1]
    return service.removesuffix("Service")
