"""Structured logging: one JSON object per line, carrying the request id.

The request id comes from the caller's ``x-request-id`` metadata (or is generated) and
is stored in a context variable by the request interceptor, so every log line written
while serving a call carries it. Never pass secrets (passwords, hashes, tokens, OTPs,
TOTP secrets) to a logger: fields named like secrets are redacted as a safety net.

Tracebacks carry no personal data either: SQLAlchemy errors come without their bound
parameters (server/core/db.py), and the MongoDB write errors that quote the values or
documents they refused are reduced to their codes (:func:`format_exception_safely`).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from pymongo.errors import BulkWriteError, OperationFailure

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
#: Whether a field name is secret-like, by name (a program logs a few dozen names).
_SECRET_NAMES: dict[str, bool] = {}
_MAX_NAMES = 10_000


def _secret_name(key: str) -> bool:
    secret = _SECRET_NAMES.get(key)
    if secret is None:
        lowered = key.lower()
        secret = any(marker in lowered for marker in _SECRET_MARKERS)
        if len(_SECRET_NAMES) >= _MAX_NAMES:
            _SECRET_NAMES.clear()
        _SECRET_NAMES[key] = secret
    return secret


def _redact(key: str, value: Any) -> Any:
    return "[REDACTED]" if _secret_name(key) else value


#: ``json.dumps(entry, default=str)`` without building an encoder for every line.
_ENCODER = json.JSONEncoder(default=str)


_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
#: The index a duplicate-key error names ("... index: email_1 dup key: {...}").
_DUP_INDEX = re.compile(r"index: (\S+) dup key")


def _mongo_summary(exc: BaseException) -> str | None:
    """A MongoDB write error without the documents or key values it quotes (a duplicate
    key error repeats the e-mail or phone number; a bulk write error whole documents):
    only its codes, and the index a duplicate key hit."""
    if isinstance(exc, BulkWriteError):
        errors = exc.details.get("writeErrors", []) if isinstance(exc.details, dict) else []
        codes = sorted({str(e.get("code")) for e in errors if isinstance(e, dict)})
        return f"bulk write failed: {len(errors)} write error(s), codes {', '.join(codes) or '-'}"
    if isinstance(exc, OperationFailure):
        details = exc.details if isinstance(exc.details, dict) else {}
        summary = f"code {exc.code} ({details.get('codeName', '?')})"
        index = _DUP_INDEX.search(str(details.get("errmsg", "")))
        return summary + (f", index {index.group(1)}" if index else "")
    return None


def format_exception_safely(ei: _ExcInfo) -> str:
    """The traceback of ``ei`` with every database error's message reduced to what
    carries no personal data (SQLAlchemy errors already come without bound parameters:
    server/core/db.py)."""
    if ei[1] is None:
        return ""
    formatted = traceback.TracebackException(type(ei[1]), ei[1], ei[2])
    # Walk the chain (cause or context) of the exceptions and of their formatted copies
    # in step; TracebackException has no public way to replace the message.
    te: traceback.TracebackException | None = formatted
    exc: BaseException | None = ei[1]
    seen: set[int] = set()
    while te is not None and exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        summary = _mongo_summary(exc)
        if summary is not None and hasattr(te, "_str"):
            te._str = summary
        te = te.__cause__ or (None if te.__suppress_context__ else te.__context__)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return "".join(formatted.format()).rstrip("\n")


class _SafeExceptions(logging.Formatter):
    def formatException(self, ei: Any) -> str:
        return format_exception_safely(ei)

    def format(self, record: logging.LogRecord) -> str:
        # logging caches the first handler's rendering of the traceback on the record;
        # another handler's may not be as careful, so always render our own.
        cached, record.exc_text = record.exc_text, None
        try:
            return super().format(record)
        finally:
            record.exc_text = cached


class JsonFormatter(_SafeExceptions):
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
        return _ENCODER.encode(entry)


class TextFormatter(_SafeExceptions):
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
    # What no line shows, not gathered for every record (the logging HOWTO's
    # "Optimization"): the caller's file, line and function (a walk up the stack), and
    # the thread, process and multiprocessing names. Our formatters print none of them.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
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
