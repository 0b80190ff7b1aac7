"""Reports: proto <-> domain values."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct

from gencharge.v1 import admin_service_pb2 as pb
from server.core import protoconv
from server.reports.catalog import ReportFormat
from server.reports.domain import Report

FORMATS: dict[int, ReportFormat] = {
    pb.REPORT_FORMAT_PDF: ReportFormat.PDF,
    pb.REPORT_FORMAT_EXCEL: ReportFormat.EXCEL,
    pb.REPORT_FORMAT_CSV: ReportFormat.CSV,
}
_FORMAT_NUMBERS = {fmt: number for number, fmt in FORMATS.items()}


def format_of(value: int) -> ReportFormat | None:
    """The requested format; None for UNSPECIFIED or an unknown number (refused)."""
    return FORMATS.get(value)


def parameters_of(parameters: Struct) -> dict[str, Any]:
    value: dict[str, Any] = json_format.MessageToDict(parameters)
    return value


def report_message(report: Report) -> pb.Report:
    return pb.Report(
        report_id=report.report_id,
        report_type_id=report.report_type_id,
        report_type_name=report.report_type_name,
        generated_by=report.generated_by or 0,
        format=_FORMAT_NUMBERS[report.format],  # type: ignore[arg-type]
        details=protoconv.struct(report.details),
        created_at=protoconv.timestamp(report.created_at),
        download_uri=report.download_uri,
        sha256=report.sha256,
        size_bytes=report.size_bytes,
        row_count=report.row_count,
        file_name=report.file_name,
    )


def first_chunk(report: Report, data: bytes) -> pb.ReportChunk:
    return pb.ReportChunk(
        data=data,
        offset=0,
        size_bytes=report.size_bytes,
        sha256=report.sha256,
        file_name=report.file_name,
        content_type=report.content_type,
    )


def chunk(data: bytes, offset: int) -> pb.ReportChunk:
    return pb.ReportChunk(data=data, offset=offset)
