"""The insight RPCs of AdminService: ListAuditLogs and GetDashboardStats (RPC methods
only; composed into AdminServicer in server/rpc/services.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc

from gencharge.v1 import admin_service_pb2 as pb
from server.admin.insight import convert, domain
from server.admin.insight.masking import PII_RESOURCE
from server.auth.principal import principal
from server.auth.security import Security
from server.core.db import Database
from server.core.resources import Resources

Context = grpc.aio.ServicerContext[Any, Any]


class InsightRpcs:
    """ListAuditLogs (MongoDB AuditLog) and GetDashboardStats (PostgreSQL)."""

    _resources: Resources
    _db: Database
    _security: Security

    async def ListAuditLogs(
        self, request: pb.ListAuditLogsRequest, context: Context
    ) -> pb.ListAuditLogsResponse:
        filters = convert.audit_filters(request)
        personal_data = await self._security.matrix.allows(
            principal().role_id, PII_RESOURCE, "read"
        )
        records, token = await domain.list_audit_logs(
            filters,
            page_size=request.page_size,
            page_token=request.page_token,
            personal_data=personal_data,
            db=self._resources.mongo_db,
        )
        return pb.ListAuditLogsResponse(
            audit_logs=[convert.audit_entry(r) for r in records], next_page_token=token
        )

    async def GetDashboardStats(
        self, request: pb.GetDashboardStatsRequest, context: Context
    ) -> pb.DashboardStats:
        now = datetime.now(UTC)
        start, end = domain.dashboard_range(
            convert.optional_time(request, "start_time"),
            convert.optional_time(request, "end_time"),
            now,
        )
        async with self._db.read_only() as conn:
            stats = await domain.dashboard(start, end, now, conn=conn)
        return convert.dashboard_message(stats)
