"""When and how the SDK retries a call.

A call is retried only where a second attempt cannot apply it twice, as the RPC table
(``gencharge_client.v1.methods``, derived from the descriptors) says:

- ``UNAVAILABLE`` and ``DEADLINE_EXCEEDED`` on idempotent RPCs: read-only ones, and
  the money-moving ones, which carry a ``request_id`` the SDK fills once per logical
  call and sends unchanged on every attempt (the server answers a replay with the
  original result);
- ``FAILED_PRECONDITION`` ``IN_PROGRESS`` on an RPC with a ``request_id`` (the first
  attempt is still being charged or recorded: ask again later);
- ``RESOURCE_EXHAUSTED`` only if the caller opts in (``retry_rate_limited``), after
  at least the ``retry_after_seconds`` the server asked for.

A write without a request_id is never retried. Backoff is exponential with full
jitter; every unary attempt has a deadline (``timeout``, 10 s by default).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from gencharge_client.errors import (
    DeadlineExceeded,
    GenChargeError,
    InProgress,
    ResourceExhausted,
    Unavailable,
)
from gencharge_client.v1.methods import Method


@dataclass(frozen=True)
class RetryPolicy:
    """Retry limits and backoff. ``max_attempts`` counts the first attempt too."""

    max_attempts: int = 4
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    multiplier: float = 2.0
    #: Deadline of each unary attempt, seconds (None: no deadline).
    timeout: float | None = 10.0
    #: Deadline of server-streaming calls unless the call gives one (None: none).
    stream_timeout: float | None = None
    #: Retry ``IN_PROGRESS`` answers to calls with a request_id.
    retry_in_progress: bool = True
    #: Retry ``RESOURCE_EXHAUSTED`` (off: the caller decides).
    retry_rate_limited: bool = False
    #: Never wait longer than this for a rate limit to pass (seconds).
    max_rate_limited_wait: float = 30.0
    #: ``uniform(low, high)``: the jitter's source (tests may pin it).
    uniform: Callable[[float, float], float] = field(
        default=random.uniform, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoff must be non-negative and growing")

    def retryable(self, method: Method, error: GenChargeError) -> bool:
        """May ``method`` be attempted again after ``error``?"""
        if isinstance(error, Unavailable | DeadlineExceeded):
            return method.idempotent
        if isinstance(error, InProgress):
            return self.retry_in_progress and method.request_id
        if isinstance(error, ResourceExhausted):
            wait = error.retry_delay or 0.0
            return self.retry_rate_limited and wait <= self.max_rate_limited_wait
        return False

    def backoff(self, failures: int, error: GenChargeError | None = None) -> float:
        """Seconds to wait after the ``failures``-th failed attempt: full jitter over an
        exponential ceiling, and never less than the server asked for."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** (failures - 1))
        delay = self.uniform(0.0, ceiling)
        if error is not None and error.retry_delay is not None:
            delay = max(delay, error.retry_delay)
        return delay


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(max_attempts=1)
