"""The gRPC server: services, interceptors, health, reflection, limits, background jobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from server.audit.gate import SecurityEventGate
from server.audit.outbox import record_standalone
from server.audit.relay import AuditRelay
from server.auth import flows as auth_flows
from server.auth.access import AccessRules
from server.auth.security import Security, build_security
from server.backup.keys import require_backup_key
from server.core import db, mongo, pagination
from server.core.config import ConfigurationError
from server.core.peers import parse_networks
from server.core.resources import Resources
from server.payments.gateway import PaymentGateway
from server.payments.select import create_gateway
from server.plans.catalogue import Catalogue
from server.rpc.health import MONGODB, POSTGRESQL, HealthMonitor
from server.rpc.interceptors.access import AccessInterceptor
from server.rpc.interceptors.request import RequestInterceptor
from server.rpc.interceptors.validation import ValidationInterceptor
from server.rpc.reflection import enable_reflection
from server.rpc.services import SERVICES, AppContext

log = logging.getLogger(__name__)

CLEANUP_INTERVAL_SECONDS = 3600.0
#: The shortest bound on one health probe (one database ping) by default.
MIN_HEALTH_TIMEOUT_SECONDS = 1.0


class Background(Protocol):
    """Background work attached to a running server (e.g. the scheduler)."""

    async def stop(self) -> None: ...


#: Seconds a backup or restore started by a call may run on once the server stops (then
#: it is cancelled and records itself as failed).
BACKUP_JOB_GRACE_SECONDS = 30.0


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health_aio.HealthServicer
    resources: Resources
    security: Security
    relay: AuditRelay
    service_names: list[str]
    #: The background scheduler the process attached (server/ops/runtime.py starts
    #: server/ops/scheduler.py here); stopped first when the server stops.
    scheduler: Background | None = None
    #: What the servicers were built from (the recharger is shared with the scheduler).
    app: AppContext | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, repr=False)
    #: Set on stop: the background loops end at their next wait.
    stopping: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    #: The per-address budget of SECURITY events (server/audit/gate.py).
    security_gate: SecurityEventGate | None = None
    #: The payment gateway the server built from the settings (closed when it stops);
    #: None when the caller passed its own (the caller closes that one).
    owned_gateway: PaymentGateway | None = None
    #: The health statuses and the dependency probes behind them (server/rpc/health.py).
    health_monitor: HealthMonitor | None = None

    async def stop(self, grace: float | None) -> None:
        """Graceful stop: NOT_SERVING first, drain in-flight calls for ``grace`` seconds,
        then stop background jobs; the audit relay makes a last attempt to ship; last,
        the payment gateway's connections are closed."""
        self.stopping.set()
        for task in self._tasks:
            task.cancel()
        # Bounded: a cancellation swallowed inside a library (asyncio.wait_for in Python
        # 3.11 can lose one) must not hang shutdown; the loops also watch `stopping`.
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        if self.scheduler is not None:
            await self.scheduler.stop()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.app is not None:  # backups and restores started by calls: their end
            await self.app.backup_jobs.close(BACKUP_JOB_GRACE_SECONDS)
        if self.security_gate is not None:  # the windows still open: their summaries
            await _write_summaries(self.resources, self.security_gate, closing=True)
        await self.relay.stop()
        if self.owned_gateway is not None:  # no call or job uses it any more
            await self.owned_gateway.aclose()


