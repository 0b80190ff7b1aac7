"""Fixtures of the Python SDK's tests: clients of the real test server (``grpc_server``),
directly or through the answer-losing proxy (tests/clients/h2proxy.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from gencharge_client import AsyncClient, RetryPolicy

from tests.clients.h2proxy import H2Proxy
from tests.helpers.clock import HANG_SECONDS

#: Retries without real waiting: the backoff is jittered over milliseconds; each attempt's
#: deadline only catches a hang.
FAST_RETRY = RetryPolicy(initial_backoff=0.01, max_backoff=0.05, timeout=HANG_SECONDS)


class WallClock:
    """Seconds since the epoch for the SDK's credentials, moved only by ``advance``: the
    client believes its token is about to expire without anyone waiting for it."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def address(grpc_server: Any) -> str:
    return f"127.0.0.1:{grpc_server.port}"


@pytest.fixture
async def client(address: str) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(address, retry=FAST_RETRY) as opened:
        yield opened


@pytest.fixture
async def proxy(grpc_server: Any) -> AsyncIterator[H2Proxy]:
    async with H2Proxy("127.0.0.1", grpc_server.port) as running:
        yield running


@pytest.fixture
async def proxied(proxy: H2Proxy) -> AsyncIterator[AsyncClient]:
    """A client whose connection goes through ``proxy``."""
    async with AsyncClient(proxy.address, retry=FAST_RETRY) as opened:
        yield opened
