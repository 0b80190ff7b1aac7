"""Fixtures of the BackupService tests: a stub on the test server, an admin."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from tests.backup.service.helpers import Stub
from tests.helpers.auth import Actor, create_admin


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> Stub:
    return Stub(channel)


@pytest.fixture
async def admin(channel: grpc.aio.Channel, resources: Any) -> Actor:
    return await create_admin(channel, resources)
