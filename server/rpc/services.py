"""The services the server registers, and which of their RPCs are implemented.

Every service of the contract is registered. A service whose domain package does not
exist yet is served by its generated base servicer; its RPCs, like any RPC a domain
servicer does not override, answer UNIMPLEMENTED through the request interceptor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from types import ModuleType
from typing import Any

from google.protobuf import descriptor_pool

from gencharge.v1 import (
    admin_service_pb2_grpc,
    auth_service_pb2_grpc,
    backup_service_pb2_grpc,
    content_service_pb2_grpc,
    notification_service_pb2_grpc,
    plan_service_pb2_grpc,
    recharge_service_pb2_grpc,
    wallet_service_pb2_grpc,
)
from server.admin.insight.servicer import InsightRpcs
from server.admin.money.servicer import MoneyRpcs
from server.admin.staff.servicer import StaffRpcs
from server.admin.users.servicer import UserRpcs
from server.auth.security import Security
from server.auth.servicer import AuthServicer
from server.backup.context import JobContext
from server.backup.detached import DetachedJobs
from server.backup.servicer import BackupRpcs
from server.content.servicer import ContentServicer
from server.core.money import from_minor
from server.core.resources import Resources
from server.notifications.servicer import NotificationServicer
from server.payments.gateway import PaymentGateway
from server.plans.catalogue import Catalogue
from server.plans.servicer import PlanServicer
from server.recharge.autopay.servicer import AutoPayRpcs
from server.recharge.batch.servicer import BatchRpcs
from server.recharge.bills.servicer import BillRpcs
from server.recharge.flows import Recharger
from server.recharge.group import UNARY_WRITERS, GroupCommitter
from server.recharge.servicer import RechargeRpcs
from server.reports.servicer import ReportRpcs
from server.rpc.health import POSTGRESQL_AND_MONGODB, POSTGRESQL_ONLY
from server.wallet.servicer import WalletServicer

PACKAGE = "gencharge.v1"


@dataclass(frozen=True)
class AppContext:
    """Everything a servicer may need: databases, settings, security machinery.
    ``caches`` holds the invalidation of every per-process cache of data (servicers
    that keep one add theirs): a restore drops them all."""

    resources: Resources
    security: Security
    gateway: PaymentGateway
    catalogue: Catalogue
    caches: list[Callable[[], None]] = field(default_factory=list)
    backup_jobs: DetachedJobs = field(default_factory=DetachedJobs)

    def __post_init__(self) -> None:
        self.caches.extend(
            [
                self.security.authenticator.forget_all,
                self.security.matrix.invalidate,
                self.catalogue.invalidate,
            ]
        )

    def drop_caches(self) -> None:
        for invalidate in self.caches:
            invalidate()

    @cached_property
    def recharger(self) -> Recharger:
        """One per process: its committer groups the wallet writes of concurrent unary
        Recharge calls (server/recharge/group.py)."""
        return Recharger(
            self.resources.db,
            self.catalogue,
            self.gateway,
            from_minor(self.resources.settings.referral_reward_minor),
            GroupCommitter(self.resources.db, ordered=False, writers=UNARY_WRITERS),
        )


class RechargeServicer(
    RechargeRpcs,
    AutoPayRpcs,
    BillRpcs,
    BatchRpcs,
    recharge_service_pb2_grpc.RechargeServiceServicer,
):
    """RechargeService: its RPCs by topic (server/recharge/servicer.py and the autopay,
    bills and batch sub-packages), over one recharger."""

    def __init__(self, recharger: Recharger, resources: Resources) -> None:
        self._db = resources.db
        self._recharger = recharger
        # BatchRecharge items of all streams that run at once: no more than the pool's
        # steady connections, so batches never push the pool into overflow nor starve
        # unary calls of connections.
        self._batch_slots = asyncio.Semaphore(resources.settings.db_pool_size)


class AdminServicer(
    UserRpcs,
    StaffRpcs,
    ReportRpcs,
    MoneyRpcs,
    InsightRpcs,
    admin_service_pb2_grpc.AdminServiceServicer,
):
    """AdminService: its RPCs by topic, each topic a mixin from its own sub-package
    (server/admin/<topic>/servicer.py, server/reports/servicer.py), composed here over
    the shared pieces they use. An RPC no mixin overrides answers UNIMPLEMENTED."""

    def __init__(self, app: AppContext) -> None:
        self._resources = app.resources
        self._db = app.resources.db
        self._security = app.security
        self._gateway = app.gateway
        self._catalogue = app.catalogue


class BackupServicer(BackupRpcs, backup_service_pb2_grpc.BackupServiceServicer):
    """BackupService: the RPCs of server/backup/servicer.py. Jobs started by calls run
    in ``app.backup_jobs`` (the server waits for them when it stops); a restore drops
    every cache of ``app``."""

    def __init__(self, app: AppContext) -> None:
        self._resources = app.resources
        self._db = app.resources.db
        self._jobs = app.backup_jobs
        self._job_context = JobContext.build(app.resources)
        self._after_restore = app.drop_caches


def _content_servicer(app: AppContext) -> ContentServicer:
    servicer = ContentServicer(app.resources, clock=app.catalogue.clock)
    app.caches.append(servicer.cache.invalidate)
    return servicer


@dataclass(frozen=True)
class ServiceSpec:
    """One service: its name, generated module, how its servicer is built, and the
    databases it cannot work without (its health status follows them: server/rpc/
    health.py). Every call needs PostgreSQL (access rules, sessions, the audit outbox);
    only a service whose own data lives in MongoDB needs MongoDB too. An RPC that
    touches MongoDB in a service that does not need it (AdminService ListAuditLogs, an
    OTP through the development message outbox) answers UNAVAILABLE during an outage."""

    name: str
    grpc_module: ModuleType
    factory: Callable[[AppContext], Any] | None = None
    needs: frozenset[str] = POSTGRESQL_ONLY

    @property
    def full_name(self) -> str:
        return f"{PACKAGE}.{self.name}"

    @property
    def base(self) -> type:
        base: type = getattr(self.grpc_module, f"{self.name}Servicer")
        return base

    def build(self, app: AppContext) -> Any:
        return self.factory(app) if self.factory else self.base()

    def add_to_server(self, servicer: Any, server: Any) -> None:
        getattr(self.grpc_module, f"add_{self.name}Servicer_to_server")(servicer, server)

    def method_names(self) -> list[str]:
        service = descriptor_pool.Default().FindServiceByName(self.full_name)
        return [method.name for method in service.methods]

    def unimplemented(self, servicer: Any) -> Iterator[str]:
        for method in self.method_names():
            if getattr(type(servicer), method) is getattr(self.base, method):
                yield f"/{self.full_name}/{method}"


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        "AuthService",
        auth_service_pb2_grpc,
        lambda app: AuthServicer(app.resources, app.security),
    ),
    ServiceSpec(
        "WalletService",
        wallet_service_pb2_grpc,
        lambda app: WalletServicer(app.resources, app.gateway, app.security.matrix),
    ),
    ServiceSpec(
        "PlanService",
        plan_service_pb2_grpc,
        lambda app: PlanServicer(app.resources, app.catalogue),
    ),
    ServiceSpec(
        "RechargeService",
        recharge_service_pb2_grpc,
        lambda app: RechargeServicer(app.recharger, app.resources),
    ),
    ServiceSpec(
        "NotificationService",
        notification_service_pb2_grpc,
        lambda app: NotificationServicer(app.resources),
    ),
    # Content and ContactForm are MongoDB collections (DDS 4.2).
    ServiceSpec(
        "ContentService",
        content_service_pb2_grpc,
        _content_servicer,
        needs=POSTGRESQL_AND_MONGODB,
    ),
    ServiceSpec("AdminService", admin_service_pb2_grpc, AdminServicer),
    # A backup (and a restore) covers both databases; BackupRestoreLogs is in MongoDB.
    ServiceSpec(
        "BackupService", backup_service_pb2_grpc, BackupServicer, needs=POSTGRESQL_AND_MONGODB
    ),
)
