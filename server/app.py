"""The gRPC server: services, health, reflection, limits and the request interceptor."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from server import db, mongo
from server.interceptors.request import RequestInterceptor
from server.resources import Resources
from server.services import SERVICES

log = logging.getLogger(__name__)


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health_aio.HealthServicer
    resources: Resources
    service_names: list[str]
    _monitor: asyncio.Task[None] | None = field(default=None, repr=False)

    async def stop(self, grace: float | None) -> None:
        """Graceful stop: NOT_SERVING first, then drain in-flight calls for ``grace`` s."""
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def _set_all(health: health_aio.HealthServicer, names: list[str], serving: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", *names):
        await health.set(name, status)


async def _monitor_health(running: RunningServer, interval: float) -> None:
    """SERVING only while both databases answer; re-checked every ``interval`` seconds."""
    serving: bool | None = None
    while True:
        try:
            await asyncio.wait_for(
                asyncio.gather(
                    db.ping(running.resources.engine), mongo.ping(running.resources.mongo_db)
                ),
                timeout=max(interval, 1.0),
            )
            ok = True
        except Exception as exc:
            ok = False
            if serving is not False:
                log.warning("dependency check failed", extra={"error": repr(exc)})
        if ok != serving:
            await _set_all(running.health, running.service_names, ok)
            log.info("health changed", extra={"serving": ok})
            serving = ok
        await asyncio.sleep(interval)


async def start_server(
    resources: Resources, listen: str, *, health_interval: float = 2.0
) -> RunningServer:
    settings = resources.settings
    servicers = [spec.build(resources) for spec in SERVICES]
    unimplemented = frozenset(
        name
        for spec, servicer in zip(SERVICES, servicers, strict=True)
        for name in spec.unimplemented(servicer)
    )
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.max_connection_idle_ms", 30 * 60_000),
    ]
    server = grpc.aio.server(
        interceptors=[RequestInterceptor(unimplemented)],
        options=options,
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    for spec, servicer in zip(SERVICES, servicers, strict=True):
        spec.add_to_server(servicer, server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    names = [spec.full_name for spec in SERVICES]
    await _set_all(health, names, False)
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    port = server.add_insecure_port(listen)
    if port == 0:
        raise RuntimeError(f"cannot listen on {listen}")
    await server.start()
    running = RunningServer(server, port, health, resources, names)
    running._monitor = asyncio.create_task(_monitor_health(running, health_interval))
    log.info("grpc server listening", extra={"port": port, "services": len(names)})
    return running
