"""The report RPCs of AdminService: RPC methods only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import cached_property
from typing import Any

import grpc

from gencharge.v1 import admin_service_pb2 as pb
from server.auth.principal import principal
from server.core.resources import Resources
from server.reports import convert, domain
from server.reports.flows import Reports

Context = grpc.aio.ServicerContext[Any, Any]


class ReportRpcs:
    """GenerateReport, ListReports, DownloadReport (a part of the AdminService servicer,
    composed in server/rpc/services.py)."""

    _resources: Resources

    @cached_property
    def _reports(self) -> Reports:
        return Reports.of(self._resources)

    async def GenerateReport(
        self, request: pb.GenerateReportRequest, context: Context
    ) -> pb.Report:
        who = principal()
        report = await self._reports.generate(
            request.report_type_id,
            convert.format_of(request.format),
            convert.parameters_of(request.parameters),
            generated_by=who.numeric_id if who.kind == "admin" else None,
            actor=who.subject,
        )
        return convert.report_message(report)

    async def ListReports(
        self, request: pb.ListReportsRequest, context: Context
    ) -> pb.ListReportsResponse:
        reports, token = await domain.list_reports(
            report_type_id=request.report_type_id,
            page_size=request.page_size,
            page_token=request.page_token,
            mongo=self._resources.mongo_db,
        )
        return pb.ListReportsResponse(
            reports=[convert.report_message(r) for r in reports], next_page_token=token
        )

    async def DownloadReport(
        self, request: pb.DownloadReportRequest, context: Context
    ) -> AsyncIterator[pb.ReportChunk]:
        report, chunks = await self._reports.download(request.report_id)
        offset = 0
        async for data in chunks:
            yield convert.first_chunk(report, data) if offset == 0 else convert.chunk(data, offset)
            offset += len(data)
