"""The test server's token clock, stepped by the SDK tests.

The server issues and checks access tokens on real UTC (``TokenService``); the
``server_clock`` fixture steps only its caches. To expire a token a client holds without
waiting, the SDK tests run the token service on a ``SteppedUtcClock`` (real UTC plus a
shift) and advance both clocks together: :func:`advance` (``ttl + 60`` s expires every
token issued before, and the 60 s cache of verified token claims with it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from server.auth.tokens import TokenService
from tests.helpers.clock import FakeClock, SteppedUtcClock


@contextlib.contextmanager
def stepped_token_clock(grpc_server: Any) -> Iterator[SteppedUtcClock]:
    """The server's token service on a clock the test steps (real UTC until then)."""
    clock = SteppedUtcClock()
    tokens: TokenService = grpc_server.security.tokens
    real = tokens._clock
    tokens._clock = clock
    try:
        yield clock
    finally:
        tokens._clock = real


def advance(token_clock: SteppedUtcClock, server_clock: FakeClock, seconds: float) -> None:
    """Move the server's token clock and its cache clock ``seconds`` ahead, together."""
    token_clock.advance(seconds)
    server_clock.advance(seconds)
