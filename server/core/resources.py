"""What the servicers share: settings and the database handles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from sqlalchemy.ext.asyncio import AsyncEngine

from server.core.config import Settings
from server.core.db import Database


@dataclass(frozen=True)
class Resources:
    settings: Settings
    #: The unit of work: every transaction of the service is opened here (server/core/db.py).
    db: Database
    mongo_db: AsyncDatabase[dict[str, Any]]

    @property
    def engine(self) -> AsyncEngine:
        return self.db.engine
