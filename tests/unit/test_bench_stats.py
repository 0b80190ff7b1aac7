"""`make bench`'s own arithmetic: percentiles, target marks and memory sampling."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.memory import Sampler, rss
from bench.stats import Target, percentile, render_targets


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_target_marks() -> None:
    assert Target("ratio", 0.36, 0.35, "%").mark == "pass"
    assert Target("ratio", 0.34, 0.35, "%").mark == "short"
    assert Target("p99", 0.099, 0.100, "ms", lower_is_better=True).mark == "pass"
    assert Target("p99", 0.101, 0.100, "ms", lower_is_better=True).mark == "short"
    assert Target("p99", None, 0.100, "ms", lower_is_better=True).mark == "not measured"


def test_render_targets_shows_ratio_goal_and_mark() -> None:
    text = render_targets(
        [
            Target("Recharge vs health", 0.152, 0.35, "%"),
            Target("p99 at 32 in flight", 0.5123, 0.1, "ms", lower_is_better=True),
        ]
    )
    lines = text.splitlines()
    assert lines[0].split() == ["target", "measured", "goal"]
    assert "15.2%" in lines[2] and "at least 35.0%" in lines[2] and lines[2].endswith("short")
    assert "512.3 ms" in lines[3] and "under 100.0 ms" in lines[3]


def test_rss_of_a_process_tree_counts_its_children() -> None:
    alone, _ = rss(os.getpid())
    if alone == 0:
        pytest.skip("no /proc here")
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        with Sampler(os.getpid()) as sampler:
            pass
        child_rss, _ = rss(child.pid)
        assert child_rss > 0
        assert sampler.tree_peak > sampler.peak  # the child is included
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait()
