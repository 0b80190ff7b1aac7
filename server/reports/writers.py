"""The report files: CSV (the standard library), Excel (XlsxWriter) and PDF (reportlab).

:class:`ReportFile` takes rows in batches and writes each batch straight to the file,
keeping only the running totals and the per-day series of the chart (one entry per
day), never the rows:

* CSV: a header line, then one line per row (data only: the totals are in the
  report's ``details``).
* Excel: XlsxWriter in ``constant_memory`` mode (each row is flushed to disk as the
  next begins). Sheet ``Report``: title, range, header, rows, a ``Total`` row; where
  the report is a series, sheet ``Chart`` holds the per-day figures and a native
  column chart over them.
* PDF: reportlab's canvas, page by page (landscape A4, the header repeated on every
  page), a ``Total`` row, and, where the report is a series, a bar chart drawn with
  ``reportlab.graphics`` on the last page.

Everything here is synchronous: the caller runs each batch in a worker thread.
"""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import xlsxwriter
from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.renderPDF import draw as draw_drawing
from reportlab.graphics.shapes import Drawing
from reportlab.lib.colors import HexColor
from reportlab.lib.pagesizes import A4, landscape
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

from server.reports.catalog import Column, Kind, ReportFormat, ReportType

Row = Sequence[Any]
Series = list[tuple[date, Decimal | int]]


@dataclass(frozen=True)
class Heading:
    """What a file says about itself above the rows."""

    title: str
    lines: tuple[str, ...]


@dataclass
class Summary:
    """What writing the rows found: their number, the totals and the chart's series."""

    row_count: int = 0
    totals: dict[str, Decimal | int] = field(default_factory=dict)
    series: Series = field(default_factory=list)


