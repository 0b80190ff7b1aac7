"""The report files themselves: every format shows a time as the same whole second."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from server.reports.catalog import REPORT_TYPES, Column, Kind, ReportFormat
from server.reports.writers import Heading, ReportFile

#: Just before a second ends: Excel displays it rounded to the next second, CSV and PDF
#: truncate; the files must agree (a report test once failed on such a row).
LATE_IN_A_SECOND = datetime(2026, 11, 27, 16, 9, 47, 999_700, tzinfo=UTC)


def _value(column: Column) -> Any:
    return {
        Kind.TIME: LATE_IN_A_SECOND,
        Kind.DAY: date(2026, 11, 27),
        Kind.MONEY: Decimal("299.50"),
        Kind.INT: 3,
    }.get(column.kind, "text")


@pytest.mark.parametrize("fmt", [ReportFormat.CSV, ReportFormat.EXCEL])
def test_times_are_whole_seconds_in_every_format(tmp_path: Path, fmt: ReportFormat) -> None:
    report_type = next(t for t in REPORT_TYPES if any(c.kind is Kind.TIME for c in t.columns))
    at = next(i for i, c in enumerate(report_type.columns) if c.kind is Kind.TIME)
    path = tmp_path / ("report.csv" if fmt is ReportFormat.CSV else "report.xlsx")
    writer = ReportFile(path, report_type, fmt, Heading("Test", ()))
    writer.write([[_value(c) for c in report_type.columns]])
    writer.close()
    if fmt is ReportFormat.CSV:
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
        assert rows[1][at] == "2026-11-27 16:09:47"
        return
    sheet = openpyxl.load_workbook(path)["Report"]
    headers = [c.header for c in report_type.columns]
    values = list(sheet.iter_rows(values_only=True))
    start = next(i for i, row in enumerate(values) if list(row[: len(headers)]) == headers)
    assert values[start + 1][at] == datetime(2026, 11, 27, 16, 9, 47)