async def _pause(stopping: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if the server is stopping."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)


async def _cleanup_loop(resources: Resources, interval: float, stopping: asyncio.Event) -> None:
    """Expired sessions, one-time codes, reset tokens, MFA challenges: deleted hourly.

    Deleting expired rows is idempotent, so replicas running it at once is harmless.
    """
    while not stopping.is_set():
        try:
            removed = await auth_flows.cleanup(resources.db)
            if removed:
                log.info("expired auth rows removed", extra={"rows": removed})
        except Exception as exc:
            log.warning("auth cleanup failed", extra={"error": repr(exc)})
        await _pause(stopping, interval)


async def _write_summaries(
    resources: Resources, gate: SecurityEventGate, *, closing: bool = False
) -> None:
    events = gate.take_summaries(closing=closing)
    for index, event in enumerate(events):
        try:
            await record_standalone(resources.engine, event)
        except BaseException as exc:  # kept for the next attempt (or the final flush)
            gate.requeue(events[index:])
            if not isinstance(exc, Exception):
                raise  # cancelled
            log.warning("could not record a security summary", extra={"error": repr(exc)})
            return


async def _summary_loop(
    resources: Resources, gate: SecurityEventGate, stopping: asyncio.Event
) -> None:
    """Summaries of suppressed SECURITY events, written soon after their window ends."""
    interval = min(5.0, gate.window / 2)
    while not stopping.is_set():
        await _write_summaries(resources, gate)
        await _pause(stopping, interval)


async def start_server(
    resources: Resources,
    listen: str,
    *,
    health_interval: float = 2.0,
    health_timeout: float | None = None,
    reuse_port: bool = False,
    gateway: PaymentGateway | None = None,
    clock: Callable[[], float] | None = None,
) -> RunningServer:
    """Serve on ``listen``. ``gateway`` replaces the configured payment gateway (tests
    put their own there, and close it); the configured one is built here and closed
    (``aclose``) when the server stops. ``reuse_port`` lets several worker
    processes share the port (server/ops/workers.py); without it a port already in use is
    an error rather than silently shared with another server.

    Each database is pinged every ``health_interval`` seconds; one ping may take
    ``health_timeout`` seconds (default: ``health_interval``, at least 1 s) before it
    counts as down (server/rpc/health.py: the overall status and the services that need
    only PostgreSQL follow PostgreSQL; the rest, and ``gencharge.dependency.*``, follow
    what they need). ``clock`` (monotonic seconds, default
    ``time.monotonic``) ages the caches and windows: the session and permission caches,
    the plan catalogue and the per-address budget of security events; tests pass a fake
    one to step past a TTL instead of waiting for it."""
    settings = resources.settings
    clock = clock or time.monotonic
    if health_timeout is None:
        health_timeout = max(health_interval, MIN_HEALTH_TIMEOUT_SECONDS)
    try:
        security = build_security(resources, clock=clock)
        # Production refuses to start without the backup key, as without the data key.
        require_backup_key(settings)
    except ValueError as exc:  # keys, data key, backup key or message sender misconfigured
        raise ConfigurationError(str(exc)) from exc
    # Page tokens verify on every worker and replica that shares the data key.
    pagination.use_signing_key(security.secret_box.derive_key(pagination.SIGNING_KEY_LABEL))
    owned_gateway: PaymentGateway | None = None
    if gateway is None:
        try:
            gateway = owned_gateway = create_gateway(settings)
        except ValueError as exc:  # unknown gateway, the sandbox in production, no secret
            raise ConfigurationError(str(exc)) from exc
    try:
        running = await _start(
            resources,
            listen,
            security=security,
            gateway=gateway,
            clock=clock,
            health_interval=health_interval,
            health_timeout=health_timeout,
            reuse_port=reuse_port,
        )
    except BaseException:
        if owned_gateway is not None:
            await owned_gateway.aclose()
        raise
    running.owned_gateway = owned_gateway
    log.info(
        "grpc server listening",
        extra={
            "port": running.port,
            "services": len(running.service_names),
            "gateway": gateway.name,
        },
    )
    return running


async def _start(
    resources: Resources,
    listen: str,
    *,
    security: Security,
    gateway: PaymentGateway,
    clock: Callable[[], float],
    health_interval: float,
    health_timeout: float,
    reuse_port: bool,
) -> RunningServer:
    settings = resources.settings
    catalogue = Catalogue(resources.db, settings.catalogue_cache_seconds, clock=clock)
    app = AppContext(resources, security, gateway, catalogue)
    servicers = [spec.build(app) for spec in SERVICES]
    names = [spec.full_name for spec in SERVICES]
    unimplemented = frozenset(
        name
        for spec, servicer in zip(SERVICES, servicers, strict=True)
        for name in spec.unimplemented(servicer)
    )
    gate = SecurityEventGate(
        budget=settings.security_events_per_peer,
        window=settings.security_event_window_seconds,
        clock=clock,
    )
    access = AccessInterceptor(
        engine=resources.engine,
        rules=AccessRules(names),
        authenticator=security.authenticator,
        matrix=security.matrix,
        unimplemented=unimplemented,
        security_gate=gate,
    )
    try:
        proxies = parse_networks(settings.trusted_proxies)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.max_connection_idle_ms", 30 * 60_000),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
    ]
    server = grpc.aio.server(
        interceptors=[RequestInterceptor(proxies), access, ValidationInterceptor()],
        options=options,
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    for spec, servicer in zip(SERVICES, servicers, strict=True):
        spec.add_to_server(servicer, server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    stopping = asyncio.Event()
    monitor = HealthMonitor(
        health,
        pings={
            POSTGRESQL: lambda: db.ping(resources.engine),
            MONGODB: lambda: mongo.ping(resources.mongo_db),
        },
        services={spec.full_name: spec.needs for spec in SERVICES},
        interval=health_interval,
        probe_limit=health_timeout,
        stopping=stopping,
    )
    await monitor.initialise()
    enable_reflection(server, [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name])
    try:
        port = server.add_insecure_port(listen)
    except RuntimeError:  # grpc's own message names no cause
        port = 0
    if port == 0:
        raise ConfigurationError(
            f"cannot listen on {listen}: the address is in use (another server?) "
            "or not available on this host"
        )
    relay = AuditRelay(
        resources.engine,
        resources.mongo_db,
        max_backoff=settings.audit_relay_max_backoff_seconds,
    )
    await server.start()
    relay.start()
    running = RunningServer(
        server,
        port,
        health,
        resources,
        security,
        relay,
        names,
        app=app,
        stopping=stopping,
        health_monitor=monitor,
    )
    running._tasks = [
        asyncio.create_task(monitor.run(), name="health-monitor"),
        asyncio.create_task(_cleanup_loop(resources, CLEANUP_INTERVAL_SECONDS, running.stopping)),
        asyncio.create_task(_summary_loop(resources, gate, running.stopping)),
    ]
    running.security_gate = gate
    return running
