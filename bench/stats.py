"""Percentiles and the result table of `make bench`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True)
class Row:
    name: str
    concurrency: int
    per_second: float
    p50: float | None  # seconds
    p95: float | None
    p99: float | None
    rss_mib: float | None  # the server's peak resident memory during the phase
    note: str


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def render(rows: Sequence[Row]) -> str:
    header = (
        "measurement",
        "in flight",
        "per second",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "RSS MiB",
        "ratio",
    )
    cells = [header] + [
        (
            r.name,
            str(r.concurrency),
            f"{r.per_second:.0f}",
            _ms(r.p50),
            _ms(r.p95),
            _ms(r.p99),
            "-" if r.rss_mib is None else f"{r.rss_mib:.0f}",
            r.note,
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for n, row in enumerate(cells):
        parts = [
            row[i].ljust(widths[i]) if i in (0, len(header) - 1) else row[i].rjust(widths[i])
            for i in range(len(header))
        ]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


@dataclass(frozen=True)
class Target:
    """A goal of the run: ``measured`` (a ratio, or seconds for ``unit`` "ms") against
    ``goal``; None when this run did not measure it."""

    name: str
    measured: float | None
    goal: float
    unit: str  # "%" (a ratio) or "ms" (seconds shown in milliseconds)
    lower_is_better: bool = False

    def _show(self, value: float) -> str:
        return f"{value:.1%}" if self.unit == "%" else f"{value * 1000:.1f} ms"

    @property
    def mark(self) -> str:
        if self.measured is None:
            return "not measured"
        met = self.measured <= self.goal if self.lower_is_better else self.measured >= self.goal
        return "pass" if met else "short"


def render_targets(targets: Sequence[Target]) -> str:
    header = ("target", "measured", "goal", "")
    cells = [header] + [
        (
            t.name,
            "-" if t.measured is None else t._show(t.measured),
            ("under " if t.lower_is_better else "at least ") + t._show(t.goal),
            t.mark,
        )
        for t in targets
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(row[i].ljust(widths[i]) for i in range(len(header))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
