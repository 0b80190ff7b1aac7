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

The supervisor forwards SIGTERM/SIGINT to the workers, waits for them to drain
(``shutdown_grace_seconds`` plus a margin) and stops the embedded servers. When a
worker dies on its own, the supervisor stops the others and exits non-zero, so the
process manager (systemd, Kubernetes) restarts the service as a whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
from multiprocessing.process import BaseProcess
from multiprocessing.queues import SimpleQueue

from pydantic import SecretStr

from server import logs
from server.auth.keys import load_keyring, private_key_pem
from server.config import ConfigurationError, Settings
from server.crypto import load_secret_box

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


async def supervise(settings: Settings, ready: asyncio.Event | None = None) -> None:
    """Run ``settings.workers`` workers until SIGTERM/SIGINT (or one of them dies)."""
    context = multiprocessing.get_context("spawn")
    serving: SimpleQueue[int] = context.SimpleQueue()  # a worker's index once it listens
    processes: list[BaseProcess] = [
        context.Process(
            target=run_worker, args=(settings, index, serving), name=f"gencharge-worker-{index}"
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
        await asyncio.to_thread(
            _stop_all, processes, settings.shutdown_grace_seconds + STOP_MARGIN_SECONDS
        )
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    if died:
        raise WorkerDied(f"{len(died)} worker(s) exited unexpectedly")


def _stop_all(processes: list[BaseProcess], timeout: float) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()  # SIGTERM: the worker drains like a single server
    for process in processes:
        if process.pid is not None:
            process.join(timeout)
    for process in processes:
        if process.is_alive():
            log.warning("worker did not stop in time; killing it", extra={"pid": process.pid})
            process.kill()
            process.join()


def run_worker(settings: Settings, index: int, serving: SimpleQueue[int]) -> None:
    """Entry point of a worker process (spawned: a fresh interpreter); puts ``index``
    on ``serving`` once the server listens."""
    from server import runtime

    logs.configure(settings.log_level, settings.log_format, worker=index)
    # The supervisor's terminal sends SIGINT to the whole process group; the worker's
    # own handler (runtime) drains on it, like on SIGTERM from the supervisor.
    try:
        asyncio.run(runtime.serve_worker(settings, lambda: serving.put(index)))
    except KeyboardInterrupt:
        pass
    except ConfigurationError as exc:  # e.g. the port is taken: say so, no traceback
        log.error("worker cannot start: %s", exc)
        raise SystemExit(2) from None
