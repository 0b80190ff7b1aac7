"""Versioned MongoDB migration steps.

``await upgrade(db)`` runs, in order, every step of :data:`STEPS` not yet recorded in
the ``_schema_migrations`` collection, and records each one (``{_id: step_id,
applied_at}``) after it ran. It returns the ids of the steps this call recorded.

No lock is taken. Every step is idempotent, so when two processes start at once they
may both run a step; the second record insert fails on the duplicate ``_id`` and is
ignored. The price of a race is some repeated harmless work, never a half-applied or
skipped step. Steps are append-only: never change what a released step does, add one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from migrations.mongo.collections import SCHEMA_MIGRATIONS, Document
from migrations.mongo.steps import (
    step_0001_collections_validators,
    step_0002_indexes,
    step_0003_views,
    step_0004_ttl,
    step_0005_audit_security_events,
    step_0006_content_contact_forms,
    step_0007_audit_queries,
    step_0008_seed_counters,
)

__all__ = ["STEPS", "Step", "applied_steps", "pending_steps", "upgrade"]


@dataclass(frozen=True)
class Step:
    """One migration step: a stable id (sorts in order) and an idempotent function."""

    id: str
    apply: Callable[[AsyncDatabase[Document]], Awaitable[None]]

    @property
    def description(self) -> str:
        doc = (self.apply.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


STEPS: Final[list[Step]] = [
    Step("0001_collections_validators", step_0001_collections_validators),
    Step("0002_indexes", step_0002_indexes),
    Step("0003_views", step_0003_views),
    Step("0004_ttl", step_0004_ttl),
    Step("0005_audit_security_events", step_0005_audit_security_events),
    Step("0006_content_contact_forms", step_0006_content_contact_forms),
    Step("0007_audit_queries", step_0007_audit_queries),
    Step("0008_seed_counters", step_0008_seed_counters),
]


async def applied_steps(db: AsyncDatabase[Document]) -> set[str]:
    """Ids of the steps recorded in ``_schema_migrations``."""
    cursor = db[SCHEMA_MIGRATIONS].find({}, {"_id": 1})
    return {str(doc["_id"]) async for doc in cursor}


async def pending_steps(db: AsyncDatabase[Document]) -> list[str]:
    """Ids of the steps :func:`upgrade` would run, in order."""
    done = await applied_steps(db)
    return [step.id for step in STEPS if step.id not in done]


async def upgrade(db: AsyncDatabase[Document]) -> list[str]:
    """Apply the pending steps in order; return the ids recorded by this call."""
    done = await applied_steps(db)
    recorded: list[str] = []
    for step in STEPS:
        if step.id in done:
            continue
        await step.apply(db)
        try:
            await db[SCHEMA_MIGRATIONS].insert_one(
                {
                    "_id": step.id,
                    "applied_at": datetime.now(UTC),
                    "description": step.description,
                }
            )
        except DuplicateKeyError:
            continue  # a concurrent upgrade recorded it first; the work was idempotent
        recorded.append(step.id)
    return recorded
