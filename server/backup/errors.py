"""Errors of the backup machinery (the flows map them to gRPC errors)."""

from __future__ import annotations


class BackupError(Exception):
    """A backup or restore step failed; ``reason`` is an UPPER_SNAKE code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
