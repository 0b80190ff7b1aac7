"""Jobs that outlive the call that started them.

A backup or restore started by an RPC runs as its own task: the call streams the job's
progress, and a client that goes away (cancel, deadline, lost connection) stops the
stream, never the job, which finishes and records itself. What the job raises before
its first report (a bad request, another job running) is the call's error; after it,
the job reports its own failure as the last progress message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from server.backup.context import Progress, Report

log = logging.getLogger("gencharge.backup")

_Done = object()


class DetachedJobs:
    """The jobs of one process started by calls; :meth:`close` waits for them (with a
    grace period) when the server stops, then cancels what is left (a cancelled job
    records itself as failed; a row it could not record is marked failed by the next
    job: ``abandon_unfinished_backups``)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    async def stream(self, run: Callable[[Report], Awaitable[Any]]) -> AsyncIterator[Progress]:
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def job() -> None:
            try:
                await run(queue.put_nowait)
            except BaseException as exc:
                queue.put_nowait(exc)
                if not isinstance(exc, Exception):
                    raise
            finally:
                queue.put_nowait(_Done)

        task = asyncio.create_task(job(), name="gencharge-backup-job")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        reported = False
        while True:
            item = await queue.get()
            if item is _Done:
                return
            if isinstance(item, BaseException):
                if not reported:
                    raise item
                continue  # the job reported its failure already
            reported = True
            yield item

    async def close(self, grace: float) -> None:
        tasks = list(self._tasks)
        if not tasks:
            return
        log.info("waiting for backup jobs to finish", extra={"jobs": len(tasks)})
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(BaseException):
                await task
