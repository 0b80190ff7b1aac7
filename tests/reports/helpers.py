"""Shared pieces of the report tests: a data set spread over past days, generation,
and readers of the three file formats."""

from __future__ import annotations

import csv
import hashlib
import io
import uuid
import zipfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import grpc
import openpyxl
from google.protobuf import struct_pb2
from pypdf import PdfReader
from sqlalchemy import text

from gencharge.v1 import admin_service_pb2 as pb
from gencharge.v1 import admin_service_pb2_grpc, recharge_service_pb2_grpc
from gencharge.v1 import recharge_service_pb2 as rpb
from server.reports.catalog import Kind, ReportType
from tests.helpers.auth import Actor, register_user
from tests.helpers.money import fund, make_offer, make_plan

#: The data set lives on these past days (UTC): the audit relay's live events of
#: today never fall into the reports' range.
DAYS_BACK = (9, 8, 6)


def window(today: date | None = None) -> dict[str, str]:
    today = today or datetime.now(UTC).date()
    return {
        "from": (today - timedelta(days=10)).isoformat(),
        "to": (today - timedelta(days=5)).isoformat(),
    }


def bounds(params: dict[str, str]) -> tuple[datetime, datetime]:
    start = datetime.fromisoformat(params["from"]).replace(tzinfo=UTC)
    end = datetime.fromisoformat(params["to"]).replace(tzinfo=UTC) + timedelta(days=1)
    return start, end


def admin_stub(channel: grpc.aio.Channel) -> admin_service_pb2_grpc.AdminServiceStub:
    return admin_service_pb2_grpc.AdminServiceStub(channel)


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(values)
    return result


@dataclass
class DataSet:
    users: list[Actor]
    plan_ids: list[int]
    offer_id: int


async def seed_data(channel: grpc.aio.Channel, resources: Any) -> DataSet:
    """Customers (one referred), top-ups, recharges with and without an offer, then
    every row moved to one of DAYS_BACK, plus MongoDB audit, content and backup logs."""
    referrer = await register_user(channel, name="Asha Referrer")
    async with resources.db.read_only() as conn:
        code = (
            await conn.execute(
                text("SELECT referral_code FROM users WHERE user_id = :u"),
                {"u": referrer.user_id},
            )
        ).scalar_one()
    referred = await register_user(channel, name="Ravi Referred", referral_code=code)
    third = await register_user(channel, name="Meera Third")
    users = [referrer, referred, third]
    plan_ids = [
        await make_plan(resources, price="199.00", name="Smart 199"),
        await make_plan(resources, price="299.50", name="Max 299"),
    ]
    offer_id = await make_offer(resources, offer_name="Cashback 10", cashback_amount=Decimal(10))
    stub = recharge_service_pb2_grpc.RechargeServiceStub(channel)
    for index, user in enumerate(users):
        await fund(resources, user.user_id, "1000")
        for plan_id in plan_ids[: index + 1]:
            fields: dict[str, Any] = {"request_id": uuid.uuid4().hex, "plan_id": plan_id}
            if index == 2:
                fields["offer_id"] = offer_id
            await stub.Recharge(rpb.RechargeRequest(**fields), metadata=user.metadata)
    now = datetime.now(UTC)
    async with resources.db.transaction() as conn:
        # Move the rows into the past: triggers off (a final ledger row is immutable).
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        for index, user in enumerate(users):
            for table in ("users", "transactions"):
                await conn.execute(
                    text(
                        f"UPDATE {table} SET created_at = created_at - make_interval(days => :b)"
                        " WHERE user_id = :u"
                    ),
                    {"b": DAYS_BACK[index], "u": user.user_id},
                )
        await conn.execute(
            text("UPDATE referralrewards SET created_at = created_at - make_interval(days => 7)")
        )
        await conn.execute(
            text(
                "INSERT INTO backup (backup_id, snapshot_name, source_db, backup_status)"
                " VALUES ('bk_1', 'snap_one', 'PostgreSQL', 'success')"
            )
        )
    mongo = resources.mongo_db
    await mongo["AuditLog"].insert_many(
        [
            {
                "audit_id": f"test-{i}",
                "user_id": f"user:{users[i % 3].user_id}",
                "table_name": "transactions",
                "action_type": "INSERT" if i % 2 else "UPDATE",
                "details": {},
                "created_at": now - timedelta(days=DAYS_BACK[i % 3], minutes=i),
            }
            for i in range(7)
        ]
    )
    await mongo["Content"].insert_many(
        [
            {"content_id": 900 + i, "content_type_id": 1 + i % 2, "title": f"Item {i}"}
            for i in range(5)
        ]
    )
    await mongo["BackupRestoreLogs"].insert_many(
        [
            {
                "log_id": f"log_{i}",
                "job_id": "bk_1" if i else "bk_missing",
                "job_type": "backup",
                "status": "completed",
                "created_at": now - timedelta(days=8, minutes=i),
                "action_by": 1,
            }
            for i in range(3)
        ]
    )
    return DataSet(users, plan_ids, offer_id)


