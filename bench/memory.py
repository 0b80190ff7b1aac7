"""The memory of a process and its children while a bench phase runs (Linux ``/proc``,
or psutil when the venv has it).

:class:`Sampler` samples, every ``SAMPLE_SECONDS`` on a thread of its own, the resident
set of a process alone and with all its descendants (``gencharge serve --workers N``
forks its workers; a backup runs ``pg_dump``), and keeps the highest of each; where
allowed it also resets the kernel's own high-water mark (``VmHWM``) at the start and
reads it during the phase, so that a spike between samples still shows. Used by
`make bench` (bench/run.py) and `make bench-backup` (bench/backup.py).
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType

try:  # not a declared dependency: /proc is read when it is missing
    import psutil
except ImportError:  # pragma: no cover - depends on the venv
    psutil = None

SAMPLE_SECONDS = 0.05
MIB = 1024 * 1024


def _proc_kib(pid: int, field_name: str) -> int:
    """A /proc/<pid>/status figure in KiB (VmRSS, VmHWM); 0 when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _proc_children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found.extend(int(v) for v in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return found


def rss(pid: int) -> tuple[int, int]:
    """Resident bytes of the process, and of the process with all its descendants."""
    if psutil is not None:
        try:
            process = psutil.Process(pid)
            own = int(process.memory_info().rss)
            tree = own
            for child in process.children(recursive=True):
                try:
                    tree += int(child.memory_info().rss)
                except psutil.Error:
                    continue
            return own, tree
        except psutil.Error:
            return 0, 0
    own = _proc_kib(pid, "VmRSS") * 1024
    tree, pending = own, _proc_children(pid)
    while pending:
        child = pending.pop()
        tree += _proc_kib(child, "VmRSS") * 1024
        pending.extend(_proc_children(child))
    return own, tree


def reset_high_water_mark(pid: int) -> bool:
    """Reset the kernel's peak RSS (VmHWM) of ``pid`` (Linux, same user or root), so that
    reading it after a phase gives that phase's exact peak, spikes between samples
    included. False where this is not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class Sampler:
    """Samples a process's resident set (own, and with its descendants) every
    ``SAMPLE_SECONDS`` on a thread, between ``start`` and ``stop``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = 0
        self.after = 0
        self.peak = 0
        self.tree_peak = 0
        self.samples = 0
        self.hwm: int | None = None
        self._hwm_reset = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._hwm_reset = reset_high_water_mark(self.pid)
        self.before, tree = rss(self.pid)
        self.peak, self.tree_peak = self.before, tree
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> int:
        own, tree = rss(self.pid)
        self.samples += 1
        self.peak = max(self.peak, own)
        self.tree_peak = max(self.tree_peak, tree)
        if self._hwm_reset:  # read while alive: an exited process has no status
            hwm = _proc_kib(self.pid, "VmHWM") * 1024
            if hwm:
                self.hwm = max(self.hwm or 0, hwm)
        return own

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.after = self._sample()

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