def text_of(value: Any, kind: Kind) -> str:
    """A value as text (CSV and PDF): money with two places, times in UTC."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if kind is Kind.MONEY:
        return f"{Decimal(value):.2f}"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _day_of(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).date()
    if isinstance(value, date):
        return value
    return None


class _Format(Protocol):
    def rows(self, rows: Sequence[Row]) -> None: ...
    def finish(self, summary: Summary) -> None: ...
    def discard(self) -> None: ...


class ReportFile:
    """One report file being written: :meth:`write` batches, then :meth:`close`."""

    def __init__(
        self, path: Path, report_type: ReportType, fmt: ReportFormat, heading: Heading
    ) -> None:
        self.report_type = report_type
        self.summary = Summary(
            totals={
                c.key: Decimal(0) if c.kind is Kind.MONEY else 0 for c in _totalled(report_type)
            }
        )
        self._total_at = [(i, c.key) for i, c in enumerate(report_type.columns) if c.total]
        chart = report_type.chart
        self._day_at = report_type.keys.index(chart.day) if chart else -1
        self._value_at = report_type.keys.index(chart.value) if chart and chart.value else -1
        self._per_day: dict[date, Decimal | int] = {}
        self._format: _Format
        if fmt is ReportFormat.CSV:
            self._format = _CsvFile(path, report_type, heading)
        elif fmt is ReportFormat.EXCEL:
            self._format = _XlsxFile(path, report_type, heading)
        else:
            self._format = _PdfFile(path, report_type, heading)

    def write(self, rows: Sequence[Row]) -> None:
        self._format.rows(rows)
        summary = self.summary
        summary.row_count += len(rows)
        for row in rows:
            for index, key in self._total_at:
                if row[index] is not None:
                    summary.totals[key] += row[index]
            if self._day_at >= 0:
                day = _day_of(row[self._day_at])
                if day is not None:
                    amount = row[self._value_at] if self._value_at >= 0 else 1
                    self._per_day[day] = self._per_day.get(day, 0) + (amount or 0)

    def close(self) -> Summary:
        self.summary.series = sorted(self._per_day.items())
        self._format.finish(self.summary)
        return self.summary

    def discard(self) -> None:
        """Stop writing (after a failure); the caller deletes the file."""
        self._format.discard()


def _totalled(report_type: ReportType) -> list[Column]:
    return [c for c in report_type.columns if c.total]


# ------------------------------------------------------------------------------ CSV


class _CsvFile:
    def __init__(self, path: Path, report_type: ReportType, heading: Heading) -> None:
        self._kinds = [c.kind for c in report_type.columns]
        self._file = path.open("w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file)
        self._csv.writerow([c.key for c in report_type.columns])

    def rows(self, rows: Sequence[Row]) -> None:
        kinds = self._kinds
        self._csv.writerows(
            [text_of(v, k) for v, k in zip(row, kinds, strict=True)] for row in rows
        )

    def finish(self, summary: Summary) -> None:
        self._file.close()

    def discard(self) -> None:
        self._file.close()


# ---------------------------------------------------------------------------- Excel

_EXCEL_FORMATS: dict[Kind, str] = {
    Kind.MONEY: "#,##0.00",
    Kind.TIME: "yyyy-mm-dd hh:mm:ss",
    Kind.DAY: "yyyy-mm-dd",
}
#: Where the header row is (0-based): title, heading lines, a blank row, then it.
_TABLE_GAP = 1


def _excel_value(value: Any, kind: Kind) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if kind is Kind.MONEY:
        return float(value)  # Excel numbers are doubles; the cell format shows 2 places
    if isinstance(value, datetime):
        # Whole seconds, as CSV and PDF show them: Excel rounds a fraction to the nearest
        # second when it displays a time (16:09:47.6 would read 16:09:48 there).
        return value.astimezone(UTC).replace(tzinfo=None, microsecond=0)
    if isinstance(value, (date, int, float)):
        return value
    return str(value)


class _XlsxFile:
    def __init__(self, path: Path, report_type: ReportType, heading: Heading) -> None:
        self._report_type = report_type
        self._book = xlsxwriter.Workbook(
            str(path), {"constant_memory": True, "strings_to_numbers": False}
        )
        book = self._book
        self._bold = book.add_format({"bold": True})
        self._formats = {
            kind: book.add_format({"num_format": fmt}) for kind, fmt in _EXCEL_FORMATS.items()
        }
        self._bold_money = book.add_format({"bold": True, "num_format": _EXCEL_FORMATS[Kind.MONEY]})
        sheet = book.add_worksheet("Report")
        self._sheet = sheet
        for index, column in enumerate(report_type.columns):
            sheet.set_column(index, index, max(10, min(40, int(14 * column.width))))
        sheet.write_string(0, 0, heading.title, book.add_format({"bold": True, "font_size": 14}))
        for offset, line in enumerate(heading.lines, start=1):
            sheet.write_string(offset, 0, line)
        self._row = len(heading.lines) + 1 + _TABLE_GAP
        for index, column in enumerate(report_type.columns):
            sheet.write_string(self._row, index, column.header, self._bold)
        self._row += 1
        self.header_row = self._row - 1

    def rows(self, rows: Sequence[Row]) -> None:
        sheet, formats = self._sheet, self._formats
        columns = self._report_type.columns
        for row in rows:
            for index, (column, value) in enumerate(zip(columns, row, strict=True)):
                cell = _excel_value(value, column.kind)
                if cell is None:
                    continue
                sheet.write(self._row, index, cell, formats.get(column.kind))
            self._row += 1

    def finish(self, summary: Summary) -> None:
        sheet = self._sheet
        sheet.write_string(self._row, 0, "Total", self._bold)
        for index, column in enumerate(self._report_type.columns):
            if column.total:
                value = summary.totals[column.key]
                fmt = self._bold_money if column.kind is Kind.MONEY else self._bold
                sheet.write_number(self._row, index, float(value), fmt)
        chart = self._report_type.chart
        if chart is not None and summary.series:
            self._chart(chart.title, summary.series)
        self._book.close()

    def _chart(self, title: str, series: Series) -> None:
        book = self._book
        sheet = book.add_worksheet("Chart")
        sheet.set_column(0, 0, 12)
        sheet.set_column(1, 1, 16)
        sheet.write_string(0, 0, "Day", self._bold)
        sheet.write_string(0, 1, title, self._bold)
        day_format = self._formats[Kind.DAY]
        for offset, (day, value) in enumerate(series, start=1):
            sheet.write_datetime(offset, 0, datetime(day.year, day.month, day.day), day_format)
            sheet.write_number(offset, 1, float(value))
        last = len(series)
        chart = book.add_chart({"type": "column"})
        assert chart is not None
        chart.add_series(
            {
                "name": title,
                "categories": ["Chart", 1, 0, last, 0],
                "values": ["Chart", 1, 1, last, 1],
            }
        )
        chart.set_title({"name": title})
        chart.set_legend({"none": True})
        chart.set_x_axis({"date_axis": True, "num_format": "mm-dd"})
        sheet.insert_chart(1, 3, chart, {"x_scale": 1.6, "y_scale": 1.3})

    def discard(self) -> None:
        with contextlib.suppress(Exception):  # the file is deleted next; nothing to keep
            self._book.close()


# ------------------------------------------------------------------------------ PDF

_PAGE = landscape(A4)
_MARGIN = 36.0
_ROW_HEIGHT = 11.0
_FONT = "Helvetica"
_BOLD = "Helvetica-Bold"
_FONT_SIZE = 7.0
_CHART_HEIGHT = 260.0
_BAR_COLOUR = HexColor("#2f6db5")


def _fit(text: str, width: float, font: str = _FONT) -> str:
    """``text`` cut (with an ellipsis) to ``width`` points."""
    if stringWidth(text, font, _FONT_SIZE) <= width:
        return text
    while text and stringWidth(text + "...", font, _FONT_SIZE) > width:
        text = text[:-1]
    return text + "..."


class _PdfFile:
    def __init__(self, path: Path, report_type: ReportType, heading: Heading) -> None:
        self._report_type = report_type
        self._heading = heading
        self._canvas = Canvas(str(path), pagesize=_PAGE, pageCompression=1)
        self._canvas.setTitle(heading.title)
        self._canvas.setAuthor("GenCharge")
        usable = _PAGE[0] - 2 * _MARGIN
        weights = sum(c.width for c in report_type.columns)
        self._widths = [usable * c.width / weights for c in report_type.columns]
        self._page = 0
        self._y = 0.0
        self._new_page(first=True)

    def _new_page(self, *, first: bool = False) -> None:
        canvas = self._canvas
        if not first:
            canvas.showPage()
        self._page += 1
        y = _PAGE[1] - _MARGIN
        if first:
            canvas.setFont(_BOLD, 13)
            canvas.drawString(_MARGIN, y, self._heading.title)
            y -= 16
            canvas.setFont(_FONT, 8)
            for line in self._heading.lines:
                canvas.drawString(_MARGIN, y, line)
                y -= 11
            y -= 6
        canvas.setFont(_FONT, 7)
        canvas.drawRightString(_PAGE[0] - _MARGIN, _MARGIN / 2, f"Page {self._page}")
        self._y = y
        self._line([c.header for c in self._report_type.columns], _BOLD)
        canvas.line(
            _MARGIN, self._y + _ROW_HEIGHT - 2, _PAGE[0] - _MARGIN, self._y + _ROW_HEIGHT - 2
        )

    def _line(self, cells: Sequence[str], font: str = _FONT) -> None:
        if self._y < _MARGIN + _ROW_HEIGHT:
            self._new_page()
        canvas = self._canvas
        canvas.setFont(font, _FONT_SIZE)
        x = _MARGIN
        for text, width in zip(cells, self._widths, strict=True):
            canvas.drawString(x, self._y, _fit(text, width - 4, font))
            x += width
        self._y -= _ROW_HEIGHT

    def rows(self, rows: Sequence[Row]) -> None:
        kinds = [c.kind for c in self._report_type.columns]
        for row in rows:
            self._line([text_of(v, k) for v, k in zip(row, kinds, strict=True)])

    def finish(self, summary: Summary) -> None:
        columns = self._report_type.columns
        cells = [text_of(summary.totals[c.key], c.kind) if c.total else "" for c in columns]
        cells[0] = "Total"
        self._line(cells, _BOLD)
        self._y -= 4
        self._line([f"Rows: {summary.row_count}"] + [""] * (len(columns) - 1))
        chart = self._report_type.chart
        if chart is not None and summary.series:
            self._chart(chart.title, summary.series)
        self._canvas.save()

    def _chart(self, title: str, series: Series) -> None:
        if self._y < _MARGIN + _CHART_HEIGHT + 30:
            self._canvas.showPage()
            self._page += 1
            self._y = _PAGE[1] - _MARGIN
        canvas = self._canvas
        canvas.setFont(_BOLD, 10)
        canvas.drawString(_MARGIN, self._y - 6, f"Chart: {title}")
        width = _PAGE[0] - 2 * _MARGIN
        drawing = Drawing(width, _CHART_HEIGHT)
        bars = VerticalBarChart()
        bars.x, bars.y = 40, 30
        bars.width, bars.height = width - 60, _CHART_HEIGHT - 50
        bars.data = [[float(value) for _, value in series]]
        step = max(1, len(series) // 16)
        bars.categoryAxis.categoryNames = [
            day.strftime("%m-%d") if index % step == 0 else ""
            for index, (day, _) in enumerate(series)
        ]
        bars.categoryAxis.labels.fontSize = 6
        bars.valueAxis.labels.fontSize = 6
        bars.valueAxis.valueMin = 0
        bars.bars[0].fillColor = _BAR_COLOUR
        drawing.add(bars)
        draw_drawing(drawing, canvas, _MARGIN, self._y - 16 - _CHART_HEIGHT)
        self._y -= _CHART_HEIGHT + 24

    def discard(self) -> None:
        """Nothing to flush: reportlab writes the file only on save()."""
