"""What every backup job (backup, verify, restore, drill, retention) works with, and
how it reports progress.

A job is plain async code over a :class:`JobContext`; it reports :class:`Progress` to a
callback. The RPCs stream those reports (server/backup/servicer.py), the CLI draws them
as a progress bar (server/ops/cli.py), the scheduler logs them: one implementation,
three front ends.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncEngine

from server.audit.scope import SCHEDULER_ACTOR, AuditScope, scoped
from server.backup.domain import Backup
from server.backup.errors import BackupError
from server.backup.keys import BackupKeys
from server.backup.storage import Storage, storage_from_settings
from server.core.config import Settings
from server.core.errors import DomainError, FailedPrecondition, Unavailable
from server.core.resources import Resources

#: Progress statuses (BackupRestoreLogs.status and BackupProgress.status).
STARTED: Final = "started"
PROGRESS: Final = "progress"
COMPLETED: Final = "completed"
FAILED: Final = "failed"


@dataclass(frozen=True)
class Progress:
    """One step of a job. ``backup`` is set on the last report of a job that has a
    Backup row; ``error`` on a ``failed`` report."""

    job: str
    backup_id: str
    status: str
    percent: int
    message: str
    at: datetime
    backup: Backup | None = None
    error: DomainError | None = None

    @property
    def last(self) -> bool:
        return self.status in (COMPLETED, FAILED)


Report = Callable[[Progress], None]


def ignore(_: Progress) -> None:
    """A report callback that drops every report."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def server_version() -> str:
    try:
        return metadata.version("gencharge")
    except metadata.PackageNotFoundError:  # pragma: no cover - always installed
        return "unknown"


def database_url_of(engine: AsyncEngine) -> str:
    """The libpq URL of ``engine``'s database (what the PostgreSQL tools connect to),
    whether it was configured or is the embedded server's."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


class JobContext:
    """The databases, the storage, the keys and the clock of a job. ``tool_settings``
    are the settings with the real database URL (embedded mode has none configured),
    for the code that runs the PostgreSQL tools.

    The storage is set up at once (a bad ``GENCHARGE_BACKUP_STORAGE_URL`` stops
    start-up); the keys are loaded by the first job that needs them, so that a
    development server whose data folder cannot keep a generated backup key still
    serves everything else (that job fails with ``BACKUP_KEY_UNAVAILABLE``; production
    checks the key at start-up: ``keys.require_backup_key``)."""

    def __init__(
        self,
        resources: Resources,
        *,
        storage: Storage,
        tool_settings: Settings,
        clock: Callable[[], datetime] = _utc_now,
        keys: BackupKeys | None = None,
    ) -> None:
        self.resources = resources
        self.storage = storage
        self.tool_settings = tool_settings
        self.clock = clock
        self.version = server_version()
        self._keys = keys

    @classmethod
    def build(
        cls,
        resources: Resources,
        *,
        clock: Callable[[], datetime] | None = None,
        storage: Storage | None = None,
    ) -> JobContext:
        settings = resources.settings
        tool_settings = settings.model_copy(
            update={"database_url": database_url_of(resources.engine)}
        )
        return cls(
            resources,
            storage=storage or storage_from_settings(settings),
            tool_settings=tool_settings,
            clock=clock or _utc_now,
        )

    @property
    def keys(self) -> BackupKeys:
        if self._keys is None:
            try:
                self._keys = BackupKeys.from_settings(self.settings)
            except ValueError as exc:  # names the setting or the file, never a key
                raise FailedPrecondition(str(exc), reason="BACKUP_KEY_UNAVAILABLE") from None
        return self._keys

    def check_keys(self) -> None:
        """FAILED_PRECONDITION ``BACKUP_KEY_UNAVAILABLE`` now, before a job records
        anything, rather than halfway through it."""
        self.keys.key_ids  # noqa: B018 - loads them

    @property
    def settings(self) -> Settings:
        return self.resources.settings

    @property
    def engine(self) -> AsyncEngine:
        return self.resources.engine


class Steps:
    """The progress reports of one job: ``step(status, percent, message, backup=,
    error=)`` stamps them with the job, its backup and the job's clock."""

    def __init__(self, ctx: JobContext, job: str, backup_id: str, report: Report) -> None:
        self.ctx, self.job, self.backup_id, self._report = ctx, job, backup_id, report

    def __call__(
        self,
        status: str,
        percent: int,
        message: str,
        *,
        backup: Backup | None = None,
        error: DomainError | None = None,
    ) -> None:
        self._report(
            Progress(
                job=self.job,
                backup_id=self.backup_id,
                status=status,
                percent=percent,
                message=message,
                at=self.ctx.clock(),
                backup=backup,
                error=error,
            )
        )


@contextmanager
def step_scope(base: AuditScope | None, job: str, step: str) -> Iterator[AuditScope]:
    """An audit scope for one transaction of a job: the actor, RPC and peer of the call
    (or CLI / scheduler scope) that started it, a request id of its own
    (``<request id>/<step>``). A job writes several transactions, each with its event,
    while a scope holds one."""
    with scoped(
        AuditScope(
            actor=base.actor if base else SCHEDULER_ACTOR,
            rpc=base.rpc if base else f"scheduler/{job}",
            request_id=f"{base.request_id if base else job + '-' + uuid.uuid4().hex}/{step}",
            peer=base.peer if base else None,
            mutating=True,
        )
    ) as scope:
        yield scope


def details_of(error: BaseException) -> dict[str, Any]:
    """What a failed job records about its error (never a secret: messages of our own
    errors only; anything else by type)."""
    reason = getattr(error, "reason", None)
    if isinstance(error, DomainError) or reason:
        return {"error": str(error)[:500], "reason": reason or type(error).__name__}
    return {"error": f"internal error ({type(error).__name__})", "reason": "INTERNAL"}


def domain_error(error: BackupError) -> DomainError:
    """The gRPC-facing error of a backup engine failure: the storage out of reach is
    UNAVAILABLE (try again), anything else about the backup is FAILED_PRECONDITION."""
    if error.reason == "BACKUP_STORAGE_UNAVAILABLE":
        return Unavailable(str(error), reason=error.reason)
    return FailedPrecondition(str(error), reason=error.reason)


def public_error(error: BaseException) -> DomainError | None:
    """What a caller is told about a job's failure: our own errors as they are, a
    backup engine failure mapped by :func:`domain_error`; None for anything else (the
    caller sees INTERNAL with the request id; the log has the cause)."""
    if isinstance(error, DomainError):
        return error
    if isinstance(error, BackupError):
        return domain_error(error)
    return None
