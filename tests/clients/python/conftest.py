"""Fixtures of the Python SDK's tests: clients of the real test server (``grpc_server``),
directly or through the answer-losing proxy (tests/clients/h2proxy.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from gencharge_client import AsyncClient

from tests.clients.h2proxy import H2Proxy
from tests.clients.python.support import FAST_RETRY


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
