"""What the servicers share: settings and the database handles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from sqlalchemy.ext.asyncio import AsyncEngine

from server.config import Settings


@dataclass(frozen=True)
class Resources:
    settings: Settings
    engine: AsyncEngine
    mongo_db: AsyncDatabase[dict[str, Any]]
