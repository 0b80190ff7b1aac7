"""Structured logging: one JSON object per line, carrying the request id.

The request id comes from the caller's ``x-request-id`` metadata (or is generated) and
is stored in a context variable by the request interceptor, so every log line written
while serving a call carries it. Never pass secrets (passwords, hashes, tokens, OTPs,
TOTP secrets) to a logger: fields named like secrets are redacted as a safety net.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

request_id_var: ContextVar[str] = ContextVar("request_id", default="")
rpc_method_var: ContextVar[str] = ContextVar("rpc_method", default="")

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()) | {
    "message",
    "asctime",
    "taskName",
}
#: The worker index of this process (server/ops/workers.py), None when not a worker.
_worker: int | None = None

_SECRET_MARKERS = ("password", "secret", "token", "otp", "hash", "totp", "authorization")


def _redact(key: str, value: Any) -> Any:
    if any(marker in key.lower() for marker in _SECRET_MARKERS):
        return "[REDACTED]"
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if _worker is not None:
            entry["worker"] = _worker
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        method = rpc_method_var.get()
        if method:
            entry["rpc"] = method
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = _redact(key, value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = {
            k: _redact(k, v)
            for k, v in record.__dict__.items()
            if k not in _STANDARD and not k.startswith("_")
        }
        request_id = request_id_var.get()
        prefix = f"[{request_id}] " if request_id else ""
        if _worker is not None:
            prefix = f"worker {_worker} {prefix}"
        suffix = " " + " ".join(f"{k}={v}" for k, v in extras.items()) if extras else ""
        return prefix + base + suffix


def configure(level: str = "INFO", fmt: str = "json", *, worker: int | None = None) -> None:
    """Log to stderr; ``worker`` (server/ops/workers.py) tags every line of a worker."""
    global _worker
    _worker = worker
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request at INFO; the payment gateway logs its own calls at DEBUG.
    for noisy in (
        "sqlalchemy",
        "pymongo",
        "asyncio",
        "alembic.runtime.migration",
        "httpx",
        "httpcore",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
