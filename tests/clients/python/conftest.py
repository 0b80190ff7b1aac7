"""Fixtures of the Python SDK's tests: clients of the real test server (``grpc_server``),
directly or through the answer-losing proxy (tests/clients/h2proxy.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from gencharge_client import AsyncClient

from tests.clients.h2proxy import H2Proxy
from tests.clients.python.support import FAST_RETRY
from tests.clients.token_clock import stepped_token_clock
from tests.helpers.clock import SteppedUtcClock


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


@pytest.fixture
def token_clock(grpc_server: Any) -> Iterator[SteppedUtcClock]:
    """The clock the server issues and checks access tokens with (real UTC until the test
    advances it, with ``server_clock``: tests/clients/token_clock.py ``advance``)."""
    with stepped_token_clock(grpc_server) as clock:
        yield clock
