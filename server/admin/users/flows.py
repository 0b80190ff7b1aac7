"""Operators' user actions as units of work: each opens its transaction (the change
and its audit event commit together) and, after the commit, drops the sessions it
ended from this process's session cache, so the customer's access tokens stop at once
here and within ``auth_cache_seconds`` on every other replica.

The data export is shared by AdminService.ExportUserData and ``gencharge export-user``.
"""

from __future__ import annotations

import json
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from server.admin.users import domain
from server.auth.flows import SessionCache
from server.core.db import Database


async def block(
    db: Database, user_id: int, reason: str, *, sessions: SessionCache
) -> domain.UserView:
    async with db.transaction() as conn:
        done = await domain.block(user_id, reason, conn=conn)
    sessions.forget_sessions(done.sessions)
    return done.view


async def revoke_sessions(db: Database, user_id: int, *, sessions: SessionCache) -> int:
    async with db.transaction() as conn:
        ended = await domain.revoke_sessions(user_id, conn=conn)
    sessions.forget_sessions(ended)
    return len(ended)


async def archive(
    db: Database, user_id: int, reason: str, *, sessions: SessionCache
) -> domain.UserView:
    async with db.transaction() as conn:
        done = await domain.archive(user_id, reason, conn=conn)
    sessions.forget_sessions(done.sessions)
    return done.view


async def erase(db: Database, user_id: int, reason: str, *, sessions: SessionCache) -> domain.Ended:
    async with db.transaction() as conn:
        done = await domain.erase(user_id, reason, conn=conn)
    sessions.forget_sessions(done.sessions)
    return done


async def export(
    db: Database, mongo_db: AsyncDatabase[dict[str, Any]], user_id: int, reason: str
) -> dict[str, Any]:
    """The user's data export (JSON values). The audit events are read from MongoDB
    first, so the export's own audit event commits only with a complete document."""
    domain.required_reason(reason)
    events = await domain.audit_events_about(mongo_db, user_id)
    async with db.transaction() as conn:
        return await domain.export(user_id, reason, audit_events=events, conn=conn)


def export_bytes(document: dict[str, Any]) -> bytes:
    """The export as UTF-8 JSON (indented, keys in document order)."""
    return json.dumps(document, ensure_ascii=False, indent=2).encode()