async def generate(
    channel: grpc.aio.Channel,
    actor: Actor,
    report_type_id: int,
    fmt: int,
    parameters: dict[str, Any] | None = None,
) -> pb.Report:
    return await admin_stub(channel).GenerateReport(
        pb.GenerateReportRequest(
            report_type_id=report_type_id,
            format=fmt,  # type: ignore[arg-type]
            parameters=struct(parameters or {}),
        ),
        metadata=actor.metadata,
    )


def stored_path(report: pb.Report) -> Path:
    uri = urlparse(report.download_uri)
    assert uri.scheme == "file"
    return Path(unquote(uri.path))


async def download(channel: grpc.aio.Channel, actor: Actor, report_id: int) -> bytes:
    """The DownloadReport stream reassembled, checked against its first chunk."""
    stream = admin_stub(channel).DownloadReport(
        pb.DownloadReportRequest(report_id=report_id), metadata=actor.metadata
    )
    data = bytearray()
    first: pb.ReportChunk | None = None
    async for chunk in stream:
        first = first or chunk
        assert chunk.offset == len(data)
        data.extend(chunk.data)
    assert first is not None
    assert first.size_bytes == len(data)
    assert first.sha256 == hashlib.sha256(data).hexdigest()
    return bytes(data)


# ------------------------------------------------------------------ reading the files


def cell_text(value: Any, kind: Kind) -> str:
    """An xlsx cell as the CSV writes the same value."""
    if value is None:
        return ""
    if kind is Kind.MONEY:
        return f"{Decimal(str(value)):.2f}"
    if kind is Kind.INT:
        return str(int(value))
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d") if kind is Kind.DAY else f"{value:%Y-%m-%d %H:%M:%S}"
    return str(value)


def csv_rows(data: bytes, report_type: ReportType) -> list[list[str]]:
    reader = csv.reader(io.StringIO(data.decode("utf-8")))
    header = next(reader)
    assert header == list(report_type.keys)
    return list(reader)


@dataclass
class Workbook:
    rows: list[list[str]]
    totals: dict[str, str]
    chart_series: list[tuple[str, float]]
    charts: int


def read_xlsx(data: bytes, report_type: ReportType) -> Workbook:
    book = openpyxl.load_workbook(io.BytesIO(data))
    sheet = book["Report"]
    headers = [c.header for c in report_type.columns]
    values = list(sheet.iter_rows(values_only=True))
    start = next(i for i, row in enumerate(values) if list(row[: len(headers)]) == headers)
    rows: list[list[str]] = []
    totals: dict[str, str] = {}
    for row in values[start + 1 :]:
        if row[0] == "Total":
            totals = {
                c.key: cell_text(row[i], c.kind)
                for i, c in enumerate(report_type.columns)
                if c.total
            }
            break
        rows.append([cell_text(v, c.kind) for v, c in zip(row, report_type.columns, strict=False)])
    series: list[tuple[str, float]] = []
    charts = 0
    if "Chart" in book.sheetnames:
        chart_sheet = book["Chart"]
        charts = len(chart_sheet._charts)
        for day, value in list(chart_sheet.iter_rows(min_row=2, max_col=2, values_only=True)):
            series.append((f"{day:%Y-%m-%d}", float(value)))
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
        assert any(n.startswith("xl/charts/chart") for n in names), names
    return Workbook(rows, totals, series, charts)


def pdf_text(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() or "" for page in reader.pages)
