"""Health (``grpc.health.v1``): what a load balancer and an orchestrator need to know.

The statuses this server reports:

- ``""`` (the server as a whole) and every service that needs only PostgreSQL: SERVING
  while PostgreSQL answers. The money path needs nothing else: audit events wait in the
  PostgreSQL outbox while MongoDB is down, by design (docs/audit.md), so a MongoDB
  outage must not take every replica out of its load balancer.
- A service that cannot work without MongoDB (``ServiceSpec.needs`` in
  server/rpc/services.py): SERVING while PostgreSQL and MongoDB both answer.
- ``gencharge.dependency.postgresql`` and ``gencharge.dependency.mongodb``: SERVING while
  that database answers, so a degraded dependency is visible on its own.
- ``gencharge.liveness``: SERVING from the start whatever the databases do, until
  shutdown; it answers only while the process's event loop does (a liveness probe that
  must not restart a replica because a database is down).

Each dependency is pinged on a loop of its own, every ``interval`` seconds, each ping
bounded by ``probe_limit`` (a slow MongoDB never delays PostgreSQL's verdict). A change
is logged once, when it happens: ``dependency unavailable`` (warning, with the error),
``dependency available`` (info) and ``health changed`` (info, the statuses that moved),
never on every tick. Everything but liveness starts NOT_SERVING; shutdown turns everything
NOT_SERVING for good (``HealthServicer.enter_graceful_shutdown``). Kubernetes probes:
docs/operations.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

log = logging.getLogger(__name__)

POSTGRESQL: Final = "postgresql"
MONGODB: Final = "mongodb"
#: What the overall status ("") and most services need.
POSTGRESQL_ONLY: Final = frozenset({POSTGRESQL})
POSTGRESQL_AND_MONGODB: Final = frozenset({POSTGRESQL, MONGODB})
DEPENDENCY_PREFIX: Final = "gencharge.dependency."
#: SERVING while the process serves at all, whatever its dependencies do.
LIVENESS: Final = "gencharge.liveness"

SERVING: Final[int] = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING: Final[int] = health_pb2.HealthCheckResponse.NOT_SERVING

Ping = Callable[[], Awaitable[None]]


def dependency_service(dependency: str) -> str:
    """The health-check name of a dependency: ``gencharge.dependency.mongodb``."""
    return DEPENDENCY_PREFIX + dependency


def _status_name(status: int) -> str:
    return "SERVING" if status == SERVING else "NOT_SERVING"


class HealthMonitor:
    """Keeps the health statuses of ``services`` (name -> the dependencies it needs) in
    step with the ``pings`` (dependency -> an async ping that raises when it is down)."""

    def __init__(
        self,
        health: health_aio.HealthServicer,
        *,
        pings: Mapping[str, Ping],
        services: Mapping[str, frozenset[str]],
        interval: float,
        probe_limit: float,
        stopping: asyncio.Event,
    ) -> None:
        unknown = {dep for needs in services.values() for dep in needs} - set(pings)
        if unknown:
            raise ValueError(f"no ping for dependencies {sorted(unknown)}")
        self.health = health
        self.pings = dict(pings)
        self.interval = interval
        self.probe_limit = probe_limit
        self.stopping = stopping
        #: health-check name -> the dependencies that must answer for it to be SERVING.
        self.needs: dict[str, frozenset[str]] = {
            LIVENESS: frozenset(),
            "": POSTGRESQL_ONLY,
            **services,
            **{dependency_service(dep): frozenset({dep}) for dep in self.pings},
        }
        #: dependency -> whether its last ping answered (absent: not probed yet).
        self.up: dict[str, bool] = {}
        #: dependency -> completed probes (tests wait on this instead of on time).
        self.probes: dict[str, int] = dict.fromkeys(self.pings, 0)
        self._statuses: dict[str, int] = {}
        self._lock = asyncio.Lock()

    @property
    def names(self) -> list[str]:
        return list(self.needs)

    def status_of(self, name: str) -> int:
        return self._statuses.get(name, NOT_SERVING)

    async def initialise(self) -> None:
        """The statuses before anything was probed: liveness SERVING, the rest NOT_SERVING."""
        async with self._lock:
            for name, needs in self.needs.items():
                status = NOT_SERVING if needs else SERVING
                await self.health.set(name, status)
                self._statuses[name] = status

    async def run(self) -> None:
        """Probe every dependency on its own loop until ``stopping`` is set."""
        await asyncio.gather(*(self._watch(dep) for dep in self.pings))

    async def _watch(self, dependency: str) -> None:
        while not self.stopping.is_set():
            await self.probe(dependency)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.interval)

    async def probe(self, dependency: str) -> bool:
        """Ping ``dependency`` once, apply the result; whether it answered."""
        error: Exception | None = None
        try:
            await asyncio.wait_for(self.pings[dependency](), self.probe_limit)
        except Exception as exc:  # down, refused, timed out: all the same to a prober
            error = exc
        ok = error is None
        before = self.up.get(dependency)
        self.up[dependency] = ok
        if before is not ok:
            if ok:
                log.info(
                    "dependency available",
                    extra={"dependency": dependency, "after_outage": before is False},
                )
            else:
                log.warning(
                    "dependency unavailable",
                    extra={"dependency": dependency, "error": repr(error)},
                )
        await self._apply()
        self.probes[dependency] += 1
        return ok

    async def _apply(self) -> None:
        async with self._lock:
            changed: dict[str, int] = {}
            for name, needs in self.needs.items():
                status = SERVING if all(self.up.get(dep) for dep in needs) else NOT_SERVING
                if self._statuses.get(name) != status:
                    await self.health.set(name, status)
                    self._statuses[name] = status
                    changed[name] = status
            if changed:
                log.info(
                    "health changed",
                    extra={
                        "overall": _status_name(self.status_of("")),
                        "serving": sorted(n or '""' for n, s in changed.items() if s == SERVING),
                        "not_serving": sorted(
                            n or '""' for n, s in changed.items() if s != SERVING
                        ),
                        "dependencies": {dep: self.up.get(dep) for dep in self.pings},
                    },
                )
