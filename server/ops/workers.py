"""Several server processes on one port (``GENCHARGE_WORKERS`` > 1).

A Python process runs its event loop on one core, so one process cannot use a larger
machine. With ``workers`` = N, ``gencharge serve`` prepares the databases once
(embedded servers, migrations, reference data, bootstrap admin), then supervises N
worker processes (multiprocessing, spawn) that each run the whole server on the same
listen address with ``SO_REUSEPORT``: the kernel spreads incoming connections over
them. Each worker has its own connection pool (``db_pool_size`` + ``db_max_overflow``
each: size PostgreSQL's ``max_connections`` for N times that), caches, audit relay and
scheduler; everything they share lives in the databases (brute-force counters,
idempotency keys, sessions; the scheduler's and the relay's locks), so N workers
behave as N replicas.

Secrets every worker must agree on (the JWT signing key and the data-encryption key)
are resolved once here and handed to the workers through the spawn pipe, never through
the environment or the command line: in development without configured keys the
workers share the generated keys, even when they could not be stored.

The supervisor forwards SIGTERM/SIGINT to the workers, waits for them to drain (one
deadline for all: ``shutdown_grace_seconds`` plus a margin, then SIGKILL) and stops
the embedded servers. It exits non-zero when a worker dies on its own (after stopping
the others) or does not stop cleanly, so the process manager (systemd, Kubernetes)
restarts the service as a whole. Workers stop by themselves when the supervisor is
gone (SIGKILL, OOM), and a second supervisor on the same listen address is refused
(a lock file named after it), so two generations never share the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import multiprocessing
import os
import re
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from multiprocessing.process import BaseProcess
from multiprocessing.queues import SimpleQueue
from pathlib import Path

from pydantic import SecretStr

from server.auth.keys import load_keyring, private_key_pem
from server.core.config import ConfigurationError, Settings
from server.core.crypto import load_secret_box

log = logging.getLogger(__name__)

#: Seconds a worker may take beyond the drain grace before it is killed.
STOP_MARGIN_SECONDS = 10.0
#: How often the supervisor checks that every worker is alive.
WATCH_INTERVAL_SECONDS = 0.5


class WorkerDied(RuntimeError):
    """A worker exited while the service was meant to be running."""


def worker_settings(settings: Settings, database_url: str, mongo_url: str) -> Settings:
    """What every worker runs with: the resolved database URLs (nothing embedded is
    started by a worker) and the secrets they must share."""
    update: dict[str, object] = {"database_url": database_url, "mongo_url": mongo_url}
    try:
        if not settings.jwt_private_key.get_secret_value().strip():
            update["jwt_private_key"] = SecretStr(private_key_pem(load_keyring(settings).sign_key))
        if not settings.data_encryption_key.get_secret_value().strip():
            update["data_encryption_key"] = SecretStr(load_secret_box(settings).export_key())
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    return settings.model_copy(update=update)


def check_listen(settings: Settings) -> None:
    """Workers share one fixed port: an ephemeral one (``:0``) would differ per worker."""
    if settings.workers > 1 and settings.listen.rsplit(":", 1)[-1] == "0":
        raise ConfigurationError(
            "GENCHARGE_WORKERS > 1 needs a fixed port in GENCHARGE_LISTEN (not :0)"
        )


@contextlib.contextmanager
def exclusive_listen(settings: Settings) -> Iterator[None]:
    """With workers, hold a lock named after the listen address for the supervisor's
    lifetime: SO_REUSEPORT would let a second supervisor (an overlapping deploy) bind
    the same port and silently take part of the traffic. One server process needs no
    lock: its port is not shared, so a second bind fails by itself."""
    if settings.workers == 1:
        yield
        return
    name = re.sub(r"[^A-Za-z0-9.-]", "_", settings.listen)
    path = Path(tempfile.gettempdir()) / f"gencharge-listen-{name}.lock"
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigurationError(
                f"another gencharge supervisor is serving on {settings.listen} ({path})"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


#: A worker process's entry point: (settings, index, serving queue, supervisor pid).
WorkerTarget = Callable[[Settings, int, "SimpleQueue[int]", int], None]


async def supervise(
    settings: Settings, target: WorkerTarget, ready: asyncio.Event | None = None
) -> None:
    """Run ``settings.workers`` processes of ``target`` (server.ops.runtime.run_worker)
    until SIGTERM/SIGINT (or one of them dies)."""
    context = multiprocessing.get_context("spawn")
    serving: SimpleQueue[int] = context.SimpleQueue()  # a worker's index once it listens
    processes: list[BaseProcess] = [
        context.Process(
            target=target,
            args=(settings, index, serving, os.getpid()),
            name=f"gencharge-worker-{index}",
        )
        for index in range(settings.workers)
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    died: list[BaseProcess] = []
    try:
        for process in processes:
            process.start()
        log.info(
            "workers started",
            extra={"workers": settings.workers, "pids": [p.pid for p in processes]},
        )
        waiting = set(range(settings.workers))
        while not stop.is_set():
            while waiting and not serving.empty():
                waiting.discard(serving.get())
                if not waiting:
                    log.info("all workers serving", extra={"workers": settings.workers})
                    if ready is not None:
                        ready.set()
            died = [p for p in processes if not p.is_alive()]
            if died:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WATCH_INTERVAL_SECONDS)
        if died:
            log.error(
                "a worker exited unexpectedly; stopping the others",
                extra={"pids": [p.pid for p in died], "exit_codes": [p.exitcode for p in died]},
            )
        else:
            log.info("shutdown requested; stopping workers")
    finally:
        unclean = await asyncio.to_thread(
            _stop_all, processes, settings.shutdown_grace_seconds + STOP_MARGIN_SECONDS
        )
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    if died:
        raise WorkerDied(f"{len(died)} worker(s) exited unexpectedly")
    if unclean:
        log.error(
            "workers did not stop cleanly",
            extra={"pids": [p.pid for p in unclean], "exit_codes": [p.exitcode for p in unclean]},
        )
        raise WorkerDied(f"{len(unclean)} worker(s) did not stop cleanly")


def _stop_all(processes: list[BaseProcess], timeout: float) -> list[BaseProcess]:
    """SIGTERM every worker, wait for all of them until one shared deadline, kill the
    rest; the workers that did not stop cleanly (killed, or a non-zero exit)."""
    for process in processes:
        if process.is_alive():
            process.terminate()  # SIGTERM: the worker drains like a single server
    deadline = time.monotonic() + timeout
    for process in processes:
        if process.pid is not None:
            process.join(max(0.0, deadline - time.monotonic()))
    unclean: list[BaseProcess] = []
    for process in processes:
        if process.is_alive():
            log.warning("worker did not stop in time; killing it", extra={"pid": process.pid})
            process.kill()
            process.join()
            unclean.append(process)
        elif process.exitcode not in (0, None):
            unclean.append(process)
    return unclean


async def watch_supervisor(supervisor_pid: int, stop: asyncio.Event) -> None:
    """Set ``stop`` once the supervisor is gone (killed with SIGKILL, OOM): an orphaned
    worker would otherwise keep serving old code beside the restarted service."""
    while not stop.is_set():
        if os.getppid() != supervisor_pid:
            log.error("the supervisor is gone; stopping this worker")
            stop.set()
            return
        await asyncio.sleep(WATCH_INTERVAL_SECONDS)
